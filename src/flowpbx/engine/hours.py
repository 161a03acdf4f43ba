"""Business hours: whether an hours node is open, closed or on a holiday at an instant."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from enum import StrEnum

from flowpbx.language.flow import HoursNode


class HoursStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    HOLIDAY = "holiday"


def business_hours(node: HoursNode, now: dt.datetime) -> HoursStatus:
    """Open, closed or holiday for an aware instant, in the node's time zone."""
    return hours_at(node, now)[0]


def hours_at(node: HoursNode, now: dt.datetime) -> tuple[HoursStatus, str]:
    """Open, closed or holiday for an aware instant, and the name of the day's holiday ('' on
    an ordinary day), in the node's time zone."""
    local = now.astimezone(zoneinfo.ZoneInfo(node.timezone))
    minute = local.hour * 60 + local.minute
    today = [h for h in node.holidays if h.falls_on(local.date())]
    if today:
        # One year's entry for a date is more specific than an every-year (or Easter) one.
        holiday = max(today, key=lambda h: h.year is not None)
        is_open = any(r.contains(minute) for r in holiday.hours)
        return (HoursStatus.OPEN if is_open else HoursStatus.HOLIDAY), holiday.name
    is_open = any(r.contains(minute) for r in node.weekly[local.weekday()])
    return (HoursStatus.OPEN if is_open else HoursStatus.CLOSED), ""


def hours_target(node: HoursNode, status: HoursStatus) -> str:
    """The node an hours node goes on to for a status."""
    match status:
        case HoursStatus.OPEN:
            return node.open
        case HoursStatus.CLOSED:
            return node.closed
        case HoursStatus.HOLIDAY:
            return node.holiday
