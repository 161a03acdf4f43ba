"""The Twilio webhooks of queues: the caller's wait, keys and exit (which go through the
call's flow, with the queue engine's view of their place), and the legs the queue engine
makes (a caller connected to an agent, a callback). All signed, none ever answers a 5xx: a
caller whose leg fails is put back in the queue."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from starlette.requests import Request

from flowpbx.engine.actions import Enqueue, Say
from flowpbx.engine.call_events import CallbackRequested, QueueExit, QueueExited
from flowpbx.engine.events import DialResult, NewCall, QueueResult, QueueView, QueueWaitTick
from flowpbx.engine.progress import CallStatus
from flowpbx.engine.service import Answer, CallService, Renderer
from flowpbx.engine.storage import CorruptState, StoreUnavailable
from flowpbx.language.flow import EnqueueNode, Flow
from flowpbx.queues import spoken as words
from flowpbx.queues.engine import MAX_CALLBACK_ATTEMPTS, QueueEngine
from flowpbx.queues.model import Waiter, WaiterKind, callback_member
from flowpbx.twilio import params, twiml
from flowpbx.twilio.twiml import QueueUrls, TwimlRenderer

log = logging.getLogger("flowpbx.queues")
T = TypeVar("T")


@dataclass
class QueueHooks:
    """Handlers for `flowpbx.web.webhooks.Webhooks.voice` / `.callback`."""

    service: CallService
    engine: QueueEngine
    public_base_url: str = ""

    async def _surely(self, work: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """`await work(...)`, waiting for a queue store that blinks as the call service waits
        for its store: a Redis restart must not lose a caller's or an agent's change. The
        engine's operations may be repeated (each step finds what is already done)."""
        return await self.service.patiently(partial(work, *args, **kwargs))

    def _render(self, renderer: Renderer | None) -> Renderer:
        return renderer or self.service.renderer

    def _base(self, renderer: Renderer | None) -> str:
        render = self._render(renderer)
        if self.public_base_url:
            return self.public_base_url
        return render.urls.base if isinstance(render, TwimlRenderer) else ""

    async def _node(
        self, call: NewCall, flow: str | None, node: str | None
    ) -> tuple[Flow, EnqueueNode] | None:
        """The enqueue node the caller waits at, in the flow version the call runs on."""
        if node is None:
            return None
        catalog = self.service.catalog
        loaded = catalog.get(flow) if flow else catalog.for_number(call.called)
        found = loaded.flow.nodes.get(node) if loaded is not None else None
        if isinstance(found, EnqueueNode) and loaded is not None:
            return loaded.flow, found
        # Not in the current version: a reload changed the flow since the call started, and
        # the call goes on with its own version (read from its state; rare, so not cached).
        try:
            stored = await self.service.store.load(call.call_sid)
        except (StoreUnavailable, CorruptState):
            return None
        if stored is None:
            return None
        started = await self.service.started_on(call, stored.state)
        found = started.flow.nodes.get(node) if started is not None else None
        if not isinstance(found, EnqueueNode) or started is None:
            return None
        return started.flow, found

    # -- the caller, waiting --

    async def wait(
        self, request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        seq = params.sequence(request.query_params)
        flow, node = params.wait_node(request.query_params)
        call = params.new_call(fields, flow)
        tick = params.queue_wait_tick(fields)
        view = await self._view(
            call, fields, seq=seq, flow=flow, node=node, waited=tick.waited, renderer=renderer
        )
        event = QueueWaitTick(waited=tick.waited, view=view)
        return await self.service.handle(call, seq, event, node=node, renderer=renderer)

    async def _view(
        self,
        call: NewCall,
        fields: Mapping[str, str],
        *,
        seq: int,
        flow: str | None,
        node: str | None,
        waited: int,
        renderer: Renderer | None,
    ) -> QueueView | None:
        """The caller's place; None when the queue engine cannot tell (the caller then hears
        the music without an announcement, and is never taken out of the queue for it)."""
        found = await self._node(call, flow, node)
        if found is None:
            return None
        loaded, enqueue = found
        spec = loaded.queues.get(enqueue.queue)
        if spec is None:
            return None
        waiter = Waiter(
            member=call.call_sid,
            call_sid=call.call_sid,
            caller=call.caller,
            queued_at=time.time() - waited,
            priority=enqueue.priority,
            queue_sid=params.queue_sid(fields),
            seq=seq,
            flow=loaded.name,
            node=enqueue.id,
            called=call.called,
            base=self._base(renderer),
        )
        try:
            return await self._surely(self.engine.waiting, spec, waiter)
        except Exception:
            log.exception("call %s: the queue engine could not place the caller", call.call_sid)
            return None

    async def keys(
        self, request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        seq = params.sequence(request.query_params)
        flow, node = params.wait_node(request.query_params)
        call = params.new_call(fields, flow)
        event = params.queue_keys_pressed(fields)
        answer = await self.service.handle(call, seq, event, node=node, renderer=renderer)
        for noted in answer.step.events if answer.step else ():
            if isinstance(noted, CallbackRequested):
                fallback = Waiter(
                    member=callback_member(call.call_sid),
                    call_sid=call.call_sid,
                    caller=call.caller,
                    queued_at=noted.queued_at or time.time(),
                    kind=WaiterKind.CALLBACK,
                    number=noted.number,
                    called=call.called,
                    base=self._base(renderer),
                )
                try:
                    booked = await self._surely(
                        self.engine.callback_requested,
                        call.call_sid,
                        noted.queue,
                        noted.number,
                        fallback,
                    )
                except StoreUnavailable:
                    booked = False
                if not booked:
                    log.error(
                        "call %s: the callback the caller confirmed could not be kept",
                        call.call_sid,
                    )
        return answer

    async def left(
        self, request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        """The <Enqueue> action: the caller left Twilio's queue. When flowpbx took them out
        to connect them to an agent (`redirected`), the flow has nothing to say: the agent's
        leg runs the call now."""
        seq = params.sequence(request.query_params)
        call = params.new_call(fields, params.pinned_flow(request.query_params))
        event = params.queue_left(fields)
        if event.result is QueueResult.REDIRECTED:
            return Answer(reply=twiml.EMPTY)
        answer = await self.service.handle(call, seq, event, renderer=renderer)
        exits = (
            [e.reason for e in answer.step.events if isinstance(e, QueueExited)]
            if answer.step
            else []
        )
        if not exits and event.result is QueueResult.HANGUP:
            exits = [QueueExit.HUNG_UP]
        for why in exits:
            try:
                await self._surely(self.engine.left, call.call_sid, why)
            except StoreUnavailable:
                # The flow's answer stands; the place is let go when Twilio says the caller
                # is no longer in its queue.
                log.exception("call %s: could not take the caller out of the queue", call.call_sid)
        return answer

    # -- the agent's leg --

    def _back_in_queue(self, place: params.QueuePlace, renderer: Renderer | None) -> str:
        """The caller waits again (at the front: their place was kept)."""
        action = Enqueue(place.queue, place.flow, place.node)
        return self._render(renderer)((action,), place.seq)

    def _flow(self, name: str) -> Flow:
        loaded = self.service.catalog.get(name)
        return (loaded or self.service.catalog.default_flow).flow

    async def connect(
        self, request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        """Twilio took the caller out of its queue for us: dial the agent held for them."""
        res = params.reservation(request.query_params)
        place = params.queue_place(request.query_params)
        try:
            reservation = await self._surely(self.engine.offered, res)
        except StoreUnavailable:
            log.exception("call %s: queue store down at the connect", fields.get("CallSid"))
            return Answer(reply=self._back_in_queue(place, renderer))
        if reservation is None:
            log.info(
                "call %s: reservation %s lapsed; back in the queue", fields.get("CallSid"), res
            )
            return Answer(reply=self._back_in_queue(place, renderer))
        flow = self._flow(place.flow)
        spec = flow.queues.get(place.queue)
        intro = Say(words.connecting(flow.language), flow.voice, flow.language)
        record = flow.recording.channels if flow.recording.dials else None
        urls = QueueUrls(self._base(renderer))
        query = twiml.place_query(place.queue, place.seq, place.flow, place.node)
        timeout = spec.ring_timeout if spec else 20
        reply = twiml.agent_dial(
            urls, res, query, reservation.target, timeout=timeout, intro=intro, record=record
        )
        return Answer(reply=reply)

    async def dialed(
        self, request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        """The dial to the agent ended: after a conversation, goodbye; unanswered, the caller
        goes back to the front of the queue and the next agent is tried."""
        res = params.reservation(request.query_params)
        place = params.queue_place(request.query_params)
        ended = params.dial_ended(fields)
        answered = ended.result is DialResult.ANSWERED
        try:
            await self._surely(
                self.engine.agent_call_ended,
                res,
                answered=answered,
                talk=ended.duration,
                blame=ended.result is not DialResult.CANCELED,
            )
        except StoreUnavailable:
            # The lapsed reservation's sweep puts things right later; the caller is not dropped.
            log.exception("call %s: queue store down at the dial's end", fields.get("CallSid"))
        if answered:
            return Answer(reply=twiml.spoken())
        return Answer(reply=self._back_in_queue(place, renderer))

    async def call_ended(self, call_sid: str) -> None:
        """The caller's call ended (its final status callback)."""
        await self._surely(self.engine.call_ended, call_sid)

    async def answered(self, request: Request, fields: Mapping[str, str]) -> None:
        """The agent's phone was answered (the <Client>/<Number> status callback, asked for
        the `answered` event only: CallStatus in-progress). Anything else changes nothing."""
        if params.call_status(fields) is not CallStatus.IN_PROGRESS:
            return
        await self._surely(self.engine.agent_answered, params.reservation(request.query_params))

    # -- callbacks --

    async def callback(
        self, request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        """The agent answered a callback's call: tell them, and call the person back."""
        reservation = await self._surely(
            self.engine.agent_answered, params.reservation(request.query_params)
        )
        waiter = reservation.waiter if reservation else None
        flow = self._flow(waiter.flow if waiter else "")
        if reservation is None or waiter is None:
            gone = Say(words.callback_gone(flow.language), flow.voice, flow.language)
            return Answer(reply=twiml.spoken(gone))
        whisper = Say(
            words.callback_whisper(reservation.queue, flow.language), flow.voice, flow.language
        )
        caller_id = waiter.called or self.engine.company_number or None
        urls = QueueUrls(self._base(renderer))
        reply = twiml.callback_dial(
            urls, reservation.id, waiter.number, caller_id=caller_id, whisper=whisper
        )
        return Answer(reply=reply)

    async def callback_dialed(
        self, request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        res = params.reservation(request.query_params)
        ended = params.dial_ended(fields)
        answered = ended.result is DialResult.ANSWERED
        reservation = await self._surely(
            self.engine.callback_ended, res, answered=answered, talk=ended.duration
        )
        if answered or reservation is None or reservation.waiter is None:
            return Answer(reply=twiml.spoken())
        flow = self._flow(reservation.waiter.flow)
        final = reservation.waiter.attempts + 1 >= MAX_CALLBACK_ATTEMPTS
        told = words.callback_given_up if final else words.callback_unanswered
        sorry = Say(told(flow.language), flow.voice, flow.language)
        return Answer(reply=twiml.spoken(sorry))

    async def callback_status(self, request: Request, fields: Mapping[str, str]) -> None:
        """The agent's leg of a callback ended: unanswered, the callback goes back to the
        front for the next agent (their miss); still held after the agent answered, the
        customer was not reached, and the callback is tried again."""
        res = params.reservation(request.query_params)
        status = params.call_status(fields)
        if not status.final:
            return
        held = await self._surely(self.engine.store.reservation, res)
        if held is None:
            return  # the dial to the customer ended it already
        if held.connected:
            # The agent answered but the customer was not reached (the agent hung up before,
            # or the dial's end was not heard of): the callback waits again.
            await self._surely(self.engine.callback_ended, res, answered=False)
            return
        await self._surely(self.engine.agent_call_ended, res, answered=False)
