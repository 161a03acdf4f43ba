"""Flow files to typed flows: YAML with marks → JSON Schema → typed nodes → graph checks.

Every problem is collected and reported at once; no input, however broken, raises anything
but FlowError from `load_flow`.
"""

from __future__ import annotations

import contextlib
import gc
import pathlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from flowpbx.errors import FlowError, Problem, Severity
from flowpbx.language.build import BuildContext, Invalid, build_node, speech
from flowpbx.language.checks import Outline, run_checks
from flowpbx.language.flow import (
    Flow,
    Node,
    OnError,
    QueueSpec,
    RecordingChannels,
    RecordingPolicy,
    Speech,
)
from flowpbx.language.queue_specs import build_queues, conflict
from flowpbx.language.schema import schema_errors
from flowpbx.language.yamlsource import Document, Marks, Path, decode, parse

DEFAULT_VOICE = "Polly.Lucia"
DEFAULT_LANGUAGE = "es-ES"
FLOW_SUFFIXES = (".yaml", ".yml")

_APOLOGIES = {
    "es": "Lo sentimos, se ha producido un error. Disculpe las molestias.",
    "en": "We are sorry, an error has occurred. Please try again later.",
}


@dataclass(frozen=True)
class Report:
    """The outcome of checking one flow file: the flow when usable, and every problem."""

    file: str
    flow: Flow | None
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.WARNING)


def _issue_problems(file: str, document: Document) -> list[Problem]:
    return [
        Problem(
            file,
            i.mark.line,
            i.mark.column,
            Severity.ERROR,
            i.code,
            _issue_message(i.path, i.message),
        )
        for i in document.issues
    ]


def _issue_message(path: tuple[str | int, ...], message: str) -> str:
    if (
        len(path) == 2
        and path[0] == "nodes"
        and message.startswith(f"'{path[1]}' is written twice")
    ):
        return f"node {message.replace('is written twice', 'is defined twice', 1)}"
    if len(path) == 4 and path[0] == "nodes" and path[2] == "options":
        return f"node '{path[1]}': option {message}"
    if len(path) >= 2 and path[0] == "nodes":
        return f"node '{path[1]}': {message}"
    return message


_SPOKEN_KEYS = frozenset({"text", "prompt", "no_input", "invalid"})
_HASH_KEY = re.compile(r"^\s+#\s*:")


def _comment_traps(file: str, text: str, marks: Marks) -> list[Problem]:
    """'#' after a space starts a YAML comment: warn where that silently cuts spoken text."""
    lines = text.splitlines()
    problems = []
    for path, end in marks.plain_ends.items():
        if not path or path[-1] not in _SPOKEN_KEYS or end.line > len(lines):
            continue
        rest = lines[end.line - 1][end.column - 1 :]
        if rest.lstrip().startswith("#"):
            column = end.column + len(rest) - len(rest.lstrip())
            problems.append(
                Problem(
                    file,
                    end.line,
                    column,
                    Severity.WARNING,
                    "comment-in-text",
                    "the text stops before '#': what follows is a YAML comment and is not "
                    "spoken; put the whole text in quotes to keep it",
                )
            )
    for number, line in enumerate(lines, start=1):
        if _HASH_KEY.match(line):
            problems.append(
                Problem(
                    file,
                    number,
                    line.index("#") + 1,
                    Severity.WARNING,
                    "comment-in-text",
                    "a line starting with '#' is a YAML comment, so this option is ignored; "
                    'write the # key in quotes: "#": node',
                )
            )
    return problems


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _defaults(data: dict[str, Any]) -> tuple[str, str]:
    defaults = data.get("defaults")
    defaults = defaults if isinstance(defaults, dict) else {}
    return (
        _str(defaults.get("voice")) or DEFAULT_VOICE,
        _str(defaults.get("language")) or DEFAULT_LANGUAGE,
    )


def _on_error(data: dict[str, Any], ctx: BuildContext) -> tuple[Speech | None, str | None]:
    raw = data.get("on_error")
    raw = raw if isinstance(raw, dict) else {}
    text = _str(raw.get("text"))
    if text is None:
        fallback = _APOLOGIES.get(ctx.language.split("-")[0], _APOLOGIES["en"])
        apology = speech(fallback, ("on_error", "text"), {}, ctx)
    else:
        try:
            apology = speech(text, ("on_error", "text"), {}, ctx)
        except Invalid:  # speech() has recorded the problem
            apology = None
    return apology, _str(raw.get("next"))


def _goodbye(ctx: BuildContext) -> Speech:
    text = _APOLOGIES.get(ctx.language.split("-")[0], _APOLOGIES["en"])
    return speech(text, ("on_error",), {}, ctx)


def _config(data: dict[str, Any]) -> dict[str, str | None]:
    config = data.get("config")
    if not isinstance(config, dict):
        return {}
    return {k: v for k, v in config.items() if isinstance(v, str | None)}


_CHANNELS = {channels.value: channels for channels in RecordingChannels}


def _recording(data: dict[str, Any]) -> RecordingPolicy:
    """The flow's `recording` setting; values the schema refused fall back to the defaults."""
    raw = data.get("recording")
    raw = raw if isinstance(raw, dict) else {}
    dials = raw.get("dials")
    return RecordingPolicy(
        dials=dials if isinstance(dials, bool) else False,
        channels=_CHANNELS.get(_str(raw.get("channels")) or "", RecordingChannels.DUAL),
        notice=_str(raw.get("notice")),
    )


@contextlib.contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Checking builds many small objects that all live until the end: the cyclic collector
    would scan them again and again for nothing (a third of the time for large flows)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def check_text(text: str, file: str) -> Report:
    """Check a flow given as text; `file` names it in problems."""
    with _no_gc_pauses():
        return _check_text(text, file)


def _check_text(text: str, file: str) -> Report:
    document = parse(text)
    problems = _issue_problems(file, document)
    data = document.data
    if data is None:
        return Report(file, None, tuple(problems))
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"the single value {data!r}"
        problems.append(
            Problem(
                file,
                1,
                1,
                Severity.ERROR,
                "not-a-mapping",
                "a flow starts with 'name:', 'entry:' and 'nodes:' lines, "
                f"but this file holds {kind}",
            )
        )
        return Report(file, None, tuple(problems))
    # A mistake the YAML layer mended (to read on) leaves the data as meant: check it all.
    issue_paths = {issue.path for issue in document.issues if not issue.mended}
    problems.extend(_comment_traps(file, text, document.marks))
    return _check_document(file, data, document.marks, problems, issue_paths)


def _check_document(
    file: str,
    data: dict[str, Any],
    marks: Marks,
    problems: list[Problem],
    issue_paths: set[Path],
) -> Report:
    broken_nodes = {str(p[1]) for p in issue_paths if len(p) >= 2 and p[0] == "nodes"}
    broken_queues = {str(p[1]) for p in issue_paths if len(p) >= 2 and p[0] == "queues"}
    top_level_ok = True
    # A value the YAML layer could not read (an alias, a tag) is already reported there.
    unreadable = {issue_path for issue_path in issue_paths if issue_path}
    for path, line, column, message in schema_errors(data, marks):
        if path in unreadable:
            continue
        problems.append(Problem(file, line, column, Severity.ERROR, "schema", message))
        if len(path) >= 2 and path[0] == "nodes":
            broken_nodes.add(str(path[1]))
        else:
            top_level_ok = False
            if len(path) >= 2 and path[0] == "queues":
                broken_queues.add(str(path[1]))

    voice, language = _defaults(data)
    recording = _recording(data)
    ctx = BuildContext(file, marks, voice, language, recording)
    raw_nodes = data.get("nodes")
    raw_nodes = raw_nodes if isinstance(raw_nodes, dict) else {}
    nodes: dict[str, Node] = {}
    for node_id, raw in raw_nodes.items():
        if node_id in broken_nodes:
            continue
        node = build_node(node_id, raw, ctx)
        if node is not None:
            nodes[node_id] = node
    raw_queues = data.get("queues")
    queues = build_queues(raw_queues, ctx, frozenset(broken_queues))
    apology, fallback = _on_error(data, ctx)
    outline = Outline(
        file=file,
        marks=marks,
        node_ids=frozenset(raw_nodes),
        nodes=MappingProxyType(nodes),
        entry=_str(data.get("entry")),
        on_error_next=fallback,
        on_error_speech=apology,
        config=_config(data),
        recording=recording,
        language=language,
        is_complete=top_level_ok and len(nodes) == len(raw_nodes) and not ctx.problems,
        broken=MappingProxyType({k: v for k, v in raw_nodes.items() if k not in nodes}),
        queue_names=frozenset(raw_queues if isinstance(raw_queues, dict) else ()),
        queues=MappingProxyType(queues),
    )
    problems.extend(ctx.problems)
    problems.extend(run_checks(outline))
    problems.sort(key=lambda p: (p.line, p.column, p.severity != Severity.ERROR, p.message))
    if any(p.is_error for p in problems) or apology is None:
        return Report(file, None, tuple(problems))
    flow = Flow(
        name=data["name"],
        description=data.get("description", ""),
        source=file,
        entry=data["entry"],
        voice=voice,
        language=language,
        config=MappingProxyType(dict(outline.config)),
        on_error=OnError(apology, fallback, _goodbye(ctx)),
        nodes=outline.nodes,
        recording=recording,
        queues=outline.queues,
    )
    return Report(file, flow, tuple(problems))


def check_file(path: str | pathlib.Path) -> Report:
    """Check one flow file on disk."""
    file = str(path)
    try:
        raw = pathlib.Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return Report(
            file,
            None,
            (Problem(file, 1, 1, Severity.ERROR, "unreadable", f"cannot read the file: {reason}"),),
        )
    return check_bytes(raw, file)


def check_bytes(raw: bytes, file: str) -> Report:
    """Check a flow file's content; `file` names it in problems."""
    text, issues = decode(raw)
    if text is None:
        problems = tuple(
            Problem(file, i.mark.line, i.mark.column, Severity.ERROR, i.code, i.message)
            for i in issues
        )
        return Report(file, None, problems)
    return check_text(text, file)


def load_flow(path: str | pathlib.Path) -> Flow:
    """The flow in `path`, or FlowError with every problem found."""
    report = check_file(path)
    if report.flow is None:
        raise FlowError(report.problems)
    return report.flow


SCENARIO_FOLDER = "tests"
"""Scenario tests live beside the flows in a folder of this name (`flows/tests/`); they are
not flows."""


def flow_files(paths: Iterable[str | pathlib.Path]) -> list[pathlib.Path]:
    """Flow files named directly, or found (recursively, sorted) under named folders, leaving
    out the scenario tests in their `tests` folders."""
    found: list[pathlib.Path] = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in FLOW_SUFFIXES
                    and p.is_file()
                    and SCENARIO_FOLDER not in p.relative_to(path).parts[:-1]
                )
            )
        else:
            found.append(path)
    return found


def check_files(paths: Iterable[pathlib.Path]) -> list[Report]:
    """Check flow files one by one, then together: two files may not name the same flow, nor
    declare one queue with different settings (the service would refuse to start), so the later
    one gets an error at its `name:` line, or where it declares the queue."""
    reports = _check_queues_agree([check_file(path) for path in paths])
    first: dict[str, Report] = {}
    for i, report in enumerate(reports):
        if report.flow is None:
            continue
        earlier = first.setdefault(report.flow.name, report)
        if earlier is report:
            continue
        line = _name_line(report.file)
        problem = Problem(
            report.file,
            line,
            1,
            Severity.ERROR,
            "duplicate-flow-name",
            f"flow name '{report.flow.name}' is already used by {earlier.file}; "
            "each flow needs its own name",
        )
        reports[i] = Report(report.file, None, (*report.problems, problem))
    return reports


def _check_queues_agree(reports: list[Report]) -> list[Report]:
    """The reports, with an error in each flow that declares a queue differently from an
    earlier flow."""
    declared: dict[str, tuple[str, QueueSpec]] = {}
    checked: list[Report] = []
    for report in reports:
        if report.flow is None:
            checked.append(report)
            continue
        problems: list[Problem] = []
        for name, spec in report.flow.queues.items():
            there_file, there = declared.setdefault(name, (report.file, spec))
            message = conflict(there_file, there, spec)
            if message is not None:
                line, column = spec.mark.line, spec.mark.column
                problems.append(
                    Problem(report.file, line, column, Severity.ERROR, "queue-conflict", message)
                )
        checked.append(
            Report(report.file, None, (*report.problems, *problems)) if problems else report
        )
    return checked


def _name_line(file: str) -> int:
    """The line of a flow file's top-level `name:` (1 if it cannot be found)."""
    try:
        lines = pathlib.Path(file).read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    return next((n for n, line in enumerate(lines, 1) if re.match(r"name\s*:", line)), 1)
