"""Schema-valid node data to typed nodes: one builder per node kind.

Builders also check what a schema cannot express (a text's braces, day ranges,
real calendar dates) and report it as located problems rather than raising.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from flowpbx.errors import Mark, Problem, Severity
from flowpbx.language.flow import (
    Case,
    CaseTest,
    DialNode,
    EnqueueNode,
    GotoNode,
    HangupNode,
    Holiday,
    HoursNode,
    InputNode,
    MenuNode,
    Node,
    PauseNode,
    RecordNode,
    SayNode,
    SetNode,
    Speech,
    SwitchNode,
    TimeRange,
)
from flowpbx.language.templates import Template, TemplateError, parse_template
from flowpbx.language.yamlsource import Marks, Path

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Invalid(Exception):
    """Raised inside a builder after its problems are recorded: the node is not built."""


@dataclass
class BuildContext:
    """What builders share: where values were written, flow defaults and found problems."""

    file: str
    marks: Marks
    voice: str
    language: str
    problems: list[Problem] = field(default_factory=list)

    def error(self, path: Path, message: str, code: str, *, key: bool = False) -> None:
        mark = self.marks.key(path) if key else self.marks.value(path)
        self.problems.append(
            Problem(self.file, mark.line, mark.column, Severity.ERROR, code, message)
        )

    def mark(self, path: Path) -> Mark:
        return self.marks.value(path)


Builder = Callable[[str, dict[str, Any], BuildContext], Node]


def template(value: str, path: Path, ctx: BuildContext) -> Template:
    try:
        return parse_template(value)
    except TemplateError as exc:
        ctx.error(
            path,
            f"node '{path[1]}': {exc.message}" if path[0] == "nodes" else exc.message,
            "bad-text",
        )
        raise Invalid from exc


def speech(value: Any, path: Path, raw: dict[str, Any], ctx: BuildContext) -> Speech:
    """A message (text, or {play: url}) in the node's voice and language."""
    voice = raw.get("voice", ctx.voice)
    language = raw.get("language", ctx.language)
    if isinstance(value, dict):
        return Speech(None, value["play"], voice, language)
    return Speech(template(value, path, ctx), None, voice, language)


def optional_speech(raw: dict[str, Any], key: str, path: Path, ctx: BuildContext) -> Speech | None:
    return speech(raw[key], (*path, key), raw, ctx) if key in raw else None


def _say(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    value = raw["text"] if "text" in raw else {"play": raw["play"]}
    key = "text" if "text" in raw else "play"
    return SayNode(
        node_id,
        ctx.mark(path),
        raw.get("description", ""),
        speech(value, (*path, key), raw, ctx),
        raw.get("loop", 1),
        raw["next"],
    )


def _pause(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    mark = ctx.mark(("nodes", node_id))
    return PauseNode(node_id, mark, raw.get("description", ""), raw["seconds"], raw["next"])


def _menu(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    return MenuNode(
        node_id,
        ctx.mark(path),
        raw.get("description", ""),
        speech(raw["prompt"], (*path, "prompt"), raw, ctx),
        MappingProxyType(dict(raw["options"])),
        raw.get("timeout", 5),
        raw.get("retries", 2),
        optional_speech(raw, "no_input", path, ctx),
        optional_speech(raw, "invalid", path, ctx),
        raw.get("exhausted", ""),
    )


def _input(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    min_digits = raw.get("min_digits", 1)
    max_digits = raw.get("max_digits")
    if max_digits is not None and min_digits > max_digits:
        ctx.error(
            (*path, "min_digits"),
            f"node '{node_id}': min_digits ({min_digits}) is more than max_digits ({max_digits})",
            "digits-range",
        )
        raise Invalid
    return InputNode(
        node_id,
        ctx.mark(path),
        raw.get("description", ""),
        speech(raw["prompt"], (*path, "prompt"), raw, ctx),
        raw["variable"],
        min_digits,
        max_digits,
        raw.get("finish_on_key", "#"),
        raw.get("timeout", 5),
        raw.get("retries", 2),
        optional_speech(raw, "no_input", path, ctx),
        optional_speech(raw, "invalid", path, ctx),
        raw["next"],
        raw.get("exhausted", ""),
    )


def _dial(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    targets = raw["to"] if isinstance(raw["to"], list) else [raw["to"]]
    return DialNode(
        node_id,
        ctx.mark(("nodes", node_id)),
        raw.get("description", ""),
        tuple(targets),
        raw.get("caller_id"),
        raw.get("timeout", 30),
        raw.get("record", False),
        raw.get("answered"),
        raw["no_answer"],
        raw.get("busy", raw["no_answer"]),
        raw.get("failed", raw["no_answer"]),
    )


def _enqueue(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    return EnqueueNode(
        node_id,
        ctx.mark(("nodes", node_id)),
        raw.get("description", ""),
        raw["queue"],
        raw.get("hold_music"),
        raw.get("max_wait"),
        raw.get("max_size", 100),
        raw.get("leave_key"),
        raw.get("timed_out"),
        raw["full"],
        raw.get("left"),
        raw.get("voice", ctx.voice),
        raw.get("language", ctx.language),
    )


def _record(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    return RecordNode(
        node_id,
        ctx.mark(path),
        raw.get("description", ""),
        optional_speech(raw, "prompt", path, ctx),
        raw.get("max_length", 120),
        raw.get("timeout", 5),
        raw.get("beep", True),
        raw.get("finish_on_key", "#"),
        raw.get("transcribe", False),
        raw["next"],
    )


def _hangup(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    goodbye = optional_speech(raw, "text", path, ctx)
    return HangupNode(node_id, ctx.mark(path), raw.get("description", ""), goodbye)


def _goto(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    return GotoNode(
        node_id,
        ctx.mark(("nodes", node_id)),
        raw.get("description", ""),
        raw["target"],
        raw.get("limit"),
        raw.get("exhausted"),
    )


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _set(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    values = {
        name: template(_scalar_text(value), (*path, "values", name), ctx)
        for name, value in raw["values"].items()
    }
    return SetNode(
        node_id, ctx.mark(path), raw.get("description", ""), MappingProxyType(values), raw["next"]
    )


def _case(raw: dict[str, Any]) -> Case:
    if "starts_with" in raw:
        return Case(CaseTest.STARTS_WITH, (_scalar_text(raw["starts_with"]),), raw["next"])
    values = raw["one_of"] if "one_of" in raw else [raw["equals"]]
    return Case(CaseTest.EQUALS, tuple(_scalar_text(v) for v in values), raw["next"])


def _switch(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    return SwitchNode(
        node_id,
        ctx.mark(("nodes", node_id)),
        raw.get("description", ""),
        raw["variable"],
        tuple(_case(case) for case in raw["cases"]),
        raw["default"],
    )


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def time_ranges(value: str | list[str], path: Path, ctx: BuildContext) -> tuple[TimeRange, ...]:
    """Parse 'HH:MM-HH:MM' ranges, rejecting empty, reversed and overlapping ones."""
    texts = value if isinstance(value, list) else [value]
    ranges: list[TimeRange] = []
    for i, text in enumerate(texts):
        where: Path = (*path, i) if isinstance(value, list) else path
        start, end = (_minutes(part) for part in text.split("-"))
        if end <= start:
            ctx.error(
                where,
                f"node '{path[1]}': hours {text!r} end before they start; "
                "split a night shift into two days, e.g. 22:00-24:00 and 00:00-06:00",
                "hours-range",
            )
            raise Invalid
        ranges.append(TimeRange(start, end))
    ranges.sort(key=lambda r: r.start)
    for before, after in itertools.pairwise(ranges):
        if after.start < before.end:
            ctx.error(path, f"node '{path[1]}': opening hours overlap in {texts}", "hours-range")
            raise Invalid
    return tuple(ranges)


def _days(key: str) -> list[int]:
    first, _, last = key.partition("-")
    start = DAYS.index(first)
    return list(range(start, DAYS.index(last or first) + 1))


def _weekly(
    node_id: str, raw: dict[str, Any], ctx: BuildContext
) -> tuple[tuple[TimeRange, ...], ...]:
    path: Path = ("nodes", node_id, "weekly")
    week: list[tuple[TimeRange, ...]] = [() for _ in DAYS]
    written_in: dict[int, str] = {}
    failed = False
    for key, value in raw["weekly"].items():
        days = _days(key)
        if not days:
            ctx.error(
                (*path, key),
                f"node '{node_id}': day range '{key}' goes backwards; write it from the "
                "earlier day to the later one, e.g. monday-friday",
                "hours-days",
                key=True,
            )
            failed = True
            continue
        for day in days:
            if day in written_in:
                ctx.error(
                    (*path, key),
                    f"node '{node_id}': {DAYS[day]} is given twice, in '{written_in[day]}' "
                    f"and in '{key}'",
                    "hours-days",
                    key=True,
                )
                failed = True
            written_in[day] = key
        try:
            ranges = time_ranges(value, (*path, key), ctx)
        except Invalid:
            failed = True
            continue
        for day in days:
            week[day] = ranges
    if failed:
        raise Invalid
    return tuple(week)


def _holiday(value: Any, path: Path, ctx: BuildContext) -> Holiday:
    entry = value if isinstance(value, dict) else {"date": value}
    parts = [int(p) for p in entry["date"].split("-")]
    year = parts[0] if len(parts) == 3 else None
    month, day = parts[-2:]
    try:
        dt.date(year or 2000, month, day)  # 2000 is a leap year: 02-29 is fine every year
    except ValueError as exc:
        where = (*path, "date") if isinstance(value, dict) else path
        ctx.error(where, f"node '{path[1]}': {entry['date']!r} is not a real date", "hours-date")
        raise Invalid from exc
    hours_path = (*path, "hours")
    hours = time_ranges(entry["hours"], hours_path, ctx) if "hours" in entry else ()
    return Holiday(month, day, year, entry.get("name", ""), hours)


def _hours(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    weekly = _weekly(node_id, raw, ctx)
    holidays = tuple(
        _holiday(value, (*path, "holidays", i), ctx)
        for i, value in enumerate(raw.get("holidays", []))
    )
    seen: dict[tuple[int | None, int, int], int] = {}
    for i, holiday in enumerate(holidays):
        day = (holiday.year, holiday.month, holiday.day)
        if day in seen:
            written = f"{holiday.month:02d}-{holiday.day:02d}"
            written = f"{holiday.year}-{written}" if holiday.year else written
            ctx.error(
                (*path, "holidays", i),
                f"node '{node_id}': holiday {written} is listed twice "
                f"(also entry {seen[day] + 1}); keep only one",
                "hours-date",
            )
            raise Invalid
        seen[day] = i
    return HoursNode(
        node_id,
        ctx.mark(path),
        raw.get("description", ""),
        raw["timezone"],
        weekly,
        holidays,
        raw["open"],
        raw["closed"],
        raw.get("holiday", raw["closed"]),
    )


BUILDERS: Mapping[str, Builder] = MappingProxyType(
    {
        "say": _say,
        "pause": _pause,
        "menu": _menu,
        "input": _input,
        "dial": _dial,
        "enqueue": _enqueue,
        "record": _record,
        "hangup": _hangup,
        "goto": _goto,
        "set": _set,
        "switch": _switch,
        "hours": _hours,
    }
)


def build_node(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node | None:
    """The typed node, or None after recording why it cannot be built."""
    try:
        return BUILDERS[raw["type"]](node_id, raw, ctx)
    except Invalid:
        return None
