"""`flowpbx serve`: the webhook server."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from flowpbx.cli.common import EXIT_PROBLEMS, EXIT_USAGE, fail, flows_folder

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from flowpbx.settings import Settings


@click.command(short_help="Run the webhook server (Voice URL: /api/calls/incoming).")
@click.option("--host", default=None, help="Address to listen on (default HOST or 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Port (default PORT or 3020).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),  # settings.MAX_WORKERS (not imported: commands start fast)
    default=None,
    help="Worker processes answering on the port (default FLOWPBX_WORKERS or 1); more than "
    "one needs Redis.",
)
@flows_folder
def serve(host: str | None, port: int | None, workers: int | None, flows_dir: Path | None) -> None:
    """Run the webhook server (Twilio's Voice URL is /api/calls/incoming)."""
    import asyncio
    import dataclasses

    from flowpbx.app import build_app, check_store
    from flowpbx.metrics import prepare_own_metrics
    from flowpbx.reloading import remove_pid
    from flowpbx.settings import Settings, SettingsError
    from flowpbx.workers import prepare_workers, serve_workers

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if flows_dir is not None:
        overrides["flows_dir"] = flows_dir
    if workers is not None:
        overrides["workers"] = workers
    settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
    if settings.workers > 1 and settings.redis_url is None:
        fail(
            f"flowpbx cannot start {settings.workers} workers without Redis: call state and "
            "queues would live in each worker's memory, and a call's webhooks reach any "
            "worker. Set REDIS_HOST (or REDIS_CLUSTER_NODES), or run one worker.",
            EXIT_USAGE,
        )
    setup_logging(settings)
    app = None
    bound = None
    sock = _bind(settings) if settings.workers == 1 else None
    try:
        asyncio.run(check_store(settings))
        if settings.workers == 1:
            prepare_own_metrics()  # PROMETHEUS_MULTIPROC_DIR: an earlier run's files removed
            app = build_app(settings)
        else:
            # What would stop every worker, then the port, then the metrics folder.
            bound = prepare_workers(settings)
    except Exception as exc:
        fail(f"flowpbx cannot start: {exc}", EXIT_PROBLEMS)
    pid = _announce(settings)
    try:
        if app is not None and sock is not None:
            _serve_one(app, sock, settings)
        elif bound is None or not serve_workers(settings, bound):
            fail("flowpbx cannot start: the log above says why", EXIT_PROBLEMS)
    finally:
        remove_pid(pid)
        if sock is not None:
            sock.close()


def _bind(settings: Settings) -> socket.socket:
    """The one process's socket, bound before anything starts: a port in use stops the start
    here, in one line (uvicorn would say it after the app had started, and then stop it)."""
    from flowpbx.workers import bind, cannot_listen

    try:
        return bind(settings.host, settings.port)
    except OSError as exc:
        fail(f"flowpbx cannot start: {cannot_listen(settings, exc)}", EXIT_PROBLEMS)


def _serve_one(app: Starlette, sock: socket.socket, settings: Settings) -> None:
    """Serve `app` on `sock` in this process until SIGTERM or Ctrl+C."""
    import contextlib

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    # uvicorn stops gracefully on SIGTERM, then raises the signal again for the handler it
    # found: with this one that ends in SystemExit(0), so the pid file is removed and `docker
    # stop` sees a clean exit instead of death by the signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            log_config=None,  # uvicorn's lines go through flowpbx's handler (flowpbx.logs)
            proxy_headers=False,
        )
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: uvicorn stopped gracefully
        server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run: the log above says why


def _announce(settings: Settings) -> Path:
    """Write this server's pid file, by which `flowpbx reload` finds it and sends it SIGHUP
    (a SIGHUP before the server listens is kept for then)."""
    import logging

    from flowpbx.reloading import catch_early_hangup, pid_file, write_pid

    pid = pid_file(settings.run_dir, settings.port)
    catch_early_hangup()
    try:
        if not write_pid(pid):
            logging.getLogger("flowpbx").warning(
                "%s names another flowpbx serve that is running: port %d is probably taken",
                pid,
                settings.port,
            )
    except OSError as exc:
        logging.getLogger("flowpbx").warning(
            "cannot write %s (%s): flowpbx reload will not find this server", pid, exc
        )
    return pid


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def setup_logging(settings: Settings) -> None:
    """This process's logging: `flowpbx serve`'s, and each worker's (workers are spawned, so
    they set up their own)."""
    from flowpbx.logs import configure_logging, secrets_of

    # JSON lines (LOG_FORMAT), numbers masked and secrets redacted (docs/operations.md § 6).
    configure_logging(settings.log_level, settings.log_format, secrets=secrets_of(settings))
