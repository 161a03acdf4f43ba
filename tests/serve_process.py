"""`flowpbx serve` as a real process for tests: a free port, a working directory with its own
.env, an environment free of the caller's settings, and a stop by process id whatever happens."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import FLOWS
from flowpbx.language.loader import load_flow

TOKEN = "test-token"
FLOWPBX = Path(sys.executable).with_name("flowpbx")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Variables the service reads: none may leak in from the environment running the tests.
_OWN_PREFIXES = ("TWILIO_", "REDIS_", "DB_", "FLOWPBX_")
# (prometheus_client's PROMETHEUS_MULTIPROC_DIR too: a server's metrics go where its test says.)
_OWN_NAMES = frozenset(
    {"PORT", "HOST", "PUBLIC_BASE_URL", "LOG_LEVEL", "LOG_FORMAT"}
    | {"PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"}
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(**extra: str) -> dict[str, str]:
    config_names = set(load_flow(FLOWS / "seguros.yaml").config)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_OWN_PREFIXES)
        and name not in _OWN_NAMES
        and name not in config_names
    }
    return env | extra


def workdir(tmp_path: Path) -> Path:
    """A working directory whose .env holds only the auth token."""
    (tmp_path / ".env").write_text(f"TWILIO_AUTH_TOKEN={TOKEN}\n", encoding="utf-8")
    return tmp_path


@dataclass(frozen=True)
class Server:
    """A running `flowpbx serve` process."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the process we started (by its id), killing it if it does not exit."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def serving(
    workdir: Path, env: Mapping[str, str], flows: Path = FLOWS, args: Sequence[str] = ()
) -> Iterator[Server]:
    """Start `flowpbx serve` (with `args`, e.g. --workers 2) on a free port and wait until it
    accepts connections.

    Readiness is a bare TCP connect, not /health: a health check would use the call store
    first and hide a store that breaks on its first use.
    """
    port = free_port()
    log = workdir / f"server-{port}.log"
    command = [str(FLOWPBX), "serve", "--port", str(port), "--flows", str(flows), *args]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"flowpbx serve exited with {process.returncode}:\n{server.output()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"flowpbx serve did not accept connections:\n{server.output()}")
            time.sleep(0.05)
        yield server
    finally:
        stop(process)
