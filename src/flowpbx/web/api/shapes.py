"""Request and response bodies: declared once, for validation, encoding and the OpenAPI
document. Field names on the wire are camelCase, as in the original service."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from flowpbx.engine.events import Direction
from flowpbx.engine.progress import CallStatus
from flowpbx.twilio.tokens import IDENTITY_MAX

IDENTITY_PATTERN = f"^[A-Za-z0-9_]{{1,{IDENTITY_MAX}}}$"
PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"
FLOW_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
CURSOR_PATTERN = "^[A-Za-z0-9_-]*$"
PARTY_PATTERN = f"^(\\+[1-9][0-9]{{6,14}}|client:[A-Za-z0-9_]{{1,{IDENTITY_MAX}}})$"
MOMENT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
STATUS_PATTERN = f"^({'|'.join(CallStatus)})$"
DIRECTION_PATTERN = f"^({'|'.join(Direction)})$"
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
PATTERN_HELP = {
    IDENTITY_PATTERN: (
        f"expected a softphone identity: letters, digits and underscores only, at most "
        f"{IDENTITY_MAX} (Twilio client identities), like user_123"
    ),
    PHONE_PATTERN: "expected a phone number in E.164 form, like +34612345678",
    FLOW_PATTERN: "expected a flow name: lowercase letters, digits, - and _, like seguros",
    CURSOR_PATTERN: "expected the nextCursor of a previous page",
    PARTY_PATTERN: (
        "expected a phone number in E.164 form (+34612345678, written %2B34612345678 in a URL) "
        "or a softphone as client:<identity>"
    ),
    MOMENT_PATTERN: (
        "expected a date (2026-01-28) or a date and time in ISO 8601 "
        "(2026-01-28T10:00:00Z, or with an offset: 2026-01-28T11:00:00%2B01:00 in a URL)"
    ),
    STATUS_PATTERN: f"expected a call status: {', '.join(CallStatus)}",
    DIRECTION_PATTERN: f"expected a direction: {' or '.join(Direction)}",
    TIMEZONE_PATTERN: "expected an IANA time zone name, like Europe/Madrid or UTC",
}
"""What each pattern means, for error messages people read."""

Identity = Annotated[
    str,
    msgspec.Meta(
        pattern=IDENTITY_PATTERN,
        description="A softphone (Twilio Client) identity: letters, digits and underscores.",
        examples=["user_123"],
    ),
]
PhoneNumber = Annotated[
    str,
    msgspec.Meta(
        pattern=PHONE_PATTERN,
        description="A phone number in E.164 form.",
        examples=["+34612345678"],
    ),
]
FlowName = Annotated[
    str,
    msgspec.Meta(
        pattern=FLOW_PATTERN,
        description="The name of a loaded flow (the `name` in its file).",
        examples=["seguros"],
    ),
]


class Shape(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Every body: camelCase names on the wire, unknown fields refused."""


class ErrorBody(Shape):
    """Every error, from every endpoint (webhooks included)."""

    error: Annotated[str, msgspec.Meta(description="A stable code, e.g. `unauthorized`.")]
    detail: Annotated[str, msgspec.Meta(description="What went wrong, for people.")]


class TokenRequest(Shape):
    identity: Identity


class TokenResponse(Shape):
    token: Annotated[
        str,
        msgspec.Meta(
            description="A Twilio access token (JWT) with a Voice grant, valid for "
            "FLOWPBX_TOKEN_TTL seconds (1 hour by default)."
        ),
    ]
    identity: Identity


class CallRequest(Shape):
    to: PhoneNumber
    from_: PhoneNumber | None = msgspec.field(default=None, name="from")
    """The caller id; one of the service's numbers (TWILIO_PHONE_NUMBER by default)."""
    flow: FlowName | None = None
    """The flow to run when the call is answered."""
    identity: Identity | None = None
    """Without a flow: the softphone the answered call is connected to (the key's own
    identity by default)."""


class CallResponse(Shape):
    sid: Annotated[str, msgspec.Meta(description="Twilio's CallSid.", examples=["CA" + "0" * 32])]
    status: Annotated[str, msgspec.Meta(description="Twilio's status, `queued` at first.")]
    to: PhoneNumber
    from_: PhoneNumber = msgspec.field(name="from")
    flow: FlowName | None
    identity: Identity | None
    waited: Annotated[
        float, msgspec.Meta(description="Seconds the call waited for Twilio's calls-per-second.")
    ]


class ApiKeyOut(Shape):
    id: int
    name: str
    prefix: Annotated[str, msgspec.Meta(description="The key's public part: `fpbx_<prefix>`.")]
    identity: Identity | None
    admin: bool
    created_at: dt.datetime
    last_used_at: dt.datetime | None


class ApiKeyPage(Shape):
    keys: list[ApiKeyOut]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Pass as `cursor` for the next page; null on the last page."),
    ]


class PageQuery(Shape):
    """How every list is paged: at most `limit` items, from `cursor` on."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=200, description="Items per page.")] = 50
    cursor: Annotated[
        str,
        msgspec.Meta(
            max_length=200,
            pattern=CURSOR_PATTERN,
            description="`nextCursor` of the previous page.",
        ),
    ] = ""
