"""`flowpbx serve --workers N`: N worker processes answering on one port, under uvicorn's
supervisor.

The `flowpbx serve` process checks everything a worker needs (Redis answers, the flows are
valid), binds the port, then supervises: it starts the workers, replaces one that dies and
stops them all on SIGTERM or Ctrl+C. Each worker is a whole flowpbx (webhooks, REST API, queue
scheduler, history writer, flow watcher) that `app_from_environment` builds in a fresh
interpreter: workers are spawned, not forked, so they inherit the environment and nothing else.
They keep no call of their own: call state, queues, agents' statuses, the history streams and
the texts of the flow versions served are in Redis, which is why more than one worker needs it.

Two changes to uvicorn's supervisor (`Workers`): each worker listens on a socket of its own on
the port (SO_REUSEPORT), so that the kernel spreads connections evenly over them; and SIGHUP
(`flowpbx reload`) is passed on to every worker, which reloads its flows in place (checked
first, swapped in whole, calls keeping their version), where uvicorn would restart them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from flowpbx.errors import FlowpbxError
from flowpbx.settings import Settings

log = logging.getLogger("flowpbx")

APP = "flowpbx.workers:app_from_environment"
"""The factory each worker imports and calls."""
READY_SECONDS = 0.5
"""How long the supervisor waits for a worker to say whether it has started."""
_PR_SET_PDEATHSIG = 1


def worker_environment(settings: Settings) -> dict[str, str]:
    """The variables that give a worker the supervisor's settings where the command line
    changed them (--host, --port, --flows, --workers): a worker reads its settings from the
    environment and .env as the supervisor did, and the environment wins over .env."""
    return {
        "HOST": settings.host,
        "PORT": str(settings.port),
        "FLOWPBX_FLOWS_DIR": str(settings.flows_dir),
        "FLOWPBX_WORKERS": str(settings.workers),
    }


class PortTaken(FlowpbxError):
    """The port of `flowpbx serve --workers` cannot be bound."""


def prepare_workers(settings: Settings) -> list[socket.socket]:
    """Before any worker starts: raise what would stop every one of them (flows that do not
    validate, a database URL that cannot be used: `build_app` checks nothing else), bind the
    port (PortTaken), and only then make the folder where they share their metrics
    (PROMETHEUS_MULTIPROC_DIR, by default `metrics_dir`, emptied of the files of processes no
    longer running): a second server started on the port of one that runs stops before it
    touches the running server's metric files. The sockets are for `serve_workers`."""
    from flowpbx.app import catalog_from
    from flowpbx.db.database import Database
    from flowpbx.metrics import MULTIPROC_ENV, prepare_multiprocess

    catalog_from(settings)
    Database(settings.database_url).dispose()
    try:
        bound = listeners(settings.host, settings.port, settings.workers)
    except OSError as exc:
        raise PortTaken(cannot_listen(settings, exc)) from exc
    try:
        prepare_multiprocess(os.environ.get(MULTIPROC_ENV) or metrics_dir(settings))
    except BaseException:
        for sock in set(bound):
            sock.close()
        raise
    return bound


def metrics_dir(settings: Settings) -> Path:
    """Where the workers of `flowpbx serve` on this port share their metrics by default: one
    folder per host and port, `<FLOWPBX_RUN_DIR>/metrics-<hostname>-<port>`. Two servers
    started from one folder must not mix theirs; nor two containers mounting one data volume
    (blue/green): each has its own process ids, so one would take the other's files for those
    of processes gone and remove them, and their low ids collide. Docker gives each container
    a hostname of its own."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"
    return settings.run_dir / f"metrics-{host}-{settings.port}"


def app_from_environment() -> Starlette:
    """A worker's application: its settings from the environment (and .env), its logging, and
    the app `flowpbx serve` would build. A worker that cannot start says why and exits with
    uvicorn's start-up failure status, on which the supervisor stops instead of starting it
    again and again."""
    from flowpbx.app import build_app
    from flowpbx.cli.serve import setup_logging
    from flowpbx.reloading import catch_early_hangup

    catch_early_hangup()  # a SIGHUP before the app listens is noted, then acted on
    _stop_with_supervisor()
    try:
        settings = Settings.from_env()
        setup_logging(settings)
        return build_app(settings)
    except Exception as exc:
        logging.basicConfig()  # should the settings be what failed
        log.error("flowpbx worker %d cannot start: %s", os.getpid(), exc)
        sys.exit(STARTUP_FAILURE)


def _stop_with_supervisor() -> None:
    """On Linux, a worker gets SIGTERM (and stops gracefully) when its supervisor dies, even by
    SIGKILL, rather than answering on alone."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class Workers(Multiprocess):
    """uvicorn's supervisor with two changes.

    - Each worker listens on a socket of its own (`listeners[i]` for `processes[i]`), all bound
      to the one port with SO_REUSEPORT, so that the kernel spreads new connections evenly over
      the workers. With one socket shared by all (uvicorn's way) the first worker awake takes
      every connection waiting, and a burst of keep-alive connections (a load balancer's pool)
      can stay on one worker while the others idle. A worker that dies is replaced on its
      socket, which keeps the connections that arrive meanwhile waiting for it.
    - SIGHUP is passed on to the workers (each reloads its flows) instead of restarting them.
      A worker that has not started yet (its flows are not loaded, or its app not listening)
      is sent SIGHUP once it has.

    `on_exit(pid)` is called for each worker that died and was replaced.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        listeners: list[socket.socket],
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(config, listeners)
        self.listeners = listeners
        self.on_exit = on_exit
        self._hangup: set[int] = set()
        """Workers still to be sent SIGHUP, by process id."""

    @property
    def failed(self) -> bool:
        """Whether a worker could not start (the supervisor then stops)."""
        return any(process.exitcode == STARTUP_FAILURE for process in self.processes)

    def pids(self) -> set[int]:
        return {process.pid for process in self.processes if process.pid is not None}

    def _start(self, listener: socket.socket) -> Process:
        process = Process(self.config, [listener])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._start(listener) for listener in self.listeners]

    def keep_subprocess_alive(self) -> None:
        """uvicorn's, but a worker is replaced on the socket of the one it replaces."""
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung, or gone
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It failed before it served: it would fail the same way again and again.
                log.error("worker %s could not start: the server stops", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.warning(
                "worker %s died (exit status %s): starting another", process.pid, process.exitcode
            )
            if self.on_exit is not None and process.pid is not None:
                self.on_exit(process.pid)
            self.processes[index] = self._start(self.listeners[index])
        if self._hangup:
            self._pass_hangup()

    def handle_hup(self) -> None:
        log.info("SIGHUP: the %d workers reload their flows", len(self.processes))
        self._hangup = self.pids()
        self._pass_hangup()

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: restart flowpbx serve with another --workers")

    def handle_ttou(self) -> None:
        log.warning("SIGTTOU ignored: restart flowpbx serve with another --workers")

    def _pass_hangup(self) -> None:
        for process in self.processes:
            pid = process.pid
            if pid is None or pid not in self._hangup:
                continue
            # Until a worker listens, a SIGHUP could end it (before its handler is set), and
            # it is loading the flows as they are now anyway: it gets the signal once ready.
            if process.is_ready(timeout=READY_SECONDS):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)
                self._hangup.discard(pid)
        self._hangup &= self.pids()


def _listening_socket(host: str, port: int) -> tuple[socket.socket, tuple[Any, ...]]:
    """An unbound socket for HOST, and the address to bind it to: HOST's first address (a
    name such as localhost is resolved; "" is every IPv4 address, as 0.0.0.0). An IPv6 socket
    takes IPv6 only, as asyncio's own servers do: `::` does not also take IPv4."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock, address


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port for the one process of `flowpbx serve` (uvicorn listens on
    it); raises OSError when the port is taken."""
    sock, address = _listening_socket(host, port)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def cannot_listen(settings: Settings, exc: OSError) -> str:
    """What to say when host:port cannot be bound: which, why, and what to do."""
    where = f"{settings.host}:{settings.port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: port {settings.port} is already in use (another "
            "flowpbx serve, or another program); stop it, or choose another port (--port, PORT)"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}; check HOST and PORT (--host, --port)"


def listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets bound to host:port, for `count` workers: with SO_REUSEPORT on Linux,
    where the kernel spreads connections over them; elsewhere (where SO_REUSEPORT does not
    balance) one socket they all share. Raises OSError when the port is taken: the first bind
    is made without SO_REUSEPORT, which another server's sockets would otherwise let through."""
    balanced = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    probe, address = _listening_socket(host, port)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(address)
        if not balanced:
            probe.set_inheritable(True)
            return [probe] * count
    except OSError:
        probe.close()
        raise
    probe.close()
    bound: list[socket.socket] = []
    try:
        for _ in range(count):
            sock, _address = _listening_socket(host, port)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.set_inheritable(True)
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


def serve_workers(settings: Settings, bound: list[socket.socket]) -> bool:
    """Serve on the sockets `prepare_workers` bound, with settings.workers worker processes,
    until stopped (SIGTERM, SIGINT); False if a worker could not start."""
    from flowpbx.metrics import worker_exited

    os.environ.update(worker_environment(settings))
    config = uvicorn.Config(
        APP,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through flowpbx's handler (flowpbx.logs)
        proxy_headers=False,
    )
    log.info(
        "flowpbx serve: %d workers on %s:%d (supervisor process %d)",
        settings.workers,
        settings.host,
        settings.port,
        os.getpid(),
    )
    supervisor = Workers(config, bound, on_exit=worker_exited)
    try:
        supervisor.run()
    finally:
        for sock in set(bound):
            sock.close()
    return not supervisor.failed
