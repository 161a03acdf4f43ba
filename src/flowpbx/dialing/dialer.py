"""Placing calls through Twilio: check the destination and the caller id, wait for a slot in
Twilio's pace, then create the call with flowpbx's webhooks."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from flowpbx.dialing.pacer import Pacer, wait_for
from flowpbx.dialing.rules import Destinations
from flowpbx.errors import FlowpbxError
from flowpbx.privacy import mask_number
from flowpbx.twilio.rest import PlacedCall, TwilioRest

log = logging.getLogger("flowpbx.dialing")


class DialRefused(FlowpbxError):
    """A call that is not placed: `code` says why (`destination`, `caller_id`, `busy`)."""

    def __init__(self, code: str, detail: str, *, retry_after: float = 0.0) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Placed:
    call: PlacedCall
    from_: str
    waited: float


@dataclass
class Dialer:
    rest: TwilioRest
    pacer: Pacer
    destinations: Destinations
    account: str
    caller_ids: tuple[str, ...]
    """The numbers calls may show (the first is the default)."""
    calls_per_second: float = 1.0
    max_wait: float = 60.0

    def caller_id(self, requested: str | None) -> str:
        if not self.caller_ids:
            raise DialRefused("caller_id", "no caller id is configured: set TWILIO_PHONE_NUMBER")
        if requested is None:
            return self.caller_ids[0]
        if requested not in self.caller_ids:
            raise DialRefused(
                "caller_id",
                f"{requested} is not one of this service's numbers "
                f"({', '.join(self.caller_ids)}): calls may only show those",
            )
        return requested

    def check(self, to: str, from_: str | None) -> str:
        """The caller id to use; raises DialRefused for a destination that may not be called."""
        refusal = self.destinations.refusal(to)
        if refusal is not None:
            raise DialRefused("destination", refusal)
        return self.caller_id(from_)

    async def place(
        self,
        *,
        to: str,
        from_: str | None,
        answer_url: str,
        status_url: str,
        still_wanted: Callable[[], Awaitable[bool]] | None = None,
    ) -> Placed:
        """Place the call once its slot in the pace comes; refused (nothing placed) when more
        calls are waiting than `max_wait` seconds of slots."""
        caller = self.check(to, from_)
        started = time.monotonic()
        slot = await self.pacer.reserve(self.account, 1 / self.calls_per_second, self.max_wait)
        if slot.refused:
            raise DialRefused(
                "busy",
                f"too many calls are waiting for Twilio's pace of {self.calls_per_second:g} "
                f"per second (more than {self.max_wait:g} s); try again later",
                retry_after=slot.retry_after,
            )
        await wait_for(slot)
        if still_wanted is not None and not await still_wanted():
            # The client gave up while the call waited its turn: placing it now would make a
            # call nobody is told about (and its retry a second one).
            raise DialRefused("abandoned", "the request was abandoned before its turn came")
        call = await self.rest.create_call(
            to=to, from_=caller, url=answer_url, status_callback=status_url
        )
        waited = time.monotonic() - started
        log.info(
            "placed call %s to %s (waited %.2f s for the pace)", call.sid, mask_number(to), waited
        )
        return Placed(call=call, from_=caller, waited=round(waited, 3))
