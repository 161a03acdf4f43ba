"""`flowpbx test [PATH]`: play the scenario files flow authors write beside their flows
(flows/tests/*.yaml), say which scenarios pass, and how much of each flow they cover."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from starlette.config import Config

from flowpbx.authoring.coverage import FlowCoverage, coverage, percent
from flowpbx.authoring.scenario_run import ScenarioResult, run_scenario
from flowpbx.authoring.scenarios import Where, check_against, flow_path, read_scenarios
from flowpbx.cli.common import EXIT_OK, EXIT_PROBLEMS, text_or_json
from flowpbx.errors import FlowError, FlowpbxError, Problem, Severity
from flowpbx.language.catalog import FlowCatalog, load_one
from flowpbx.language.flow import Flow
from flowpbx.language.loader import FLOW_SUFFIXES, check_bytes


@dataclass
class _FileRun:
    """One scenario file: its problems, or its flow and the results of its scenarios."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    flow: Flow | None = None
    results: list[ScenarioResult] = field(default_factory=list)


def _scenario_files(paths: tuple[Path, ...]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in FLOW_SUFFIXES))
        else:
            found.append(path)
    return found


def _catalog(path: Path) -> FlowCatalog:
    """The flow alone, with the config values written in it: scenarios test the flow as
    written; only a value left empty (~) comes from the environment (or .env)."""
    report = check_bytes(path.read_bytes(), str(path))
    if report.flow is None:
        raise FlowError(report.problems)
    written = report.flow.config
    env = Config(Path(".env") if Path(".env").is_file() else None)
    return load_one(path, lambda name: None if written.get(name) else env(name, default=None))


def _problem(where: Where, message: str) -> Problem:
    return Problem(where.file, where.line, where.column, Severity.ERROR, "scenario-flow", message)


async def _run_file(path: Path) -> _FileRun:
    run = _FileRun(path)
    scenarios, run.problems = read_scenarios(path)
    if scenarios is None:
        return run
    found = flow_path(scenarios)
    if isinstance(found, Problem):
        run.problems = [found]
        return run
    try:
        catalog = _catalog(found)
    except FlowError as exc:
        run.problems = [p for p in exc.problems if p.is_error]
        run.problems.append(_problem(scenarios.flow_where, f"flow {found} has errors (above)"))
        return run
    except FlowpbxError as exc:
        run.problems = [_problem(scenarios.flow_where, f"cannot run flow {found}: {exc}")]
        return run
    run.flow = catalog.default_flow.flow
    run.problems = check_against(scenarios, run.flow)
    if not run.problems:
        run.results = [await run_scenario(s, catalog) for s in scenarios.scenarios]
    return run


def _coverages(runs: list[_FileRun]) -> list[FlowCoverage]:
    """Coverage per flow, over every scenario file that calls it."""
    by_flow: dict[str, tuple[Flow, list[ScenarioResult]]] = {}
    for run in runs:
        if run.flow is not None and run.results:
            by_flow.setdefault(run.flow.source, (run.flow, []))[1].extend(run.results)
    return [coverage(flow, (r.events for r in results)) for flow, results in by_flow.values()]


def _text(runs: list[_FileRun], coverages: list[FlowCoverage], minimum: float | None) -> None:
    for run in runs:
        flow = f" (flow {run.flow.name})" if run.flow else ""
        click.echo(f"{run.path}{flow}")
        for problem in run.problems:
            click.echo(f"  {problem}")
        for result in run.results:
            mark = "✓" if result.passed else "✗"
            click.echo(f"  {mark} {result.scenario.name}")
            if result.failure is not None:
                failure = result.failure
                name = result.scenario.name
                click.echo(f"    {failure.where}: scenario '{name}': {failure.message}")
                click.echo(f"    path: {' → '.join(result.path) or '(none)'}")
    if coverages:
        click.echo("coverage:")
    for covered in coverages:
        click.echo(f"  {covered.summary()}")
        nodes, outcomes = covered.missed()
        for missed, why in ((nodes, "never reached"), (outcomes, "never taken")):
            for item in missed:
                where = f"{covered.flow.source}:{item.mark.line}:{item.mark.column}"
                click.echo(f"    {where}: {why}: {item.what}")
    results = [r for run in runs for r in run.results]
    failed = sum(1 for r in results if not r.passed)
    broken = sum(1 for run in runs if run.problems)
    summary = f"{len(results)} scenarios: {len(results) - failed} passed, {failed} failed"
    if broken:
        summary += f"; {broken} file(s) with errors"
    under = [c.flow.name for c in coverages if minimum is not None and c.below(minimum)]
    if under:
        summary += f"; coverage under {minimum:g}%: {', '.join(under)}"
    click.echo(summary)


def _json(runs: list[_FileRun], coverages: list[FlowCoverage], minimum: float | None) -> None:
    def where(mark: Any) -> dict[str, int]:
        return {"line": mark.line, "column": mark.column}

    files = []
    for run in runs:
        scenarios = [
            {
                "name": r.scenario.name,
                "passed": r.passed,
                "failure": None
                if r.failure is None
                else {
                    "file": r.failure.where.file,
                    **where(r.failure.where),
                    "message": r.failure.message,
                },
                "path": list(r.path),
            }
            for r in run.results
        ]
        files.append(
            {
                "file": str(run.path),
                "flow": run.flow.name if run.flow else None,
                "problems": [p.as_dict() for p in run.problems],
                "scenarios": scenarios,
            }
        )
    flows = []
    for c in coverages:
        nodes, outcomes = c.missed()
        flows.append(
            {
                "flow": c.flow.name,
                "file": c.flow.source,
                "nodes": {
                    "covered": c.node_counts[0],
                    "total": c.node_counts[1],
                    "percent": percent(*c.node_counts),
                    "missed": [{"what": m.what, **where(m.mark)} for m in nodes],
                },
                "outcomes": {
                    "covered": c.outcome_counts[0],
                    "total": c.outcome_counts[1],
                    "percent": percent(*c.outcome_counts),
                    "missed": [{"what": m.what, **where(m.mark)} for m in outcomes],
                },
                "below_minimum": minimum is not None and c.below(minimum),
            }
        )
    document = {"passed": not _failed(runs, coverages, minimum), "files": files, "coverage": flows}
    click.echo(json.dumps(document, ensure_ascii=False, indent=2))


def _failed(runs: list[_FileRun], coverages: list[FlowCoverage], minimum: float | None) -> bool:
    broken = any(run.problems or not all(r.passed for r in run.results) for run in runs)
    return broken or (minimum is not None and any(c.below(minimum) for c in coverages))


async def _run_all(files: list[Path]) -> list[_FileRun]:
    return [await _run_file(path) for path in files]


@click.command(short_help="Play the scenario tests written beside the flows.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--min-coverage",
    type=click.FloatRange(0, 100),
    default=None,
    metavar="PERCENT",
    help="Fail when the scenarios cover less than PERCENT of a flow's nodes or outcomes.",
)
@click.option(
    "--flows",
    "flows_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The flows folder whose tests/ run without PATH (default FLOWPBX_FLOWS_DIR or flows/).",
)
@text_or_json()
def test(
    paths: tuple[Path, ...], min_coverage: float | None, flows_dir: Path | None, output_format: str
) -> None:
    """Play scenario files (PATH: files or folders; default the flows folder's tests/) and
    report each scenario with ✓ or ✗, then each flow's node and outcome coverage.

    Exits 0 when every scenario passes (and coverage is at least --min-coverage), 1 when one
    fails, a file has errors or coverage is under the minimum, 2 on usage errors.
    """
    if not paths:
        folder = flows_dir or Path(os.environ.get("FLOWPBX_FLOWS_DIR") or "flows")
        paths = (folder / "tests",)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise click.UsageError(f"no such file or folder: {', '.join(missing)}")
    files = _scenario_files(paths)
    if not files:
        raise click.UsageError(
            f"no scenario files (*.yaml, *.yml) in: {', '.join(map(str, paths))}"
        )
    runs = asyncio.run(_run_all(files))
    coverages = _coverages(runs)
    if output_format == "json":
        _json(runs, coverages, min_coverage)
    else:
        _text(runs, coverages, min_coverage)
    raise SystemExit(EXIT_PROBLEMS if _failed(runs, coverages, min_coverage) else EXIT_OK)
