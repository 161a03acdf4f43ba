"""`flowpbx serve`: the webhook server."""

from __future__ import annotations

from pathlib import Path

import click

from flowpbx.cli.common import EXIT_PROBLEMS, EXIT_USAGE, fail, flows_folder


@click.command(short_help="Run the webhook server (Voice URL: /api/calls/incoming).")
@click.option("--host", default=None, help="Address to listen on (default HOST or 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Port (default PORT or 3020).")
@flows_folder
def serve(host: str | None, port: int | None, flows_dir: Path | None) -> None:
    """Run the webhook server (Twilio's Voice URL is /api/calls/incoming)."""
    import asyncio
    import dataclasses
    import logging

    import uvicorn

    from flowpbx.app import build_app, check_store
    from flowpbx.privacy import mask_logs
    from flowpbx.reloading import catch_early_hangup, pid_file, remove_pid, write_pid
    from flowpbx.settings import Settings, SettingsError

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
    settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    mask_logs()  # phone numbers quoted in errors' messages too (docs/privacy.md)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("twilio").setLevel(logging.WARNING)  # eight lines per REST request
    try:
        asyncio.run(check_store(settings))
        app = build_app(settings)
    except Exception as exc:
        fail(f"flowpbx cannot start: {exc}", EXIT_PROBLEMS)
    # `flowpbx reload` finds the server by this file and sends it SIGHUP.
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
    try:
        uvicorn.run(
            app, host=settings.host, port=settings.port, log_level="warning", proxy_headers=False
        )
    finally:
        remove_pid(pid)
