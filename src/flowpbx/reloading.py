"""Live reload of the flows: notice a changed flow file (or SIGHUP), check the flows in a
worker thread, and swap them in whole; a broken edit is refused and logged while the last good
flows keep serving. Each version served is kept in the store for the calls still on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from flowpbx.engine.storage import CallStore, StoreUnavailable
from flowpbx.errors import FlowError, FlowpbxError
from flowpbx.language.catalog import FlowCatalog
from flowpbx.language.library import Change, FlowLibrary
from flowpbx.language.loader import flow_files

log = logging.getLogger("flowpbx.flows")

SETTLE_SECONDS = 0.2
"""A change is loaded once the files have stopped changing for this long (an editor may save
a file in several writes)."""
KEEP_EVERY_SECONDS = 3600.0
"""How often the texts of the versions served are kept again in the store (their time to live
is twice the call TTL)."""

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(folder: Path) -> Fingerprint:
    """What changes when a flow file is saved, added or removed: (path, mtime_ns, size)."""
    found = []
    for path in flow_files([folder]) if folder.is_dir() else ():
        try:
            stat = path.stat()
        except OSError:  # removed between the listing and the stat: the next look sees it
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


class Outcome(StrEnum):
    RELOADED = "reloaded"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Reload:
    """What one reload did: the changes swapped in, or the problems that refused it."""

    outcome: Outcome
    changes: tuple[Change, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass
class FlowReloader:
    """Reloads `library` from `load()` when the files in `folder` change or when asked."""

    library: FlowLibrary
    load: Callable[[], FlowCatalog]
    """Read and check every flow (raises FlowError or another FlowpbxError when they cannot be
    served); runs in a worker thread."""
    folder: Path
    store: CallStore | None = None
    poll_seconds: float = 1.0
    """How often the folder is looked at; 0: only on SIGHUP or `reload()`."""
    seen: Fingerprint | None = None
    """The folder as it was when `library` was loaded (taken before loading, so that an edit
    saved meanwhile is noticed); None: as it is when watching starts."""
    keep_seconds: float = KEEP_EVERY_SECONDS
    """How often the texts of the versions served are kept again in the store."""
    _asked: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    def ask(self) -> None:
        """Reload as soon as possible (the SIGHUP handler)."""
        self._asked.set()

    async def reload(self) -> Reload:
        """Load the flows now and swap them in if they are valid."""
        async with self._lock:
            self.seen = await asyncio.to_thread(fingerprint, self.folder)
            try:
                with _sharing_the_interpreter():
                    catalog = await asyncio.to_thread(self.load)
            except FlowError as exc:
                problems = tuple(str(problem) for problem in exc.problems)
            except FlowpbxError as exc:
                problems = tuple(str(exc).splitlines())
            except Exception as exc:  # e.g. a file gone between listing and reading
                # Whatever stops this load, the last good flows serve and watching goes on.
                log.exception("flows: reading them failed")
                problems = (f"the flows could not be read: {exc}",)
            else:
                changes = tuple(self.library.swap(catalog))
                if not changes:
                    log.info("flows: reloaded, nothing changed")
                    return Reload(Outcome.UNCHANGED)
                log.info("flows reloaded: %s", "; ".join(map(str, changes)))
                await self.keep_texts()
                return Reload(Outcome.RELOADED, changes)
        log.error(
            "flows NOT reloaded: the edit has %d problem(s); still serving the last good "
            "version:\n  %s",
            len(problems),
            "\n  ".join(problems),
        )
        return Reload(Outcome.REFUSED, problems=problems)

    async def keep_texts(self) -> None:
        """Keep the texts of the versions served in the store, for calls other processes
        take after a reload (a store that does not answer is tried again later)."""
        if self.store is None:
            return
        for loaded in self.library.current.flows.values():
            if not loaded.text:
                continue
            try:
                await self.store.keep_flow(
                    loaded.flow.name, loaded.version, loaded.flow.source, loaded.text
                )
            except StoreUnavailable as exc:
                log.warning("flows: could not keep %s in the store: %s", loaded.flow.name, exc)
                return

    async def run_forever(self) -> None:
        """Watch the folder (every `poll_seconds`) and answer SIGHUP until cancelled."""
        await self.keep_texts()
        if self.seen is None:
            self.seen = await asyncio.to_thread(fingerprint, self.folder)
        kept_at = time.monotonic()
        while True:
            timeout = self.poll_seconds or self.keep_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._asked.wait(), timeout)
            try:
                if self._asked.is_set():
                    self._asked.clear()
                    log.info("flows: reload asked (SIGHUP)")
                    await self.reload()
                elif self.poll_seconds and await self._changed():
                    await self.reload()
                if time.monotonic() - kept_at >= self.keep_seconds:
                    await self.keep_texts()
                    kept_at = time.monotonic()
            except Exception:  # watching must outlive a bad round (e.g. the folder removed)
                log.exception("flows: watching the folder failed; trying again")

    async def _changed(self) -> bool:
        """Whether the files changed since the last load, and have settled."""
        now = await asyncio.to_thread(fingerprint, self.folder)
        if now == self.seen:
            return False
        while True:
            await asyncio.sleep(SETTLE_SECONDS)
            settled = await asyncio.to_thread(fingerprint, self.folder)
            if settled == now:
                return True
            now = settled


SWITCH_SECONDS = 0.0005
"""The interpreter's thread switch interval while flows are checked in a worker thread."""


@contextlib.contextmanager
def _sharing_the_interpreter() -> Iterator[None]:
    """While a worker thread checks flows, let the event loop's thread take the interpreter
    back every half millisecond instead of every 5 ms (CPython's default): webhooks answered
    meanwhile wait less (benchmarks/bench_reload.py measures it)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, SWITCH_SECONDS))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


_early_hangups: list[int] = []


def catch_early_hangup() -> None:
    """Until the service listens (its start can take seconds: migrations), a SIGHUP is noted
    instead of ending the process; the service reloads once it listens."""
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _note_hangup)


def _note_hangup(number: int, _frame: object) -> None:
    _early_hangups.append(number)


def listen_for_hangup(reloader: FlowReloader) -> Callable[[], None]:
    """Reload on SIGHUP (where the platform has it); returns how to stop listening."""
    if not hasattr(signal, "SIGHUP"):
        return lambda: None
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, reloader.ask)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        return lambda: None
    if _early_hangups:
        _early_hangups.clear()
        reloader.ask()

    def stop() -> None:
        loop.remove_signal_handler(signal.SIGHUP)
        # While the process stops, a SIGHUP (`flowpbx reload`) is noted, not fatal.
        signal.signal(signal.SIGHUP, _note_hangup)

    return stop


# -- the pid files `flowpbx reload` signals --


def pid_file(folder: Path, port: int) -> Path:
    """Where `flowpbx serve` on `port` writes its process id."""
    return folder / f"flowpbx-{port}.pid"


def write_pid(path: Path) -> bool:
    """Write this process's id to `path`, unless a live flowpbx server already wrote its own
    there (a second server started on the same port, which will fail to listen)."""
    if _live_server(path) not in (None, os.getpid()):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    return True


def remove_pid(path: Path) -> None:
    """Remove the pid file if it is still this process's."""
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def running_servers(folder: Path) -> list[tuple[Path, int]]:
    """The (pid file, pid) of the `flowpbx serve` processes alive that wrote pid files in
    `folder`; stale files are left out."""
    found = []
    for path in sorted(folder.glob("flowpbx-*.pid")) if folder.is_dir() else ():
        pid = _live_server(path)
        if pid is not None:
            found.append((path, pid))
    return found


def _live_server(path: Path) -> int | None:
    """The id in pid file `path` if that process is alive and is flowpbx (a stale file's id
    may have been given to another program since)."""
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    command = Path(f"/proc/{pid}/cmdline")
    if command.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            if b"flowpbx" not in command.read_bytes():
                return None
        except OSError:
            return None
    return pid
