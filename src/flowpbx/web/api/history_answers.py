"""History's rows as the API's answers: the seed's call shape (`duration` and `price` as
strings, times to the second), a call's path and recordings with their media URLs, and the
analytics report."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from flowpbx.db.models import Call, Recording
from flowpbx.history.analytics import Analytics, Period
from flowpbx.history.queries import CallRecord
from flowpbx.web.api.history_shapes import (
    AnalyticsReport,
    CallDetail,
    CallSummary,
    DayCount,
    ExitCount,
    HourCount,
    OptionCount,
    PathStep,
    RecordingOut,
)

S = TypeVar("S", bound=CallSummary)


def media_url(url: str) -> str | None:
    """Twilio's RecordingUrl as the media URL: `.mp3` unless it names a format already, and
    without any credentials (user:password@) or fragment. None: no usable URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None:
        host += f":{port}"
    path = parts.path
    if not re.search(r"\.[A-Za-z0-9]{2,4}$", path.rsplit("/", 1)[-1]):
        path += ".mp3"
    return urlunsplit((parts.scheme, host, path, parts.query, ""))


def decimal_text(micros: int) -> str:
    """Millionths as a decimal, with two decimals at least and no trailing zeros beyond them:
    -20000 is "-0.02", -8500 "-0.0085", 1000000 "1.00"."""
    whole, fraction = divmod(abs(micros), 1_000_000)
    digits = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    return f"{'-' if micros < 0 else ''}{whole}.{digits}"


def _second(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.replace(microsecond=0)


def summary(call: Call, shape: type[S], **more: Any) -> S:
    """The seed's fields of a call (and `more`, for a shape that has more)."""
    return shape(
        sid=call.sid,
        from_=call.from_number,
        to=call.to_number,
        status=call.status,
        direction=call.direction,
        duration=None if call.duration is None else str(max(0, call.duration)),
        start_time=call.started_at.replace(microsecond=0),
        end_time=_second(call.ended_at),
        price=None if call.price_micros is None else decimal_text(call.price_micros),
        price_unit=call.price_unit if call.price_micros is not None else None,
        **more,
    )


def _recording(recording: Recording) -> RecordingOut:
    return RecordingOut(
        sid=recording.sid,
        url=media_url(recording.url),
        duration=recording.duration,
        channels=recording.channels,
        status=recording.status,
        source=recording.source,
    )


def detail(found: CallRecord) -> CallDetail:
    call = found.call
    return summary(
        call,
        CallDetail,
        answer_time=_second(call.answered_at),
        flow=call.flow,
        flow_version=call.flow_version,
        queue=call.queue,
        end_reason=call.end_reason,
        last_node=call.last_node,
        parties=found.parties,
        path=[
            PathStep(
                # Steps follow each other within a second: milliseconds keep them apart.
                at=step.at.replace(microsecond=step.at.microsecond // 1000 * 1000),
                event=step.event,
                node=step.node,
                outcome=step.outcome,
                keys=step.keys,
            )
            for step in found.steps
        ],
        recordings=[_recording(r) for r in found.recordings],
    )


def report(found: Analytics, period: Period, zone_name: str) -> AnalyticsReport:
    def rate(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    average = found.average_duration
    return AnalyticsReport(
        from_=period.since,
        to=period.before,
        timezone=zone_name,
        calls=found.calls,
        finished=found.finished,
        answered=found.answered,
        abandoned=found.abandoned,
        answer_rate=rate(found.answer_rate),
        abandonment_rate=rate(found.abandonment_rate),
        average_duration=None if average is None else round(average, 1),
        p90_duration=found.p90_duration,
        per_day=[DayCount(date=day, calls=calls) for day, calls in found.per_day.items()],
        per_hour=[HourCount(hour=hour, calls=calls) for hour, calls in enumerate(found.per_hour)],
        by_status=found.by_status,
        by_direction=found.by_direction,
        menu_options=[
            OptionCount(flow=c.flow, node=c.node, key=c.key, target=c.target, times=c.times)
            for c in found.menu_choices
        ],
        exits=[
            ExitCount(flow=e.flow, node=e.node, reason=e.reason, calls=e.calls) for e in found.exits
        ],
        cost={unit: decimal_text(micros) for unit, micros in found.cost_micros.items()},
    )
