"""Webhooks of calls that do not start in the IVR: calls flowpbx placed (answered, they run a
flow or are connected to a softphone), and calls from the browser softphone."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request

from flowpbx.dialing.rules import Destinations
from flowpbx.dialing.softphone import Connect, caller_identity, is_softphone, route
from flowpbx.engine.actions import Hangup, Say
from flowpbx.engine.progress import CallPlaced, Report
from flowpbx.engine.service import Answer, CallService, Renderer
from flowpbx.engine.storage import StoreUnavailable
from flowpbx.privacy import mask_number, mask_numbers
from flowpbx.twilio import params, twiml
from flowpbx.twilio.twiml import Urls, render

log = logging.getLogger("flowpbx.calls")

REFUSED = {
    "es": "Lo sentimos, no es posible llamar a ese número.",
    "en": "Sorry, that number cannot be called.",
}


@dataclass(frozen=True, slots=True)
class DirectCalls:
    service: CallService
    destinations: Destinations
    company_number: str

    def refusal(self) -> str:
        """A short apology in the default flow's voice, then hang up."""
        speech = self.service.catalog.default_flow.flow.on_error.goodbye
        text = REFUSED.get(speech.language.split("-")[0].lower(), REFUSED["en"])
        return render((Say(text, speech.voice, speech.language), Hangup()), Urls(""), 0)

    async def incoming(
        self, request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        """The Voice URL: a softphone calling out is connected; anyone else enters the IVR."""
        call = params.new_call(fields)
        if not is_softphone(call.caller):
            return await self.service.start(call, renderer=renderer)
        identity = caller_identity(call.caller)
        if identity is None:
            log.warning("call %s: a softphone with a malformed identity; refused", call.call_sid)
            return Answer(reply=self.refusal())
        routed = route(
            call.called, destinations=self.destinations, company_number=self.company_number
        )
        if not isinstance(routed, Connect):
            log.warning(
                "call %s: softphone %s refused: %s",
                call.call_sid,
                identity,
                mask_numbers(routed.reason),
            )
            return Answer(reply=self.refusal())
        log.info(
            "call %s: softphone %s calls %s", call.call_sid, identity, mask_number(routed.target)
        )
        await self._placed(call.call_sid, call.caller, routed.target, identity)
        return Answer(reply=twiml.connect(routed.target, caller_id=routed.caller_id))

    async def _placed(self, sid: str, caller: str, called: str, identity: str) -> None:
        """Tell call history about a softphone's call (it runs no flow, so no step does);
        the caller is never kept waiting for it."""
        placed = CallPlaced(caller=caller, called=called, identity=identity)
        report = Report.of(sid, placed, time.time())
        try:
            await self.service.store.report(report)
        except StoreUnavailable as exc:
            log.warning("call %s: not in call history (%s)", sid, exc)

    async def outbound(
        self, request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        """A call placed for a flow was answered: the flow runs for it."""
        flow = params.outbound_flow(request.query_params)
        # A flow removed since the call was placed: the service uses the number's flow.
        return await self.service.start(params.new_call(fields, flow), renderer=renderer)

    async def connect(
        self, request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        """A call placed for a softphone was answered: connect it to that softphone."""
        identity = params.connect_identity(request.query_params)
        params.call_sid(fields)
        return Answer(reply=twiml.connect(f"client:{identity}", caller_id=None))
