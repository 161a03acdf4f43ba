"""`flowpbx validate`: check flow files and report every problem as file:line:col."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flowpbx.cli.common import EXIT_OK, EXIT_PROBLEMS, text_or_json
from flowpbx.language.loader import Report, check_files, flow_files


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


@click.command(short_help="Check flow files; report every problem as file:line:col.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@text_or_json()
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
    reports = check_files(files)
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
