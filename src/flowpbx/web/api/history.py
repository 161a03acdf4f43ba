"""The REST endpoints that read call history: the seed's history list, one call with its path,
a recording's media URL, and analytics. Handlers parse, check who may see what, run a query of
`flowpbx.history` in a worker thread, and leave the answer's shape to `history_answers`."""

from __future__ import annotations

import datetime as dt
import difflib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from flowpbx.db.database import Database
from flowpbx.db.models import Call
from flowpbx.history import analytics, queries
from flowpbx.history.analytics import Period
from flowpbx.history.queries import CallFilter, Position
from flowpbx.web.api import history_answers as answers
from flowpbx.web.api.framework import (
    ApiError,
    Context,
    Operation,
    forbidden,
    pack_cursor,
    unpack_cursor,
    utc_now,
)
from flowpbx.web.api.history_shapes import (
    AnalyticsQuery,
    AnalyticsReport,
    CallDetail,
    CallHistoryPage,
    CallSummary,
    HistoryQuery,
    RecordingMedia,
)

DEFAULT_RANGE = dt.timedelta(days=30)
FIRST_YEAR, LAST_YEAR = 1970, 2200
"""Dates outside these years are refused (and no range arithmetic overflows)."""
MAX_RANGE = dt.timedelta(days=366)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)


@dataclass
class HistoryApi:
    db: Database
    clock: Callable[[], dt.datetime] = field(default=utc_now)

    # -- GET /api/calls/history --

    async def history(self, ctx: Context) -> CallHistoryPage:
        query: HistoryQuery = ctx.query
        identity = _whose_calls(ctx, query.user_id)
        since = _moment("from", query.from_, dt.UTC, end=False)
        before = _moment("to", query.to, dt.UTC, end=True)
        _check_order(since, before)
        wanted = CallFilter(
            identity=identity,
            number=query.number,
            status=query.status,
            direction=query.direction,
            since=since,
            before=before,
        )
        after = _position(query.cursor) if query.cursor else None
        calls = await self.db.run(queries.list_calls, self.db, wanted, after, query.limit + 1)
        page = calls[: query.limit]
        more = len(calls) > query.limit
        return CallHistoryPage(
            calls=[answers.summary(call, CallSummary) for call in page],
            next_cursor=_cursor(page[-1]) if more else None,
        )

    # -- GET /api/calls/{sid} --

    async def call(self, ctx: Context) -> CallDetail:
        sid = ctx.request.path_params["sid"]
        found = await self.db.run(queries.find_call, self.db, sid, _viewer(ctx))
        if found is None:  # or not this key's to see: the same answer, so as not to tell
            raise ApiError(404, "not_found", f"no call {sid} in the history")
        return answers.detail(found)

    # -- GET /api/recordings/{sid} --

    async def recording(self, ctx: Context) -> RecordingMedia:
        sid = ctx.request.path_params["sid"]
        found = await self.db.run(queries.find_recording, self.db, sid, _viewer(ctx))
        if found is None:
            raise ApiError(404, "not_found", f"no recording {sid} in the history")
        if found.status in ("absent", "failed"):
            raise ApiError(
                404,
                "not_found",
                f"recording {sid} was not made (Twilio reported it {found.status})",
            )
        url = answers.media_url(found.url)
        if url is None:
            raise ApiError(
                404, "not_found", f"recording {sid} has no media yet (Twilio has not sent it)"
            )
        return RecordingMedia(url=url)

    # -- GET /api/analytics --

    async def analytics(self, ctx: Context) -> AnalyticsReport:
        ctx.require_admin()
        query: AnalyticsQuery = ctx.query
        zone = _zone(query.timezone)
        since, before = report_range(query.from_, query.to, zone, self.clock(), DEFAULT_RANGE)
        period = Period(since=since, before=before, zone=zone)
        found = await self.db.run(analytics.analyse, self.db, period)
        return answers.report(found, period, query.timezone)

    def operations(self) -> list[Operation]:
        # The history route comes before `{sid}`: a CallSid never reads "history", but the
        # order keeps that true without relying on it.
        return [
            Operation(
                "GET",
                "/api/calls/history",
                "listCallHistory",
                "Calls, newest first, as the original service listed them",
                self.history,
                CallHistoryPage,
                query=HistoryQuery,
                tags=("history",),
                description=(
                    "An admin key sees every call (or `userId`'s). A key with an identity sees "
                    "the calls its identity took part in; another `userId` is 403. A key with "
                    "neither is 403. `from` is included and `to` excluded; a date-only `to` "
                    "includes that whole day (UTC). New calls do not shift the pages being read."
                ),
            ),
            Operation(
                "GET",
                "/api/calls/{sid:call_sid}",
                "getCall",
                "One call: its history fields, who took part, its path and recordings",
                self.call,
                CallDetail,
                errors=(404,),
                tags=("history",),
                description=(
                    "404 for an unknown CallSid, and for a call a key with an identity took "
                    "no part in (it is not told that the call exists). `path` is the call's "
                    "events in order (docs/call-events.md)."
                ),
            ),
            Operation(
                "GET",
                "/api/recordings/{sid:recording_sid}",
                "getRecording",
                "A recording's media URL (MP3)",
                self.recording,
                RecordingMedia,
                errors=(404,),
                tags=("history",),
                description=(
                    "Twilio's RecordingUrl with `.mp3`. Fetching it needs the Twilio "
                    "account's credentials; the URL never carries any. Seen by the same keys "
                    "as the call it belongs to; 404 otherwise, and while Twilio has not sent "
                    "the recording."
                ),
            ),
            Operation(
                "GET",
                "/api/analytics",
                "getAnalytics",
                "Call analytics over a period (admin keys only)",
                self.analytics,
                AnalyticsReport,
                query=AnalyticsQuery,
                tags=("history",),
                description=(
                    "Calls started from `from` (included) to `to` (excluded), the last 30 "
                    "days by default, at most 366 days. Days and hours are `timezone`'s; "
                    "dates and times without an offset are read in it too. Definitions: "
                    "docs/api.md, Analytics."
                ),
            ),
        ]


def _whose_calls(ctx: Context, user_id: str | None) -> str | None:
    """The identity whose calls the history lists (None: everyone's, for an admin key)."""
    if ctx.key.admin:
        return user_id
    if ctx.key.identity is None:
        raise _no_identity()
    if user_id is not None:
        ctx.act_for(user_id)
    return ctx.key.identity


def _viewer(ctx: Context) -> str | None:
    """Whose calls the key may see: None for an admin key (all), else its identity."""
    if ctx.key.admin:
        return None
    if ctx.key.identity is None:
        raise _no_identity()
    return ctx.key.identity


def _no_identity() -> ApiError:
    return forbidden("this key has no identity: call history needs an admin key or a key with one")


def _moment(name: str, text: str | None, zone: dt.tzinfo, *, end: bool) -> dt.datetime | None:
    """A query's date or date and time, in UTC. A date is its midnight in `zone`; as the `end`
    of a range, the next midnight, so that the whole day is in. A time without an offset is
    `zone`'s."""
    if text is None:
        return None
    try:
        if len(text) == len("2026-01-28"):
            day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
            moment = dt.datetime.combine(day, dt.time(), tzinfo=zone)
        else:
            moment = dt.datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        moment = moment.astimezone(dt.UTC)
        if not FIRST_YEAR <= moment.year <= LAST_YEAR:
            raise ValueError(moment.year)
        return moment
    except (ValueError, OverflowError):
        raise ApiError(
            422,
            "invalid",
            f"{name}: {text!r} is not a date or time of the calendar between {FIRST_YEAR} "
            f"and {LAST_YEAR}",
        ) from None


def report_range(
    start: str | None, end: str | None, zone: dt.tzinfo, now: dt.datetime, default: dt.timedelta
) -> tuple[dt.datetime, dt.datetime]:
    """A report's `from` and `to` (query texts, in `zone`) as UTC instants: `to` defaults to
    `now`, `from` to `default` before it; the range must not be empty nor over MAX_RANGE."""
    before = _moment("to", end, zone, end=True) or now
    since = _moment("from", start, zone, end=False) or before - default
    _check_order(since, before)
    if before - since > MAX_RANGE:
        days = (before - since) / dt.timedelta(days=1)
        raise ApiError(
            422,
            "invalid",
            f"to: the range from {_iso(since)} to {_iso(before)} is {days:.1f} days; "
            f"at most {MAX_RANGE.days} (give a nearer `from` or `to`)",
        )
    return since, before


def _check_order(since: dt.datetime | None, before: dt.datetime | None) -> None:
    if since is not None and before is not None and since >= before:
        raise ApiError(
            422,
            "invalid",
            f"from: {_iso(since)} is not before to ({_iso(before)}): the range is empty",
        )


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _zone(name: str) -> dt.tzinfo:
    if name == "UTC":
        return dt.UTC
    if name in _timezones():
        return zoneinfo.ZoneInfo(name)
    close = difflib.get_close_matches(name, sorted(_timezones()), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ApiError(
        422,
        "invalid",
        f"timezone: unknown time zone {name!r}{hint}; expected an IANA name like Europe/Madrid",
    )


def _cursor(call: Call) -> str:
    micros = (call.started_at - EPOCH) // MICROSECOND
    return pack_cursor(f"c{micros}.{call.sid}")


def _position(cursor: str) -> Position:
    match = unpack_cursor(cursor, r"c(-?[0-9]{1,18})\.([A-Za-z0-9]{1,64})")
    try:
        started_at = EPOCH + int(match.group(1)) * MICROSECOND
    except OverflowError:
        raise ApiError(
            422, "invalid", "cursor: not a cursor this API gave (use nextCursor)"
        ) from None
    return Position(started_at=started_at, sid=match.group(2))


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
