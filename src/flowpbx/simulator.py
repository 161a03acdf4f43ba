"""A call without a phone: the engine's service, the in-process store, a clock you set, and
answers for what only a real call would tell (keys, a dial's outcome, an agent...).

Nothing here interprets the flow: every answer becomes an ordinary engine event, so a simulated
call takes exactly the steps, and emits exactly the call events, that webhooks would.
"""

from __future__ import annotations

import datetime as dt
import difflib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from flowpbx.engine.actions import Leave, Redirect, Route
from flowpbx.engine.call_events import EndReason, QueueJoined
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
from flowpbx.engine.interpreter import CALLBACK_NUMBER, Step
from flowpbx.engine.service import CallService
from flowpbx.engine.state import Waiting
from flowpbx.errors import FlowpbxError
from flowpbx.language.catalog import FlowCatalog
from flowpbx.language.flow import DialNode, EnqueueNode, HoursNode, MenuNode, Node
from flowpbx.queues.spoken import CONFIRM_KEY, FINISH_KEY, OTHER_NUMBER_KEY
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


DIAL_RESULTS = {
    "answered": DialResult.ANSWERED,
    "busy": DialResult.BUSY,
    "no-answer": DialResult.NO_ANSWER,
    "failed": DialResult.FAILED,
}
DIAL_CHOICES = tuple(DIAL_RESULTS)


def _or(choices: tuple[str, ...]) -> str:
    """'a, b or c'."""
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]


ENDINGS = {
    EndReason.HANGUP: "the flow said goodbye and hung up",
    EndReason.CONNECTED: "connected to the number dialled",
    EndReason.AGENT: "an agent took the call",
    EndReason.CALLER_HUNG_UP: "the caller hung up while waiting",
    EndReason.REDIRECTED: "the call was sent elsewhere",
    EndReason.CALLBACK: "the caller will be called back",
    EndReason.ERROR: "flowpbx could not go on, apologised and hung up",
}
"""How a call ended, in words (for `flowpbx simulate` and `flowpbx test`)."""


class SimulationError(FlowpbxError):
    """An answer that does not fit the question (e.g. 'busy' when the call waits for keys)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """One answer and the step it produced (None when the answer moved nothing)."""

    answer: str
    step: Step | None
    note: str = ""
    """What happened besides the answer, for people (e.g. 'waits 600 s in the queue')."""
    reply: str = ""
    """The TwiML this turn's webhook was answered with."""


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
        started = await self.service.start(self.call)
        assert started.step is not None, "the simulated store cannot fail"
        self.replies.append(started.reply)
        self.steps.append(started.step)
        first = Turn(answer="", step=started.step, reply=started.reply)
        return [first, *await self._hold(started.step)]

    async def _hold(self, step: Step | None) -> list[Turn]:
        """A call that just joined a queue hears its hold music (the queue asks at once)."""
        if step is None or not any(isinstance(e, QueueJoined) for e in step.events):
            return []
        if self.question is not Question.QUEUE:
            return []
        return [await self._turn("", QueueWaitTick(waited=0), "the queue plays the hold music")]

    async def _turn(self, answer: str, event: Event, note: str = "") -> Turn:
        """Send `event` to the call, as its webhook would; the turn with its step and reply."""
        seq = self.step.state.seq
        sent = await self.service.handle(self.call, seq, event)
        self.replies.append(sent.reply)
        if sent.step is not None:
            self.steps.append(sent.step)
        return Turn(answer=answer, step=sent.step, note=note, reply=sent.reply)

    async def answer(self, text: str) -> list[Turn]:
        """Answer the current question with `text` (see `choices`); the steps it produced."""
        turns = await self._answer(text.strip())
        return [*turns, *await self._hold(turns[-1].step if turns else None)]

    def _unknown(self, text: str) -> SimulationError:
        choices = self.choices()
        close = difflib.get_close_matches(text.lower(), choices, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        shown = f"'{text}'" if text else "nothing"
        return SimulationError(f"{shown} is not an answer here{hint}: type {_or(choices)}")

    async def _answer(self, text: str) -> list[Turn]:
        answer = text.lower()
        match self.question:
            case None:
                raise SimulationError("the call has ended")
            case Question.KEYS:
                return [await self._keys(text)]
            case Question.DIAL:
                if answer not in DIAL_CHOICES:
                    raise self._unknown(text)
                result = DIAL_RESULTS[answer]
                duration = 60 if result is DialResult.ANSWERED else 0
                node = self.node
                is_connected = result is DialResult.ANSWERED and isinstance(node, DialNode)
                note = ""
                if is_connected and isinstance(node, DialNode) and not node.answered:
                    note = "connected: the call ends when the conversation ends"
                dialled = DialEnded(result=result, duration=duration)
                return [await self._turn(answer, dialled, note)]
            case Question.QUEUE:
                return await self._queue(answer, text)
            case Question.RECORDING:
                if answer in ("", "-"):
                    answer = RecordingChoice.SILENCE
                if answer not in set(RecordingChoice):
                    raise self._unknown(text)
                url = RECORDING_URL if answer == RecordingChoice.MESSAGE else ""
                recorded = RecordingEnded(url=url, duration=15 if url else 0)
                return [await self._turn(answer, recorded)]

    async def _keys(self, text: str) -> Turn:
        digits = "" if text.lower() in ("", "-", RecordingChoice.SILENCE) else text
        if digits and not all(c in "0123456789*#" for c in digits):
            raise SimulationError(
                f"'{text}' are not keys: type 0-9, * or #, or just Enter (or -) for silence"
            )
        note = ""
        if isinstance(self.node, MenuNode) and len(digits) > 1:
            # Twilio stops listening after a menu's one key: the rest is never sent.
            note = f"a menu takes one key: only {digits[0]} counts"
            digits = digits[0]
        return await self._turn(digits or "-", KeysPressed(digits=digits), note)

    def choices(self) -> tuple[str, ...]:
        """The answers the current question takes (keys: any; '-' is silence)."""
        match self.question:
            case Question.DIAL:
                return DIAL_CHOICES
            case Question.QUEUE:
                return (*QueueChoice, *self.queue_keys())
            case Question.RECORDING:
                return tuple(RecordingChoice)
            case _:
                return ()

    def queue_keys(self) -> tuple[str, ...]:
        """The keys a caller waiting in the current queue may press: the leave key, the
        callback key; at the callback question, confirm or another number."""
        node = self.node
        if not isinstance(node, EnqueueNode) or self.question is not Question.QUEUE:
            return ()
        if self.step.state.queue_phase:
            return (CONFIRM_KEY, OTHER_NUMBER_KEY)
        spec = self.catalog.flows[self.step.state.flow].flow.queues.get(node.queue)
        callback = node.callback_key if spec is not None and spec.callback else None
        return tuple(key for key in (node.leave_key, callback) if key)

    async def _queue(self, answer: str, text: str) -> list[Turn]:
        node = self.node
        assert isinstance(node, EnqueueNode)
        waited = max(0, int(self.now.timestamp()) - self.step.state.queued_at)
        results: dict[str, tuple[QueueResult, str]] = {
            QueueChoice.AGENT: (
                QueueResult.BRIDGED,
                "an agent took the call; it ends when they hang up",
            ),
            QueueChoice.HANGUP: (QueueResult.HANGUP, "the caller hung up while waiting"),
            QueueChoice.FULL: (QueueResult.FULL, "the queue had no room for the caller"),
            QueueChoice.ERROR: (QueueResult.ERROR, "the queue could not keep the caller"),
        }
        if answer in results:
            result, note = results[QueueChoice(answer)]
            return [await self._turn(answer, QueueLeft(result=result, waited=waited), note)]
        if answer == QueueChoice.TIMEOUT:
            max_wait = self.catalog.flows[self.step.state.flow].flow.queues[node.queue].max_wait
            if max_wait is None:
                raise SimulationError(
                    f"queue '{node.queue}' of node '{node.id}' has no max_wait: it never times out"
                )
            self.now += dt.timedelta(seconds=max(0, max_wait - waited))
            note = f"the caller waits {max_wait} s in the queue"
            tick = await self._turn(answer, QueueWaitTick(waited=max_wait), note)
            return [tick, *await self._left(tick.step, max_wait)]
        phase = self.step.state.queue_phase
        if phase and answer in ("", "-", RecordingChoice.SILENCE):
            # The callback question's gather heard nothing: Twilio asks the wait URL again.
            note = "the caller presses nothing: back to the hold music"
            tick = await self._turn("-", QueueWaitTick(waited=waited), note)
            return [tick, *await self._left(tick.step, waited)]
        if text and all(c in "0123456789*#" for c in text):
            if not (phase or node.leave_key or node.callback_key):
                # Twilio gathers no keys in this queue's hold music: nothing would be sent.
                raise SimulationError(
                    f"queue node '{node.id}' takes no keys (no leave_key, no callback_key): "
                    f"type {_or(self.choices())}"
                )
            return await self._queue_keys(node, text, phase, waited)
        raise self._unknown(text)

    async def _queue_keys(
        self, node: EnqueueNode, text: str, phase: str, waited: int
    ) -> list[Turn]:
        """Keys pressed while waiting, as the queue-key webhook gets them: one key during the
        music and at the callback question, a number up to '#' when asked for one."""
        if phase == CALLBACK_NUMBER:
            digits = text.split(FINISH_KEY, maxsplit=1)[0]
            note = f"the caller types {digits} as the number to be called back at"
        elif node.leave_key and text == node.leave_key and not phase:
            digits, note = text, f"the caller presses {text} to leave the queue"
        else:
            digits = text[0]
            note = f"the caller presses {digits}"
            if len(text) > 1:
                note += f" (one key is taken here: only {digits} counts)"
        keys = await self._turn(digits, QueueKeysPressed(digits=digits), note)
        return [keys, *await self._left(keys.step, waited), *await self._music(keys.step)]

    async def _music(self, step: Step | None) -> list[Turn]:
        """After a document that sends the caller back to the hold music, Twilio asks the wait
        URL again."""
        if step is None or not any(
            isinstance(a, Redirect) and a.route is Route.QUEUE_WAIT for a in step.actions
        ):
            return []
        waited = max(0, int(self.now.timestamp()) - self.step.state.queued_at)
        tick = await self._turn("", QueueWaitTick(waited=waited), "back to the hold music")
        return [tick, *await self._left(tick.step, waited)]

    async def _left(self, wait: Step | None, waited: int) -> list[Turn]:
        """After a wait document that says <Leave/>, the queue reports the caller left."""
        if wait is None or Leave() not in wait.actions:
            return []
        left = QueueLeft(result=QueueResult.LEAVE, waited=waited)
        return [await self._turn("", left, "the queue lets the caller go")]
