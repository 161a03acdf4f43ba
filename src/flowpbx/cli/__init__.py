"""The `flowpbx` command: validate flows, serve the webhooks, sign test requests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flowpbx import __version__
from flowpbx.language.loader import Report, check_file, flow_files

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowpbx")
def main() -> None:
    """flowpbx: data-driven IVR and call queues for Twilio Programmable Voice."""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _summary(reports: list[Report]) -> str:
    errors = sum(len(r.errors) for r in reports)
    warnings = sum(len(r.warnings) for r in reports)
    invalid = sum(1 for r in reports if r.errors)
    files = _plural(len(reports), "flow")
    if not errors:
        return f"{files} valid, {_plural(warnings, 'warning')}"
    counts = f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    return f"{files} checked: {invalid} invalid, {counts}"


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output for people (text) or machines (json).",
)
def validate(paths: tuple[Path, ...], strict: bool, output_format: str) -> None:
    """Check flow files (or folders of them) and report every problem as file:line:col.

    Exits 0 when all flows are valid, 1 when any has an error (or a warning, with --strict),
    2 on usage errors.
    """
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise click.UsageError(f"no such file or folder: {', '.join(missing)}")
    files = flow_files(paths)
    if not files:
        raise click.UsageError(f"no flow files (*.yaml, *.yml) in: {', '.join(map(str, paths))}")
    reports = [check_file(path) for path in files]
    failed = any(r.errors or (strict and r.warnings) for r in reports)
    if output_format == "json":
        payload = {
            "valid": not failed,
            "files": [
                {"file": r.file, "flow": r.flow.name if r.flow else None, "valid": not r.errors}
                for r in reports
            ],
            "errors": sum(len(r.errors) for r in reports),
            "warnings": sum(len(r.warnings) for r in reports),
            "problems": [p.as_dict() for r in reports for p in r.problems],
        }
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        for report in reports:
            for problem in report.problems:
                click.echo(str(problem))
        click.echo(_summary(reports))
    sys.exit(EXIT_PROBLEMS if failed else EXIT_OK)


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    sys.exit(code)


@main.command()
@click.option("--host", default=None, help="Address to listen on (default HOST or 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Port (default PORT or 3020).")
@click.option(
    "--flows",
    "flows_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of flow files (default FLOWPBX_FLOWS_DIR or flows/).",
)
def serve(host: str | None, port: int | None, flows_dir: Path | None) -> None:
    """Run the webhook server (Twilio's Voice URL is /api/calls/incoming)."""
    import asyncio
    import dataclasses
    import logging

    import uvicorn

    from flowpbx.app import build_app, check_store
    from flowpbx.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _fail(str(exc), EXIT_USAGE)
        return
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
    try:
        asyncio.run(check_store(settings))
        app = build_app(settings)
    except Exception as exc:
        _fail(f"flowpbx cannot start: {exc}", EXIT_PROBLEMS)
        return
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level="warning", proxy_headers=False
    )


@main.command()
@click.argument("url")
@click.argument("params", nargs=-1)
@click.option(
    "--token",
    envvar="TWILIO_AUTH_TOKEN",
    default=None,
    help="Auth token (default TWILIO_AUTH_TOKEN or .env).",
)
def sign(url: str, params: tuple[str, ...], token: str | None) -> None:
    """Print the X-Twilio-Signature Twilio would send for a POST of PARAMS (KEY=VALUE) to URL."""
    from twilio.request_validator import RequestValidator

    from flowpbx.settings import Settings

    if token is None:
        token = Settings.from_env({"FLOWPBX_DEV_SKIP_SIGNATURE": "true"}).twilio_auth_token
    if not token:
        raise click.UsageError("no auth token: set TWILIO_AUTH_TOKEN or pass --token")
    fields: dict[str, str] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep:
            raise click.UsageError(f"parameter {param!r} is not KEY=VALUE")
        fields[key] = value
    click.echo(RequestValidator(token).compute_signature(url, fields))
