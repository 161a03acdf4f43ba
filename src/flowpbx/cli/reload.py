"""`flowpbx reload`: check the flows as the service would, then ask the running service to
serve them now (SIGHUP). The service also picks up saved files by itself within a second."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from flowpbx.cli.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, fail, flows_folder


@click.command(short_help="Check the flows and make the running service serve them now.")
@flows_folder
def reload(flows_dir: Path | None) -> None:
    """Check the flows exactly as `flowpbx serve` loads them (config values included), then
    ask every `flowpbx serve` started from this folder to reload them.

    Calls already in progress finish on the version they started with. A flow with errors is
    not sent: the service keeps serving the last good version. Exits 0 when the flows are
    valid, 1 when they are not.
    """
    import dataclasses

    from flowpbx.app import catalog_from
    from flowpbx.errors import FlowError, FlowpbxError
    from flowpbx.reloading import running_servers
    from flowpbx.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(webhooks=False)
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)
    if flows_dir is not None:
        settings = dataclasses.replace(settings, flows_dir=flows_dir)
    try:
        catalog = catalog_from(settings)
    except FlowError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        fail(
            "not reloaded: fix the errors above; the running service keeps serving "
            "the last good version",
            EXIT_PROBLEMS,
        )
    except FlowpbxError as exc:
        fail(f"{exc}\nnot reloaded: the running service keeps the last good version", 1)
    versions = ", ".join(
        f"{name} (version {loaded.version})" for name, loaded in sorted(catalog.flows.items())
    )
    click.echo(f"flows valid: {versions}")
    servers = running_servers(settings.run_dir)
    if not servers:
        click.echo(
            f"no flowpbx serve is running from here (no pid file in {settings.run_dir}/); "
            "it will load these flows when it starts"
        )
        raise SystemExit(EXIT_OK)
    wanted = {name: loaded.version for name, loaded in catalog.flows.items()}
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    for path, pid in servers:
        port = path.stem.removeprefix("flowpbx-")
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:  # it stopped meanwhile, or belongs to another user
            click.echo(f"could not ask flowpbx serve on port {port} (process {pid}): {exc}")
            continue
        click.echo(f"asked flowpbx serve on port {port} (process {pid}) to reload")
        confirmed, workers = _serves(host, port, wanted)
        where = f"port {port}" if workers == 1 else f"port {port} (all {workers} workers)"
        if confirmed:
            click.echo(
                f"{where} now serves {versions}; calls in progress finish on the version "
                "they started with"
            )
        else:
            click.echo(
                f"{where} did not confirm within {CONFIRM_SECONDS} s that it serves these "
                "versions: look at its log ('flows NOT reloaded' names what it refused)"
            )


CONFIRM_SECONDS = 10


def _serves(host: str, port: str, wanted: dict[str, str]) -> tuple[bool, int]:
    """Whether the server on `port` says (/health) it serves the `wanted` versions, asking
    until it does or CONFIRM_SECONDS pass; and how many workers it has. With several workers,
    each answer comes from one of them (it names its process): asked on a new connection
    each time, until as many workers as there are have answered that they serve them."""
    deadline = time.monotonic() + CONFIRM_SECONDS
    serving: dict[int, bool] = {}  # worker process -> whether its last answer had them
    workers = 1
    while time.monotonic() < deadline:
        try:
            url = f"http://{host}:{port}/health"
            with urllib.request.urlopen(url, timeout=2) as answer:
                body = answer.read()
        except urllib.error.HTTPError as exc:  # 503 when degraded: the body still says
            body = exc.read()
        except OSError:
            body = b"{}"
        try:
            health = json.loads(body)
        except ValueError:
            health = {}
        if isinstance(health.get("workers"), int):
            workers = max(1, health["workers"])
        serving[health.get("pid", 0)] = health.get("versions") == wanted
        if sum(serving.values()) >= workers:
            return True, workers
        time.sleep(0.1 if workers == 1 else 0.02)
    return False, workers
