"""One scenario played through the simulator: each action answers the call, each check looks at
what happened since the previous action; the first difference stops it, said in plain words."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field

from flowpbx.authoring.scenarios import DEFAULT_CALLED, SILENCE, Scenario, ScenarioStep, Verb, Where
from flowpbx.engine.actions import Gather, Record, Say
from flowpbx.engine.call_events import (
    CallEnded,
    CallEvent,
    DialStarted,
    NodeEntered,
    QueueJoined,
)
from flowpbx.language.catalog import FlowCatalog
from flowpbx.simulator import ENDINGS, Question, SimulationError, Simulator, Turn, flow_timezone

FITS = {
    Verb.PRESS: (Question.KEYS, Question.QUEUE),
    Verb.DIAL: (Question.DIAL,),
    Verb.QUEUE: (Question.QUEUE,),
    Verb.RECORD: (Question.RECORDING,),
}
"""What the call must be waiting for to take each action."""


@dataclass(frozen=True, slots=True)
class Failure:
    where: Where
    message: str


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    scenario: Scenario
    failure: Failure | None
    events: tuple[CallEvent, ...]
    """Every call event of the call, in order (for the path and for coverage)."""

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def path(self) -> tuple[str, ...]:
        """The nodes the call went through, in order."""
        return tuple(e.node for e in self.events if isinstance(e, NodeEntered))


def plain(text: str) -> str:
    """Text without capitals, accents and punctuation, spaces collapsed: what `hear` compares."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", letters).split())


def _number(text: str) -> str:
    return re.sub(r"[\s().-]", "", text)


@dataclass
class _Window:
    """What happened since the previous action; each kind of check moves on through it."""

    said: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    dialled: list[str] = field(default_factory=list)
    joined: list[str] = field(default_factory=list)
    recordings: int = 0
    ended: CallEnded | None = None
    cursors: dict[Verb, int] = field(default_factory=dict)

    @classmethod
    def of(cls, turns: Iterable[Turn]) -> _Window:
        window = cls()
        for step in (t.step for t in turns if t.step is not None):
            for action in step.actions:
                prompts = action.prompt if isinstance(action, Gather) else (action,)
                window.said.extend(p.text for p in prompts if isinstance(p, Say))
                window.recordings += isinstance(action, Record)
            for event in step.events:
                match event:
                    case NodeEntered():
                        window.nodes.append(event.node)
                    case DialStarted():
                        window.dialled.extend(event.targets)
                    case QueueJoined():
                        window.joined.append(event.queue)
                    case CallEnded():
                        window.ended = event
                    case _:
                        pass
        return window

    def _find(self, verb: Verb, items: list[str], wanted: str) -> bool:
        start = self.cursors.get(verb, 0)
        if wanted in items[start:]:
            self.cursors[verb] = items.index(wanted, start) + 1
            return True
        return False

    def check(self, step: ScenarioStep, waiting: str) -> str | None:
        """None when `step` holds, else what differs."""
        value = str(step.value)
        match step.verb:
            case Verb.HEAR:
                return self._hear(value)
            case Verb.REACH:
                if self._find(step.verb, self.nodes, value):
                    return None
                went = " → ".join(self.nodes) or f"no node (it waits {waiting})"
                return f"expected to reach '{value}' but since the previous action it went: {went}"
            case Verb.DIALLED:
                numbers = [_number(n) for n in self.dialled]
                if self._find(step.verb, numbers, _number(value)):
                    return None
                got = ", ".join(self.dialled) or "nothing"
                return f"expected {value} to be dialled but since the previous action: {got}"
            case Verb.JOINS:
                if self._find(step.verb, self.joined, value):
                    return None
                got = ", ".join(f"'{q}'" for q in self.joined) or "none"
                return f"expected the caller to join queue '{value}' but joined: {got}"
            case Verb.RECORDS:
                if bool(self.recordings) == step.value:
                    return None
                if step.value:
                    return f"expected a recording to start, but none did (the call waits {waiting})"
                return "expected no recording, but one started"
            case Verb.ENDS:
                return self._ends(value, waiting)
            case _:
                raise AssertionError(f"{step.verb} is an action")

    def _hear(self, value: str) -> str | None:
        # Whole words: "4 minutos" is not heard in "14 minutos", nor "pulse 1" in "pulse 12".
        wanted = f" {plain(value)} "
        heard = f" {' '.join(plain(text) for text in self.said)} "
        start = self.cursors.get(Verb.HEAR, 0)
        found = heard.find(wanted, start)
        if wanted.strip() and found >= 0:
            self.cursors[Verb.HEAR] = found + len(wanted) - 1  # its last space may start the next
            return None
        if not self.said:
            return f'expected to hear "{value}" but nothing was said since the previous action'
        earlier = " (it was said, but before the previous 'hear')" if wanted in heard else ""
        return f'expected to hear "{value}" but the caller heard: "{" ".join(self.said)}"{earlier}'

    def _ends(self, value: str, waiting: str) -> str | None:
        if self.ended is None:
            return f"expected the call to end ({value}) but it goes on: it waits {waiting}"
        if self.ended.how == value:
            return None
        how = self.ended.how
        return (
            f"expected the call to end with '{value}' but it ended with '{how}' "
            f"({ENDINGS[how]}) at '{self.ended.node}'"
        )


def _waiting(simulator: Simulator) -> str:
    """Where the call stands, for messages: 'for keys at 'menu_principal''."""
    node = simulator.step.state.node
    match simulator.question:
        case Question.KEYS:
            return f"for keys at '{node}'"
        case Question.DIAL:
            return f"for a dial to end at '{node}'"
        case Question.QUEUE:
            return f"in a queue at '{node}'"
        case Question.RECORDING:
            return f"for a voicemail message at '{node}'"
        case None:
            return f"nowhere: it ended at '{node}'"


def _hint(simulator: Simulator) -> str:
    match simulator.question:
        case Question.KEYS:
            return "press: (keys, or silence)"
        case Question.DIAL:
            return "dial: answered, busy, no-answer or failed"
        case Question.QUEUE:
            keys = " or ".join(simulator.queue_keys())
            pressed = f" (or press: {keys})" if keys else ""
            return f"queue: agent, hangup, timeout, full or error{pressed}"
        case Question.RECORDING | None:
            return "record: message or silence"


def _misfit(simulator: Simulator, step: ScenarioStep) -> str | None:
    """Why `step` cannot happen now, or None."""
    if simulator.question is None:
        ended = next(e for e in reversed(simulator.step.events) if isinstance(e, CallEnded))
        return f"'{step}' cannot happen: the call has ended ({ENDINGS[ended.how]})"
    if simulator.question in FITS[step.verb]:
        return None
    return (
        f"'{step}' cannot happen here: the call waits {_waiting(simulator)}; "
        f"write {_hint(simulator)}"
    )


def wall_clock(moment: dt.datetime, zone: str | None) -> dt.datetime | str:
    """`moment` in the flow's time zone, or why it does not exist there."""
    tz = zoneinfo.ZoneInfo(zone) if zone else dt.UTC
    local = moment.replace(tzinfo=tz)
    if local.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != moment:
        return f"{moment:%Y-%m-%d %H:%M} does not exist in {zone}: the clocks go forward then"
    return local


async def run_scenario(scenario: Scenario, catalog: FlowCatalog) -> ScenarioResult:
    """Play `scenario` against the catalog's flow; the result stops at the first difference."""
    loaded = catalog.default_flow
    assert scenario.at is not None, "check_against refuses scenarios without a clock"
    now = wall_clock(scenario.at, flow_timezone(loaded.flow.nodes))
    if isinstance(now, str):
        return ScenarioResult(scenario, Failure(scenario.at_where, now), ())
    simulator = Simulator(
        catalog=catalog,
        flow=loaded.flow.name,
        caller=scenario.caller,
        called=DEFAULT_CALLED,
        now=now,
    )
    turns = await simulator.start()
    events: list[CallEvent] = [e for t in turns if t.step for e in t.step.events]
    window = _Window.of(turns)
    for step in scenario.steps:
        if step.verb.is_action:
            problem = _misfit(simulator, step)
            if problem is None:
                text = str(step.value)
                try:
                    turns = await simulator.answer("-" if text in SILENCE else text)
                except SimulationError as exc:
                    problem = f"'{step}' does not fit here: {exc}"
            if problem is not None:
                return ScenarioResult(scenario, Failure(step.where, problem), tuple(events))
            events.extend(e for t in turns if t.step for e in t.step.events)
            window = _Window.of(turns)
            continue
        differs = window.check(step, _waiting(simulator))
        if differs is not None:
            return ScenarioResult(scenario, Failure(step.where, differs), tuple(events))
    return ScenarioResult(scenario, None, tuple(events))
