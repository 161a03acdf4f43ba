"""Scenario test files (`flows/tests/*.yaml`): calls written by flow authors, read with the line
and column of every step, checked against their schema and then against the flow they call."""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from flowpbx.authoring.scenario_schema import schema_messages
from flowpbx.errors import Mark, Problem, Severity
from flowpbx.language.flow import Flow
from flowpbx.language.loader import FLOW_SUFFIXES
from flowpbx.language.yamlsource import Document, Marks, decode, parse
from flowpbx.language.yamlsource import Path as ValuePath

DEFAULT_CALLER = "+34600000000"
DEFAULT_CALLED = "+34910000000"
SILENCE = ("", "-", "silence")
"""What `press` takes for a caller who presses nothing."""


class Verb(StrEnum):
    """What a step does: an action moves the call on, a check looks at what happened."""

    PRESS = "press"
    DIAL = "dial"
    QUEUE = "queue"
    RECORD = "record"
    HEAR = "hear"
    REACH = "reach"
    DIALLED = "dialled"
    JOINS = "joins"
    RECORDS = "records"
    ENDS = "ends"

    @property
    def is_action(self) -> bool:
        return self in (Verb.PRESS, Verb.DIAL, Verb.QUEUE, Verb.RECORD)


@dataclass(frozen=True, slots=True)
class Where:
    """A place in a scenario file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class ScenarioStep:
    verb: Verb
    value: str | bool
    """Text as written (keys, words, a number...); true/false for `records`."""
    where: Where

    def __str__(self) -> str:
        shown = str(self.value).lower() if isinstance(self.value, bool) else self.value
        return f"{self.verb}: {shown}"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    caller: str
    at: dt.datetime | None
    """The call's wall-clock time in the flow's time zone (None: not given)."""
    at_where: Where
    steps: tuple[ScenarioStep, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class ScenarioFile:
    path: Path
    flow: str
    flow_where: Where
    scenarios: tuple[Scenario, ...]


def _problem(where: Where, message: str, code: str = "scenario") -> Problem:
    return Problem(where.file, where.line, where.column, Severity.ERROR, code, message)


class _Reader:
    """Turns a scenario document's plain data into the model, keeping where things are."""

    def __init__(self, path: Path, text: str, document: Document) -> None:
        self.file = str(path)
        self.lines = text.splitlines()
        self.marks: Marks = document.marks
        self.problems: list[Problem] = []

    def at_key(self, path: ValuePath) -> Where:
        mark = self.marks.key(path)
        return Where(self.file, mark.line, mark.column)

    def at_value(self, path: ValuePath) -> Where:
        mark = self.marks.value(path)
        return Where(self.file, mark.line, mark.column)

    def text(self, value: Any, path: ValuePath) -> str:
        """A value as written: an unquoted number keeps its '+' and leading zeros."""
        if not isinstance(value, int) or isinstance(value, bool):
            return str(value)
        mark: Mark = self.marks.value(path)
        line = self.lines[mark.line - 1] if mark.line <= len(self.lines) else ""
        written = line[mark.column - 1 :].split(" #")[0].strip()
        return written if written.lstrip("+").isdigit() else str(value)

    def clock(self, value: Any, path: ValuePath) -> dt.datetime | None:
        if value is None:
            return None
        try:
            return dt.datetime.fromisoformat(str(value))
        except ValueError:
            message = f"{value} is not a day and time (a date that does not exist?)"
            self.problems.append(_problem(self.at_value(path), message))
            return None

    def step(self, raw: dict[str, Any], path: ValuePath) -> ScenarioStep:
        ((key, value),) = raw.items()
        verb = Verb(key)
        where = self.at_key((*path, key))
        if verb is Verb.RECORDS:
            return ScenarioStep(verb, bool(value), where)
        return ScenarioStep(verb, self.text(value, (*path, key)), where)

    def scenario(self, raw: dict[str, Any], path: ValuePath, data: dict[str, Any]) -> Scenario:
        caller = raw.get("caller", data.get("caller"))
        caller_path = (*path, "caller") if "caller" in raw else ("caller",)
        at_path = (*path, "at") if "at" in raw else ("at",)
        at = raw.get("at", data.get("at"))
        steps = tuple(self.step(step, (*path, "steps", i)) for i, step in enumerate(raw["steps"]))
        return Scenario(
            name=str(raw["name"]),
            caller=DEFAULT_CALLER if caller is None else self.text(caller, caller_path),
            at=self.clock(at, at_path),
            at_where=self.at_key(at_path) if at is not None else self.at_key((*path, "name")),
            steps=steps,
            where=self.at_key((*path, "name")),
        )


def read_scenarios(path: Path) -> tuple[ScenarioFile | None, list[Problem]]:
    """A scenario file, or None and every problem found in it (located, in line order)."""
    text, issues = decode(path.read_bytes())
    document = parse(text) if text is not None else None
    if text is None or document is None or document.data is None or document.issues:
        found = issues or (document.issues if document else [])
        problems = [
            Problem(str(path), i.mark.line, i.mark.column, Severity.ERROR, i.code, i.message)
            for i in found
        ]
        return None, problems
    reader = _Reader(path, text, document)
    for where, is_key, message in schema_messages(document.data):
        place = reader.at_key(where) if is_key else reader.at_value(where)
        reader.problems.append(_problem(place, message, "scenario-schema"))
    if reader.problems:
        return None, sorted(reader.problems, key=lambda p: (p.line, p.column))
    data: dict[str, Any] = document.data
    scenarios = tuple(
        reader.scenario(raw, ("scenarios", i), data) for i, raw in enumerate(data["scenarios"])
    )
    loaded = ScenarioFile(path, str(data["flow"]), reader.at_value(("flow",)), scenarios)
    return (None if reader.problems else loaded), reader.problems


def flow_path(scenarios: ScenarioFile) -> Path | Problem:
    """The flow file a scenario file names: `flow: seguros` is seguros.yaml in the flows folder
    (the folder above `tests/`, or the scenario file's own folder); a .yaml name is a path
    from the scenario file."""
    name = scenarios.flow
    here = scenarios.path.parent
    if Path(name).suffix in FLOW_SUFFIXES:
        candidate = here / name
        if candidate.is_file():
            return candidate
        return _problem(scenarios.flow_where, f"there is no flow file {candidate}")
    folder = here.parent if here.name == "tests" else here
    for suffix in FLOW_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in folder.iterdir() if p.suffix in FLOW_SUFFIXES)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    known = f"; the flows there are: {', '.join(names)}" if names else ""
    return _problem(scenarios.flow_where, f"no flow '{name}' in {folder}/{hint}{known}")


def _unknown(kind: str, name: str, flow: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"flow {flow} has no {kind} '{name}'; did you mean '{close[0]}'?"
    return f"flow {flow} has no {kind} '{name}'; its {kind}s are: {', '.join(known)}"


def check_against(scenarios: ScenarioFile, flow: Flow) -> list[Problem]:
    """What the scenarios name that the flow does not have, and scenarios without a clock."""
    problems: list[Problem] = []
    nodes, queues = list(flow.nodes), list(flow.queues)
    for scenario in scenarios.scenarios:
        if scenario.at is None:
            message = (
                f"scenario '{scenario.name}' has no clock: write 'at: 2026-12-02 10:00' at the "
                "top of the file or in the scenario"
            )
            problems.append(_problem(scenario.where, message))
        for step in scenario.steps:
            if step.verb is Verb.REACH and step.value not in flow.nodes:
                message = _unknown("node", str(step.value), flow.name, nodes)
                problems.append(_problem(step.where, message))
            if step.verb is Verb.JOINS and step.value not in flow.queues:
                message = _unknown("queue", str(step.value), flow.name, queues)
                problems.append(_problem(step.where, message))
    return problems
