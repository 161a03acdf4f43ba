"""Calls from the browser softphone (From `client:<identity>`): the TwiML App sends them to
/api/calls/incoming with the number or `client:<identity>` the agent dialled in `To`. They are
connected straight to it, never into the IVR, under the same destination rules as the API."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flowpbx.dialing.rules import Destinations
from flowpbx.twilio.tokens import is_identity

_SEPARATORS = re.compile(r"[\s().-]")


@dataclass(frozen=True, slots=True)
class Connect:
    target: str
    """An E.164 number or `client:<identity>`."""
    caller_id: str | None
    """The company's number for calls to numbers; None (the agent's identity) otherwise."""


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: str
    """For the log; the agent hears a short apology."""


def is_softphone(caller: str) -> bool:
    """A call from the browser softphone (`client:...`): never one for the IVR."""
    return caller.startswith("client:")


def caller_identity(caller: str) -> str | None:
    """The softphone identity of a `client:<identity>` caller, else None."""
    if not is_softphone(caller):
        return None
    identity = caller.removeprefix("client:")
    return identity if is_identity(identity) else None


def route(to: str, *, destinations: Destinations, company_number: str) -> Connect | Refuse:
    """Where a softphone call goes: another softphone, or a number the rules allow."""
    dialled = to.strip()
    if dialled.startswith("client:"):
        identity = dialled.removeprefix("client:")
        if not is_identity(identity):
            return Refuse(f"{dialled[:40]!r} is not a softphone identity")
        return Connect(target=dialled, caller_id=None)
    number = _SEPARATORS.sub("", dialled)
    if number.startswith("00"):
        number = "+" + number[2:]
    if not number:
        return Refuse("no number was dialled (To is empty)")
    refusal = destinations.refusal(number)
    if refusal is not None:
        return Refuse(refusal)
    if not company_number:
        return Refuse("TWILIO_PHONE_NUMBER is not set: calls to numbers need a caller id")
    return Connect(target=number, caller_id=company_number)
