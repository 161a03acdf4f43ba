"""The bodies of call history, recordings and analytics: the seed's call shape (`from`, `to`,
`duration` and `price` as strings), the call's path and recordings, and the analytics report."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from flowpbx.engine.events import Direction
from flowpbx.engine.progress import CallStatus
from flowpbx.web.api.shapes import (
    DIRECTION_PATTERN,
    MOMENT_PATTERN,
    PARTY_PATTERN,
    STATUS_PATTERN,
    TIMEZONE_PATTERN,
    Identity,
    PageQuery,
    Shape,
)

CALL_SID_EXAMPLE = "CA" + "0123456789abcdef" * 2
RECORDING_SID_EXAMPLE = "RE" + "0123456789abcdef" * 2

Party = Annotated[
    str,
    msgspec.Meta(
        pattern=PARTY_PATTERN,
        description="A phone number in E.164 form, or a softphone as `client:<identity>`.",
        examples=["+34612345678", "client:user_123"],
    ),
]
Moment = Annotated[
    str,
    msgspec.Meta(
        pattern=MOMENT_PATTERN,
        description="A date (`2026-01-28`) or an ISO 8601 date and time "
        "(`2026-01-28T10:00:00Z`, `2026-01-28T11:00:00+01:00`).",
        examples=["2026-01-28", "2026-01-28T10:00:00Z"],
    ),
]
Status = Annotated[
    str,
    msgspec.Meta(
        pattern=STATUS_PATTERN,
        description="Twilio's call status.",
        extra_json_schema={"enum": list(CallStatus)},
    ),
]
DirectionName = Annotated[
    str,
    msgspec.Meta(
        pattern=DIRECTION_PATTERN,
        description="`inbound`, or `outbound` (placed by flowpbx).",
        extra_json_schema={"enum": list(Direction)},
    ),
]
Seconds = Annotated[str, msgspec.Meta(pattern="^[0-9]+$", examples=["120"])]
Price = Annotated[str, msgspec.Meta(pattern=r"^-?[0-9]+\.[0-9]+$", examples=["-0.02"])]


class HistoryQuery(PageQuery):
    user_id: Annotated[
        Identity | None,
        msgspec.Meta(
            description="Calls this softphone identity (or agent) took part in. A key with an "
            "identity sees its own calls only, and this defaults to it."
        ),
    ] = None
    number: Annotated[
        Party | None, msgspec.Meta(description="Calls from or to this number (or softphone).")
    ] = None
    status: Annotated[Status | None, msgspec.Meta(description="Calls with this status.")] = None
    direction: Annotated[
        DirectionName | None, msgspec.Meta(description="Calls in this direction.")
    ] = None
    from_: Annotated[
        Moment | None,
        msgspec.Meta(
            description="Calls started at or after this moment (a date: its midnight, UTC; a "
            "time without an offset: UTC)."
        ),
    ] = msgspec.field(default=None, name="from")
    to: Annotated[
        Moment | None,
        msgspec.Meta(
            description="Calls started before this moment; a date includes that whole day (UTC)."
        ),
    ] = None


class CallSummary(Shape):
    """A call as the seed's history lists it; times in UTC, to the second."""

    sid: Annotated[str, msgspec.Meta(description="Twilio's CallSid.", examples=[CALL_SID_EXAMPLE])]
    from_: Annotated[
        str,
        msgspec.Meta(description="Who called: E.164, or `client:<identity>` for a softphone."),
    ] = msgspec.field(name="from")
    to: str
    status: Annotated[str, msgspec.Meta(description="Twilio's call status.")]
    direction: Annotated[str, msgspec.Meta(description="`inbound` or `outbound`.")]
    duration: Annotated[
        Seconds | None,
        msgspec.Meta(description="Seconds, as Twilio counts them; null until the call ends."),
    ]
    start_time: dt.datetime
    end_time: Annotated[dt.datetime | None, msgspec.Meta(description="Null while in progress.")]
    price: Annotated[
        Price | None,
        msgspec.Meta(description="Twilio's price, negative for a cost; null until Twilio says."),
    ]
    price_unit: Annotated[str | None, msgspec.Meta(examples=["USD"])]


class CallHistoryPage(Shape):
    calls: list[CallSummary]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Pass as `cursor` for the next page; null on the last page."),
    ]


class PathStep(Shape):
    """One call event of the call's way through its flow (docs/call-events.md)."""

    at: dt.datetime
    event: Annotated[str, msgspec.Meta(examples=["option_chosen"])]
    node: str
    outcome: Annotated[
        str | None,
        msgspec.Meta(description="What happened there: the option's target, the dial's result…"),
    ]
    keys: Annotated[
        str | None, msgspec.Meta(description="Keys pressed (masked at a sensitive input).")
    ]


class RecordingOut(Shape):
    sid: Annotated[str, msgspec.Meta(examples=[RECORDING_SID_EXAMPLE])]
    url: Annotated[
        str | None,
        msgspec.Meta(description="The media (MP3) URL; null until Twilio gives it."),
    ]
    duration: int | None
    channels: int | None
    status: Annotated[str, msgspec.Meta(description="in-progress, completed, absent or failed.")]
    source: Annotated[str, msgspec.Meta(description="DialVerb, RecordVerb…")]


class CallDetail(CallSummary):
    answer_time: Annotated[
        dt.datetime | None, msgspec.Meta(description="When a person answered; null: nobody.")
    ]
    flow: str | None
    flow_version: str | None
    queue: str | None
    end_reason: Annotated[
        str | None,
        msgspec.Meta(
            description="How the flow ended the call: hangup, connected, agent, "
            "caller_hung_up, redirected, error; null: the caller hung up first."
        ),
    ]
    last_node: Annotated[str | None, msgspec.Meta(description="The last node the call entered.")]
    parties: Annotated[
        list[str], msgspec.Meta(description="Softphone identities and agents that took part.")
    ]
    path: list[PathStep]
    recordings: list[RecordingOut]


class RecordingMedia(Shape):
    url: Annotated[
        str,
        msgspec.Meta(
            description="Twilio's media URL (MP3). Fetching it needs the Twilio account's "
            "credentials, which are never part of it.",
            examples=["https://api.twilio.com/2010-04-01/Accounts/AC…/Recordings/RE….mp3"],
        ),
    ]


class AnalyticsQuery(Shape):
    from_: Annotated[
        Moment | None,
        msgspec.Meta(
            description="Start of the range, included: 30 days before `to` by default. A date "
            "is its midnight in `timezone`, a time without an offset is `timezone`'s."
        ),
    ] = msgspec.field(default=None, name="from")
    to: Annotated[
        Moment | None,
        msgspec.Meta(
            description="End of the range, excluded: now by default. A date includes that "
            "whole day (in `timezone`). At most 366 days after `from`."
        ),
    ] = None
    timezone: Annotated[
        str,
        msgspec.Meta(
            pattern=TIMEZONE_PATTERN,
            max_length=64,
            description="IANA time zone for days and hours of day, and for dates given.",
            examples=["Europe/Madrid"],
        ),
    ] = "UTC"


class DayCount(Shape):
    date: dt.date
    calls: int


class HourCount(Shape):
    hour: Annotated[int, msgspec.Meta(ge=0, le=23)]
    calls: int


class OptionCount(Shape):
    flow: str
    node: str
    key: str | None
    target: str | None
    times: int


class ExitCount(Shape):
    flow: str | None
    node: Annotated[str | None, msgspec.Meta(description="The last node entered.")]
    reason: Annotated[
        str, msgspec.Meta(description="The call's endReason, or `hung_up` when it has none.")
    ]
    calls: int


Rate = Annotated[float, msgspec.Meta(ge=0, le=1)]


class AnalyticsReport(Shape):
    from_: dt.datetime = msgspec.field(name="from")
    to: Annotated[dt.datetime, msgspec.Meta(description="Excluded.")]
    timezone: str
    calls: Annotated[int, msgspec.Meta(description="Calls started in the range.")]
    finished: Annotated[int, msgspec.Meta(description="Of those, calls with a final status.")]
    answered: Annotated[int, msgspec.Meta(description="Finished calls a person answered.")]
    abandoned: Annotated[
        int,
        msgspec.Meta(
            description="Finished inbound calls nobody answered, which the caller hung up "
            "on (endReason null or caller_hung_up)."
        ),
    ]
    answer_rate: Annotated[Rate | None, msgspec.Meta(description="answered / finished.")]
    abandonment_rate: Annotated[Rate | None, msgspec.Meta(description="abandoned / finished.")]
    average_duration: Annotated[
        float | None, msgspec.Meta(description="Seconds, over completed calls.")
    ]
    p90_duration: Annotated[
        int | None,
        msgspec.Meta(
            description="Seconds, over completed calls: the 90th percentile (nearest rank)."
        ),
    ]
    per_day: list[DayCount]
    per_hour: Annotated[list[HourCount], msgspec.Meta(min_length=24, max_length=24)]
    by_status: dict[str, int]
    by_direction: dict[str, int]
    menu_options: list[OptionCount]
    exits: Annotated[list[ExitCount], msgspec.Meta(max_length=20)]
    cost: Annotated[
        dict[str, Price],
        msgspec.Meta(
            description="Total price per price unit (negative: a cost).",
            examples=[{"USD": "-1.25"}],
        ),
    ]
