"""Business-hours nodes: weekly opening ranges, holidays and shortened days, checked as they
are built (backwards or overlapping ranges, days given twice, impossible dates)."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

from flowpbx.language.building import BuildContext, Invalid
from flowpbx.language.flow import Holiday, HoursNode, Node, TimeRange
from flowpbx.language.yamlsource import Path

EASTER = re.compile(r"easter([+-][0-9]{1,3})?")
"""A holiday that moves with Easter: `easter-2` is Good Friday (Viernes Santo)."""

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


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
    hours_path = (*path, "hours")
    hours = time_ranges(entry["hours"], hours_path, ctx) if "hours" in entry else ()
    name = entry.get("name", "")
    moved = EASTER.fullmatch(entry["date"])
    if moved:
        offset = int(moved.group(1) or 0)
        return Holiday(month=0, day=0, year=None, name=name, hours=hours, easter=offset)
    parts = [int(p) for p in entry["date"].split("-")]
    year = parts[0] if len(parts) == 3 else None
    month, day = parts[-2:]
    try:
        dt.date(year or 2000, month, day)  # 2000 is a leap year: 02-29 is fine every year
    except ValueError as exc:
        where = (*path, "date") if isinstance(value, dict) else path
        ctx.error(where, f"node '{path[1]}': {entry['date']!r} is not a real date", "hours-date")
        raise Invalid from exc
    return Holiday(month=month, day=day, year=year, name=name, hours=hours)


def build_hours(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    weekly = _weekly(node_id, raw, ctx)
    holidays = tuple(
        _holiday(value, (*path, "holidays", i), ctx)
        for i, value in enumerate(raw.get("holidays", []))
    )
    seen: dict[tuple[int | None, int, int] | int, int] = {}
    for i, holiday in enumerate(holidays):
        day = (
            holiday.easter
            if holiday.easter is not None
            else (holiday.year, holiday.month, holiday.day)
        )
        if day in seen:
            written = f"{holiday.month:02d}-{holiday.day:02d}"
            written = f"{holiday.year}-{written}" if holiday.year else written
            if holiday.easter is not None:
                written = f"easter{holiday.easter:+d}" if holiday.easter else "easter"
            ctx.error(
                (*path, "holidays", i),
                f"node '{node_id}': holiday {written} is listed twice "
                f"(also entry {seen[day] + 1}); keep only one",
                "hours-date",
            )
            raise Invalid
        seen[day] = i
    return HoursNode(
        id=node_id,
        mark=ctx.mark(path),
        description=raw.get("description", ""),
        timezone=raw["timezone"],
        weekly=weekly,
        holidays=holidays,
        open=raw["open"],
        closed=raw["closed"],
        holiday=raw.get("holiday", raw["closed"]),
    )
