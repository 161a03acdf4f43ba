"""The bodies of queues and agents: the seed's queue status (with `nextCursor` and each place's
`kind`), every queue at a glance, a queue's statistics, and agents with their live status."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from flowpbx.queues.directory import AGENT_ID, QUEUE_ID, SKILL_MAX, SKILL_MIN
from flowpbx.queues.model import AgentStatus, WaiterKind
from flowpbx.web.api.history_shapes import CALL_SID_EXAMPLE, Moment
from flowpbx.web.api.shapes import CURSOR_PATTERN, PATTERN_HELP, Identity, PhoneNumber, Shape

QUEUE_PATTERN = f"^{QUEUE_ID.pattern}$"
AGENT_PATTERN = f"^{AGENT_ID.pattern}$"
# Error messages say what these patterns mean in words, as they do for the others.
PATTERN_HELP[QUEUE_PATTERN] = (
    "expected a queue id: lowercase letters, digits, _ and -, like general-queue"
)
PATTERN_HELP[AGENT_PATTERN] = (
    "expected an agent id: lowercase letters, digits, _, . and -, like ana"
)

QueueName = Annotated[
    str,
    msgspec.Meta(
        pattern=QUEUE_PATTERN,
        description="A queue's id, as the flows' `queues` sections name it.",
        examples=["general-queue"],
    ),
]
AgentId = Annotated[
    str,
    msgspec.Meta(
        pattern=AGENT_PATTERN,
        description="An agent's id: lowercase letters, digits, `_`, `.` and `-`.",
        examples=["ana"],
    ),
]
PATH_PARAMETERS: dict[str, object] = {"queueId": QueueName, "agentId": AgentId}
"""The plain `{name}` parts of the queue and agent paths, for the OpenAPI document."""

AgentName = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=100, description="Shown to people.", examples=["Ana García"]
    ),
]
Skill = Annotated[
    int,
    msgspec.Meta(
        ge=SKILL_MIN,
        le=SKILL_MAX,
        description="1 to 10: agents of a higher skill are offered the queue's calls first.",
    ),
]
Skills = Annotated[
    dict[QueueName, Skill],
    msgspec.Meta(
        description="The queues the agent serves, each with the agent's skill in it.",
        examples=[{"general-queue": 5, "ventas": 8}],
    ),
]
Seconds = Annotated[int, msgspec.Meta(ge=0, description="Seconds.")]
StatusName = Annotated[
    str,
    msgspec.Meta(
        pattern=f"^({'|'.join(AgentStatus)})$",
        description="available, busy, wrap-up or offline.",
        extra_json_schema={"enum": list(AgentStatus)},
    ),
]


# -- queues --


class QueueQuery(Shape):
    limit: Annotated[int, msgspec.Meta(ge=1, le=500, description="Places per page.")] = 50
    cursor: Annotated[
        str,
        msgspec.Meta(
            max_length=200,
            pattern=CURSOR_PATTERN,
            description="`nextCursor` of the previous page.",
        ),
    ] = ""


class QueuedCall(Shape):
    """A place in the queue, as the seed lists it (plus `kind`)."""

    call_sid: Annotated[
        str,
        msgspec.Meta(
            description="The CallSid of the call that joined the queue (for a callback, the "
            "call that asked for it).",
            examples=[CALL_SID_EXAMPLE],
        ),
    ]
    from_: Annotated[
        str,
        msgspec.Meta(
            description="The caller's number; for a callback, the number to call back.",
            examples=["+34612345678"],
        ),
    ] = msgspec.field(name="from")
    queued_at: Annotated[
        dt.datetime,
        msgspec.Meta(
            description="When the call joined the queue (UTC, to the second).",
            examples=["2026-01-28T10:00:00Z"],
        ),
    ]
    position: Annotated[
        int, msgspec.Meta(ge=1, description="1 is the next to be answered.", examples=[1])
    ]
    estimated_wait_time: Annotated[
        Seconds | None,
        msgspec.Meta(
            description="Seconds until an agent answers (docs/queues.md, Estimated wait); null "
            "when no agent serves the queue.",
            examples=[60],
        ),
    ]
    kind: Annotated[
        str,
        msgspec.Meta(
            description="`caller`: on the line; `callback`: hung up, to be called back in "
            "this place.",
            extra_json_schema={"enum": list(WaiterKind)},
            examples=["caller"],
        ),
    ]


class QueueStatus(Shape):
    """The seed's queue status, with its calls paged."""

    id: QueueName
    name: QueueName
    current_size: Annotated[
        int,
        msgspec.Meta(ge=0, description="Places waiting (callers and callbacks).", examples=[3]),
    ]
    max_size: Annotated[
        int, msgspec.Meta(ge=1, description="Places the queue holds at most.", examples=[100])
    ]
    average_wait_time: Annotated[
        Seconds | None,
        msgspec.Meta(
            description="How long answered callers waited, a recent average; null until one "
            "has been answered.",
            examples=[180],
        ),
    ]
    calls: list[QueuedCall]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Pass as `cursor` for the next page; null on the last page."),
    ]


class AgentCounts(Shape):
    """The queue's agents by their live status."""

    available: Annotated[int, msgspec.Meta(examples=[2])]
    busy: Annotated[int, msgspec.Meta(examples=[3])]
    wrap_up: Annotated[int, msgspec.Meta(examples=[1])]
    offline: Annotated[int, msgspec.Meta(examples=[4])]


class QueueSummary(Shape):
    id: QueueName
    name: QueueName
    current_size: int
    max_size: int
    average_wait_time: Annotated[
        Seconds | None,
        msgspec.Meta(description="As in the queue's status; null until learned."),
    ]
    longest_wait_time: Annotated[
        Seconds | None,
        msgspec.Meta(
            description="How long the place waiting longest has waited; null: none.",
            examples=[245],
        ),
    ]
    agents: AgentCounts


class QueueList(Shape):
    queues: list[QueueSummary]


class QueueStatsQuery(Shape):
    from_: Annotated[
        Moment | None,
        msgspec.Meta(
            description="Start of the range, included: 24 hours before `to` by default. A "
            "date is its midnight, UTC; a time without an offset is UTC."
        ),
    ] = msgspec.field(default=None, name="from")
    to: Annotated[
        Moment | None,
        msgspec.Meta(
            description="End of the range, excluded: now by default. A date includes that "
            "whole day (UTC). At most 366 days after `from`."
        ),
    ] = None


Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]


class QueueStatsReport(Shape):
    """What happened to the places that joined the queue in the range (docs/api.md, Queue
    statistics). Seconds, one decimal; percentages 0-100, one decimal."""

    queue: QueueName
    from_: dt.datetime = msgspec.field(name="from")
    to: Annotated[dt.datetime, msgspec.Meta(description="Excluded.")]
    service_level_threshold: Annotated[
        int,
        msgspec.Meta(
            description="The queue's `service_level`: answered within this many seconds "
            "counts as within the service level."
        ),
    ]
    offered: Annotated[
        int,
        msgspec.Meta(description="Callers who entered the queue (callbacks included)."),
    ]
    turned_away: Annotated[int, msgspec.Meta(description="Callers who found the queue full.")]
    answered: int
    abandoned: Annotated[
        int, msgspec.Meta(description="Hung up while waiting (or while an agent's phone rang).")
    ]
    timed_out: Annotated[int, msgspec.Meta(description="Waited the queue's `max_wait`.")]
    left: Annotated[int, msgspec.Meta(description="Pressed the key to leave.")]
    callbacks: Annotated[
        int, msgspec.Meta(description="Asked to be called back, whatever came of it.")
    ]
    waiting: Annotated[
        int, msgspec.Meta(description="Still waiting, on the line or for their callback.")
    ]
    missed: Annotated[
        int, msgspec.Meta(description="Offers to an agent whose phone rang out unanswered.")
    ]
    average_wait: Annotated[
        float | None,
        msgspec.Meta(description="Answered callers, joining to answer; null: none answered."),
    ]
    longest_wait: Annotated[
        float | None,
        msgspec.Meta(description="The longest an answered, abandoning or timed-out caller waited."),
    ]
    service_level_percent: Annotated[
        Percent | None,
        msgspec.Meta(
            description="Answered within the threshold, of the offered callers who did not "
            "hang up within it; null when there are none."
        ),
    ]
    abandon_rate_percent: Annotated[
        Percent | None,
        msgspec.Meta(description="Abandoned, of the offered; null when none was offered."),
    ]
    average_talk: Annotated[
        float | None, msgspec.Meta(description="Answered calls whose end is known.")
    ]
    calls_per_agent: Annotated[
        dict[str, int],
        msgspec.Meta(
            description="Callers each agent answered, by agent id.", examples=[{"ana": 12}]
        ),
    ]


# -- agents --


class AgentRequest(Shape):
    """A new agent: reached at a softphone (`identity`) or a phone (`number`), not both."""

    id: AgentId
    name: AgentName
    identity: Annotated[
        Identity | None,
        msgspec.Meta(
            description="The browser softphone's identity (calls ring `client:<identity>`); "
            "a key with this identity may set the agent's status."
        ),
    ] = None
    number: Annotated[
        PhoneNumber | None, msgspec.Meta(description="A phone to ring instead of a softphone.")
    ] = None
    queues: Skills = msgspec.field(default_factory=dict)


class AgentChange(Shape):
    """What to change; fields left out are kept. `identity` or `number` replaces how the agent
    is reached."""

    name: AgentName | None = None
    identity: Identity | None = None
    number: PhoneNumber | None = None
    queues: Annotated[
        Skills | None, msgspec.Meta(description="Replaces the agent's queues as a whole.")
    ] = None


class AgentStatusRequest(Shape):
    status: StatusName


class AgentOut(Shape):
    id: AgentId
    name: str
    identity: Identity | None
    number: PhoneNumber | None
    queues: Skills
    status: Annotated[
        StatusName,
        msgspec.Meta(description="Live: `offline` for an agent the queues have not seen."),
    ]
    since: Annotated[
        dt.datetime | None,
        msgspec.Meta(description="When the status was set; null: never seen."),
    ]
    wrap_up_until: Annotated[
        dt.datetime | None,
        msgspec.Meta(description="While in wrap-up: when it ends by itself."),
    ]
    on_call: Annotated[
        bool, msgspec.Meta(description="A queue's call is ringing for the agent or connected.")
    ]
    answered: Annotated[int, msgspec.Meta(description="Queue calls answered.")]
    missed: Annotated[
        int, msgspec.Meta(description="Queue calls offered and not answered, in a row.")
    ]


class AgentQuery(Shape):
    queue: Annotated[
        QueueName | None, msgspec.Meta(description="Only the agents serving this queue.")
    ] = None


class AgentList(Shape):
    agents: list[AgentOut]


class AgentDeleted(Shape):
    id: AgentId
    deleted: Annotated[bool, msgspec.Meta(description="Always true.")] = True
