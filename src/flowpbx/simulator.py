"""A call without a phone: the engine's service, the in-process store, a clock you set, and
answers for what only a real call would tell (keys, a dial's outcome, an agent...).

Nothing here interprets the flow: every answer becomes an ordinary engine event, so a simulated
call takes exactly the steps, and emits exactly the call events, that webhooks would.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from flowpbx.engine.actions import Leave
from flowpbx.engine.call_events import QueueJoined
from flowpbx.engine.events import (
    DialEnded,
    DialResult,
    Direction,
    Event,
    KeysPressed,
    NewCall,
    QueueKeysPressed,
    QueueLeft,
    QueueResult,
    QueueWaitTick,
    RecordingEnded,
)
from flowpbx.engine.hours import HoursStatus
from flowpbx.engine.interpreter import Step
from flowpbx.engine.service import CallService
from flowpbx.engine.state import Waiting
from flowpbx.errors import FlowpbxError
from flowpbx.language.catalog import FlowCatalog
from flowpbx.language.flow import EnqueueNode, HoursNode, Node
from flowpbx.store.memory import MemoryCallStore
from flowpbx.twilio.twiml import TwimlRenderer, Urls

SIMULATED_BASE = "https://simulated.flowpbx.invalid"
RECORDING_URL = "https://simulated.flowpbx.invalid/recordings/RE0001.wav"
CALL_TTL = 24 * 3600


class Question(StrEnum):
    """What a real call would tell flowpbx next."""

    KEYS = "keys"
    DIAL = "dial"
    QUEUE = "queue"
    RECORDING = "recording"


class QueueChoice(StrEnum):
    """What can happen to a caller waiting in a queue."""

    AGENT = "agent"
    """An agent takes the call (the conversation then ends the flow)."""
    HANGUP = "hangup"
    """The caller hangs up while waiting."""
    TIMEOUT = "timeout"
    """The caller waits the queue node's max_wait."""
    FULL = "full"
    """The queue has no room."""
    ERROR = "error"
    """The queue fails."""


class RecordingChoice(StrEnum):
    MESSAGE = "message"
    """The caller leaves a message."""
    SILENCE = "silence"
    """Nothing is recorded."""


DIAL_CHOICES = ("answered", "busy", "no-answer", "failed")


class SimulationError(FlowpbxError):
    """An answer that does not fit the question (e.g. 'busy' when the call waits for keys)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """One answer and the step it produced (None when the answer moved nothing)."""

    answer: str
    step: Step | None
    note: str = ""
    """What happened besides the answer, for people (e.g. 'waits 600 s in the queue')."""


def flow_timezone(nodes: Mapping[str, Node]) -> str | None:
    """The time zone of a flow's business hours, when all its hours nodes agree on one."""
    zones = {n.timezone for n in nodes.values() if isinstance(n, HoursNode)}
    return zones.pop() if len(zones) == 1 else None


def simulated_sid(caller: str, at: dt.datetime) -> str:
    """A CallSid that is the same for the same caller and clock (stable output)."""
    seed = f"{caller}|{at.isoformat()}".encode()
    return "CA" + "".join(f"{zlib.crc32(seed + bytes([i])):08x}" for i in range(4))


@dataclass
class Simulator:
    """One simulated call through the engine's service; `now` moves on with simulated waits."""

    catalog: FlowCatalog
    flow: str
    caller: str
    called: str
    now: dt.datetime
    hours_override: HoursStatus | None = None
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = MemoryCallStore(CALL_TTL)
        self.service = CallService(
            catalog=self.catalog,
            store=self.store,
            renderer=TwimlRenderer(Urls(SIMULATED_BASE)),
            clock=lambda: self.now,
            hours_override=self.hours_override,
            retry_seconds=0,
        )
        self.call = NewCall(
            call_sid=simulated_sid(self.caller, self.now),
            caller=self.caller,
            called=self.called,
            direction=Direction.INBOUND,
            flow=self.flow,
        )
        self.replies: list[str] = []

    @property
    def step(self) -> Step:
        assert self.steps, "the call has not started"
        return self.steps[-1]

    @property
    def question(self) -> Question | None:
        """What the call waits for, or None once it has ended."""
        match self.step.state.waiting:
            case Waiting.KEYS:
                return Question.KEYS
            case Waiting.DIAL:
                return Question.DIAL
            case Waiting.QUEUE:
                return Question.QUEUE
            case Waiting.RECORDING:
                return Question.RECORDING
            case Waiting.ENDED:
                return None

    @property
    def node(self) -> Node:
        state = self.step.state
        return self.catalog.flows[state.flow].flow.nodes[state.node]

    async def start(self) -> list[Turn]:
        """The call rings; the first step (and the first hold music if it queues at once)."""
        answer = await self.service.start(self.call)
        assert answer.step is not None, "the simulated store cannot fail"
        self.replies.append(answer.reply)
        self.steps.append(answer.step)
        return [Turn(answer="", step=answer.step), *await self._hold(answer.step)]

    async def _hold(self, step: Step | None) -> list[Turn]:
        """A call that just joined a queue hears its hold music (the queue asks at once)."""
        if step is None or not any(isinstance(e, QueueJoined) for e in step.events):
            return []
        if self.question is not Question.QUEUE:
            return []
        tick = await self._send(QueueWaitTick(waited=0))
        return [Turn(answer="", step=tick, note="the queue plays the hold music")]

    async def _send(self, event: Event) -> Step | None:
        seq = self.step.state.seq
        answer = await self.service.handle(self.call, seq, event)
        self.replies.append(answer.reply)
        if answer.step is not None:
            self.steps.append(answer.step)
        return answer.step

    async def answer(self, text: str) -> list[Turn]:
        """Answer the current question with `text` (see `choices`); the steps it produced."""
        turns = await self._answer(text)
        return [*turns, *await self._hold(turns[-1].step if turns else None)]

    async def _answer(self, text: str) -> list[Turn]:
        question = self.question
        text = text.strip()
        match question:
            case None:
                raise SimulationError("the call has ended")
            case Question.KEYS:
                digits = "" if text in ("", "-", RecordingChoice.SILENCE) else text
                if digits and not all(c in "0123456789*#" for c in digits):
                    raise SimulationError(f"{text!r} are not keys: use 0-9, * and #, or - for none")
                return [
                    Turn(answer=digits or "-", step=await self._send(KeysPressed(digits=digits)))
                ]
            case Question.DIAL:
                if text not in DIAL_CHOICES:
                    raise SimulationError(f"{text!r}: the dial ends {', '.join(DIAL_CHOICES)}")
                result = DialResult.ANSWERED if text == "answered" else DialResult(text)
                duration = 60 if result is DialResult.ANSWERED else 0
                dialled = await self._send(DialEnded(result=result, duration=duration))
                return [Turn(answer=text, step=dialled)]
            case Question.QUEUE:
                return await self._queue(text)
            case Question.RECORDING:
                if text not in set(RecordingChoice):
                    raise SimulationError(f"{text!r}: say {' or '.join(RecordingChoice)}")
                url = RECORDING_URL if text == RecordingChoice.MESSAGE else ""
                recorded = await self._send(RecordingEnded(url=url, duration=15 if url else 0))
                return [Turn(answer=text, step=recorded)]

    def choices(self) -> tuple[str, ...]:
        """The answers the current question takes (keys: any; '-' is silence)."""
        match self.question:
            case Question.DIAL:
                return DIAL_CHOICES
            case Question.QUEUE:
                node = self.node
                keys = (node.leave_key,) if isinstance(node, EnqueueNode) and node.leave_key else ()
                return (*QueueChoice, *keys)
            case Question.RECORDING:
                return tuple(RecordingChoice)
            case _:
                return ()

    async def _queue(self, text: str) -> list[Turn]:
        node = self.node
        assert isinstance(node, EnqueueNode)
        waited = max(0, int(self.now.timestamp()) - self.step.state.queued_at)
        results = {
            QueueChoice.AGENT: QueueResult.BRIDGED,
            QueueChoice.HANGUP: QueueResult.HANGUP,
            QueueChoice.FULL: QueueResult.FULL,
            QueueChoice.ERROR: QueueResult.ERROR,
        }
        if text in results:
            event = QueueLeft(result=results[QueueChoice(text)], waited=waited)
            return [Turn(answer=text, step=await self._send(event))]
        if text == QueueChoice.TIMEOUT:
            if node.max_wait is None:
                raise SimulationError(f"queue node '{node.id}' has no max_wait: it never times out")
            self.now += dt.timedelta(seconds=max(0, node.max_wait - waited))
            tick = await self._send(QueueWaitTick(waited=node.max_wait))
            note = f"the caller waits {node.max_wait} s in the queue"
            return [Turn(answer=text, step=tick, note=note), *await self._left(tick, node.max_wait)]
        if node.leave_key and text == node.leave_key:
            keys = await self._send(QueueKeysPressed(digits=text))
            return [Turn(answer=text, step=keys), *await self._left(keys, waited)]
        raise SimulationError(f"{text!r}: say {', '.join(self.choices())}")

    async def _left(self, wait: Step | None, waited: int) -> list[Turn]:
        """After a wait document that says <Leave/>, the queue reports the caller left."""
        if wait is None or Leave() not in wait.actions:
            return []
        step = await self._send(QueueLeft(result=QueueResult.LEAVE, waited=waited))
        return [Turn(answer="", step=step, note="the queue lets the caller go")]
