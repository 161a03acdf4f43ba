"""Request and response bodies: declared once, for validation, encoding and the OpenAPI
document. Field names on the wire are camelCase, as in the original service."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from flowpbx.twilio.tokens import IDENTITY_MAX

Identity = Annotated[
    str,
    msgspec.Meta(
        pattern=f"^[A-Za-z0-9_]{{1,{IDENTITY_MAX}}}$",
        max_length=IDENTITY_MAX,
        description="A softphone (Twilio Client) identity: letters, digits and underscores.",
        examples=["user_123"],
    ),
]
PhoneNumber = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^\+[1-9][0-9]{6,14}$",
        description="A phone number in E.164 form.",
        examples=["+34612345678"],
    ),
]
FlowName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z][a-z0-9_-]{0,63}$",
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
    token: Annotated[str, msgspec.Meta(description="A Twilio access token (JWT), Voice grant.")]
    identity: Identity
    expires_in: Annotated[int, msgspec.Meta(description="Seconds the token is valid.")]


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
            pattern="^[A-Za-z0-9_-]*$",
            description="`nextCursor` of the previous page.",
        ),
    ] = ""
