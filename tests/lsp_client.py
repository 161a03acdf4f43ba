"""A small Language Server Protocol client driving the real yaml-language-server over stdio.

It speaks JSON-RPC with Content-Length framing, as VS Code does, so tests see what a flow
author sees in the editor: diagnostics, hover text and completions. Documents are opened by
file:// URI; their text may differ from the file on disk (or the file may not exist), which
lets a test check a broken copy that sits, for the server, next to the real flows, so that
the `# yaml-language-server: $schema=...` modeline resolves as it does for the real file.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "lsp" / "node_modules" / ".bin" / "yaml-language-server"
INSTALL_HINT = "run scripts/install-tools to install it (npm ci in tests/lsp)"

SETTINGS: dict[str, Any] = {
    "yaml": {"validate": True, "hover": True, "completion": True, "schemas": {}},
}


class LspError(RuntimeError):
    """The server failed, answered with an error, or did not answer in time."""


@dataclass(frozen=True)
class Diagnostic:
    """One problem the editor underlines: 1-based line and column, as a flow author counts."""

    line: int
    column: int
    message: str
    severity: int  # 1 error, 2 warning, 3 information, 4 hint

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


def _uri(path: Path) -> str:
    return path.resolve().as_uri()


class LspClient:
    """One running language server; documents are opened, asked about, then closed."""

    def __init__(
        self,
        command: list[str] | None = None,
        settings: Mapping[str, Any] | None = None,
        timeout: float = 15.0,
    ) -> None:
        if command is None:
            if not os.access(SERVER, os.X_OK):
                raise LspError(f"yaml-language-server is not installed at {SERVER}: {INSTALL_HINT}")
            if shutil.which("node") is None:
                raise LspError(f"node is not on PATH: {INSTALL_HINT}")
            command = [str(SERVER), "--stdio"]
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
        )
        self._ids = itertools.count(1)
        self._versions = itertools.count(1)
        self._lock = threading.Lock()  # for the maps below
        self._write_lock = threading.Lock()  # one message at a time on the server's stdin
        self._responses: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._diagnostics: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        try:
            self.request(
                "initialize",
                {
                    "processId": os.getpid(),
                    "rootUri": _uri(ROOT),
                    "workspaceFolders": [{"uri": _uri(ROOT), "name": ROOT.name}],
                    "capabilities": {
                        "textDocument": {
                            "synchronization": {"dynamicRegistration": False},
                            "publishDiagnostics": {"relatedInformation": True},
                            "hover": {"contentFormat": ["markdown", "plaintext"]},
                            "completion": {
                                "completionItem": {
                                    "snippetSupport": True,
                                    "documentationFormat": ["markdown", "plaintext"],
                                }
                            },
                        },
                        "workspace": {"configuration": False, "didChangeConfiguration": {}},
                    },
                },
            )
            self.notify("initialized", {})
            self.notify(
                "workspace/didChangeConfiguration", {"settings": dict(settings or SETTINGS)}
            )
        except BaseException:
            self.close()
            raise

    # --- JSON-RPC -------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        stdin = self._process.stdin
        assert stdin is not None
        with self._write_lock:
            stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            stdin.flush()

    def _read_message(self) -> dict[str, Any] | None:
        stdout = self._process.stdout
        assert stdout is not None
        length = None
        while True:
            line = stdout.readline()
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("ascii").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise LspError("a message without Content-Length")
        message: dict[str, Any] = json.loads(stdout.read(length).decode("utf-8"))
        return message

    def _read_loop(self) -> None:
        while (message := self._read_message()) is not None:
            if "id" in message and "method" in message:  # a request from the server
                self._send({"id": message["id"], "result": None})
            elif "id" in message:
                self._response_queue(int(message["id"])).put(message)
            elif message.get("method") == "textDocument/publishDiagnostics":
                params = message["params"]
                self._diagnostic_queue(params["uri"]).put(params)

    def _wait(self, received: queue.Queue[dict[str, Any]], what: str) -> dict[str, Any]:
        """The next message put in `received`, failing if the server dies or takes too long."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return received.get(timeout=0.05)
            except queue.Empty:
                pass
            if self._process.poll() is not None and received.empty():
                self._stderr.seek(0)
                tail = self._stderr.read()[-2000:].decode("utf-8", "replace")
                raise LspError(
                    f"the server exited ({self._process.returncode}) before {what}: {tail}"
                )
            if time.monotonic() > deadline:
                raise LspError(f"no {what} in {self.timeout} s")

    def _response_queue(self, request_id: int) -> queue.Queue[dict[str, Any]]:
        with self._lock:
            return self._responses.setdefault(request_id, queue.Queue())

    def _diagnostic_queue(self, uri: str) -> queue.Queue[dict[str, Any]]:
        with self._lock:
            return self._diagnostics.setdefault(uri, queue.Queue())

    def request(self, method: str, params: Any) -> Any:
        """Send a request and wait for its result."""
        request_id = next(self._ids)
        answers = self._response_queue(request_id)
        self._send({"id": request_id, "method": method, "params": params})
        answer = self._wait(answers, f"answer to {method}")
        with self._lock:
            del self._responses[request_id]
        if "error" in answer:
            raise LspError(f"{method}: {answer['error']}")
        return answer.get("result")

    def notify(self, method: str, params: Any) -> None:
        """Send a notification (no answer expected)."""
        self._send({"method": method, "params": params})

    def close(self) -> None:
        """Shut the server down politely, then make sure it is gone."""
        try:
            if self._process.poll() is None:
                self.request("shutdown", None)
                self.notify("exit", None)
                self._process.wait(timeout=5)
        except (LspError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self._stderr.close()

    def __enter__(self) -> LspClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- documents --------------------------------------------------------------------------

    def open(self, path: Path, text: str | None = None) -> tuple[str, list[Diagnostic]]:
        """Open `path` (with `text` instead of the file's own) and wait for its diagnostics."""
        uri = _uri(path)
        if text is None:
            text = path.read_text("utf-8")
        received = self._diagnostic_queue(uri)
        version = next(self._versions)
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "yaml", "version": version, "text": text}},
        )
        params = self._wait(received, f"diagnostics for {path}")
        found = [
            Diagnostic(
                line=d["range"]["start"]["line"] + 1,
                column=d["range"]["start"]["character"] + 1,
                message=d["message"],
                severity=d.get("severity", 1),
            )
            for d in params["diagnostics"]
        ]
        return uri, sorted(found, key=lambda d: (d.line, d.column, d.message))

    def close_document(self, uri: str) -> None:
        """Close a document and wait for the server to clear its diagnostics.

        The server answers a close with empty diagnostics for the document, with no version to
        tell them from a later validation's: waiting for them here keeps them from being taken
        for the diagnostics of the same document opened again.
        """
        received = self._diagnostic_queue(uri)
        self.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        while self._wait(received, f"cleared diagnostics for {uri}")["diagnostics"]:
            pass

    def diagnostics(self, path: Path, text: str | None = None) -> list[Diagnostic]:
        """What the editor underlines in `path` (or in `text` saved as `path`)."""
        uri, found = self.open(path, text)
        self.close_document(uri)
        return found

    def hover(self, uri: str, line: int, column: int) -> str:
        """The hover text at a 1-based line and column of an open document ('' for none)."""
        result = self.request(
            "textDocument/hover",
            {"textDocument": {"uri": uri}, "position": {"line": line - 1, "character": column - 1}},
        )
        if not result:
            return ""
        contents = result["contents"]
        if isinstance(contents, dict):
            return str(contents.get("value", ""))
        if isinstance(contents, list):
            return "\n".join(c if isinstance(c, str) else str(c.get("value", "")) for c in contents)
        return str(contents)

    def completion(self, uri: str, line: int, column: int) -> list[dict[str, Any]]:
        """The completion items offered at a 1-based line and column of an open document."""
        result = self.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": {"line": line - 1, "character": column - 1}},
        )
        if result is None:
            return []
        items: list[dict[str, Any]] = result["items"] if isinstance(result, dict) else result
        return items
