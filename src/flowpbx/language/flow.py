"""The typed, immutable model of a call flow and its node kinds.

Each node kind knows its own outcomes (`edges`), so graph checks and the interpreter
read transitions from one place.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, get_args

from flowpbx.errors import Mark
from flowpbx.language.templates import Template

CONFIG_REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
"""A config value used in a phone number or audio URL: ${NAME}."""


def resolve_config(value: str, config: Mapping[str, str]) -> str:
    """`value` with each ${NAME} replaced from `config`; KeyError names a missing one."""
    return CONFIG_REFERENCE.sub(lambda match: config[match.group(1)], value)


NodeKey = str | int
EdgePath = tuple[NodeKey, ...]


class EdgeKind(StrEnum):
    """Why a transition is taken: by itself, by the caller's keys, or through a bounded goto."""

    STEP = "step"
    CHOICE = "choice"
    BOUNDED = "bounded"


@dataclass(frozen=True, slots=True)
class Edge:
    """An outcome of a node: `path` is the key inside the node that names `target`."""

    path: EdgePath
    target: str
    kind: EdgeKind = EdgeKind.STEP

    @property
    def label(self) -> str:
        """How a flow author would name this outcome: option '1', case 2, 'next'."""
        if self.path[0] == "options":
            return f"option '{self.path[1]}'"
        if self.path[0] == "cases":
            return f"case {int(self.path[1]) + 1}"
        return f"'{self.path[0]}'"


@dataclass(frozen=True, slots=True)
class Speech:
    """What the caller hears: spoken text in a voice and language, or an audio file."""

    text: Template | None
    play: str | None
    voice: str
    language: str


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Opening time within one day, in minutes from midnight; `end` may be 1440."""

    start: int
    end: int

    def contains(self, minute: int) -> bool:
        return self.start <= minute < self.end


@dataclass(frozen=True, slots=True)
class Holiday:
    """A closed (or shortened) day; `year` None means every year. A holiday that moves with
    Easter (Viernes Santo is `easter-2`) has `easter`, its days after Easter Sunday, and no
    month or day."""

    month: int
    day: int
    year: int | None
    name: str
    hours: tuple[TimeRange, ...]
    easter: int | None = None

    def falls_on(self, date: dt.date) -> bool:
        """Whether the holiday is on `date`."""
        if self.easter is not None:
            # A large offset can land in the year before or after its Easter's.
            offset = dt.timedelta(days=self.easter)
            years = (date.year - 1, date.year, date.year + 1)
            return any(date == easter_sunday(year) + offset for year in years)
        return (self.month, self.day) == (date.month, date.day) and self.year in (None, date.year)


def easter_sunday(year: int) -> dt.date:
    """Western (Gregorian) Easter Sunday, by the anonymous Gregorian algorithm."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


class CaseTest(StrEnum):
    EQUALS = "equals"
    STARTS_WITH = "starts_with"


@dataclass(frozen=True, slots=True)
class Case:
    """A switch case: matches when the value equals (or starts with) one of `values`."""

    test: CaseTest
    values: tuple[str, ...]
    next: str

    def matches(self, value: str) -> bool:
        if self.test is CaseTest.EQUALS:
            return value in self.values
        return any(value.startswith(prefix) for prefix in self.values)


@dataclass(frozen=True, slots=True, kw_only=True)
class SayNode:
    kind: ClassVar[str] = "say"
    id: str
    mark: Mark
    description: str
    speech: Speech
    loop: int
    next: str

    def edges(self) -> tuple[Edge, ...]:
        return (Edge(("next",), self.next),)


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseNode:
    kind: ClassVar[str] = "pause"
    id: str
    mark: Mark
    description: str
    seconds: int
    next: str

    def edges(self) -> tuple[Edge, ...]:
        return (Edge(("next",), self.next),)


@dataclass(frozen=True, slots=True, kw_only=True)
class MenuNode:
    kind: ClassVar[str] = "menu"
    id: str
    mark: Mark
    description: str
    prompt: Speech
    options: Mapping[str, str]
    timeout: int
    retries: int
    no_input: Speech | None
    invalid: Speech | None
    exhausted: str

    def edges(self) -> tuple[Edge, ...]:
        choices = tuple(
            Edge(("options", key), target, EdgeKind.CHOICE) for key, target in self.options.items()
        )
        return (*choices, Edge(("exhausted",), self.exhausted))


@dataclass(frozen=True, slots=True, kw_only=True)
class InputNode:
    kind: ClassVar[str] = "input"
    id: str
    mark: Mark
    description: str
    prompt: Speech
    variable: str
    min_digits: int
    max_digits: int | None
    finish_on_key: str
    is_sensitive: bool
    """The digits are private (a PIN): call events record them masked."""
    timeout: int
    retries: int
    no_input: Speech | None
    invalid: Speech | None
    next: str
    exhausted: str

    def edges(self) -> tuple[Edge, ...]:
        return (Edge(("next",), self.next, EdgeKind.CHOICE), Edge(("exhausted",), self.exhausted))


class RecordingChannels(StrEnum):
    """How a recorded dial is stored: both voices on one channel, or the caller and the person
    called on separate channels (easier to transcribe and to check who said what)."""

    MONO = "mono"
    DUAL = "dual"


@dataclass(frozen=True, slots=True, kw_only=True)
class DialNode:
    kind: ClassVar[str] = "dial"
    id: str
    mark: Mark
    description: str
    targets: tuple[str, ...]
    caller_id: str | None
    timeout: int
    record: bool
    """Whether the answered call is recorded: the node's `record`, else the flow's default."""
    channels: RecordingChannels
    answered: str | None
    no_answer: str
    busy: str
    failed: str

    def edges(self) -> tuple[Edge, ...]:
        answered = (Edge(("answered",), self.answered),) if self.answered else ()
        return (
            *answered,
            Edge(("no_answer",), self.no_answer),
            Edge(("busy",), self.busy),
            Edge(("failed",), self.failed),
        )


class QueueStrategy(StrEnum):
    """Which free agent a queue offers its next caller to."""

    ROUND_ROBIN = "round-robin"
    """The next agent after the one offered the last call, in a fixed order (by agent id)."""
    LONGEST_IDLE = "longest-idle"
    """The agent who has been free the longest."""


DEFAULT_HOLD_MUSIC = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
"""Twilio's own royalty-free classical hold music (its default for <Enqueue>)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSpec:
    """A call queue as a flow file's `queues` section declares it. Times are in seconds."""

    name: str
    mark: Mark
    description: str = ""
    max_size: int = 100
    """Callers (and callbacks) waiting at most; the next one takes the node's `full` way."""
    max_wait: int | None = 600
    """A caller waiting this long takes the node's `timed_out` way (None: no limit)."""
    strategy: QueueStrategy = QueueStrategy.ROUND_ROBIN
    service_level: int = 60
    """Answered within this many seconds counts as within the service level."""
    hold_music: str | None = DEFAULT_HOLD_MUSIC
    """An audio URL (may use ${CONFIG}); None plays silence."""
    announce_every: int = 60
    """Seconds between announcements of position and wait (0: never)."""
    callback: bool = False
    """Whether callers may ask to be called back, keeping their place."""
    country_code: str = "+34"
    """Prefix of a callback number typed without one (e.g. 612345678 -> +34612345678)."""
    ring_timeout: int = 20
    """Seconds an agent's phone rings before the caller is offered to the next agent."""
    wrap_up: int = 30
    """Seconds an agent stays in wrap-up after a call before taking the next one."""
    handle_time: int = 180
    """The handle time (talk + wrap-up) assumed until the queue has learned its own."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueueNode:
    kind: ClassVar[str] = "enqueue"
    id: str
    mark: Mark
    description: str
    queue: str
    priority: int
    """0-9: callers of a higher priority are served before those of a lower one."""
    leave_key: str | None
    callback_key: str | None
    timed_out: str | None
    full: str
    left: str | None
    callback: str | None
    """Where the call goes once a callback is confirmed (None: a goodbye and hang up)."""
    voice: str
    language: str

    def edges(self) -> tuple[Edge, ...]:
        edges = [Edge(("full",), self.full)]
        if self.timed_out:
            edges.append(Edge(("timed_out",), self.timed_out))
        if self.left:
            edges.append(Edge(("left",), self.left, EdgeKind.CHOICE))
        if self.callback:
            edges.append(Edge(("callback",), self.callback, EdgeKind.CHOICE))
        return tuple(edges)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordNode:
    kind: ClassVar[str] = "record"
    id: str
    mark: Mark
    description: str
    prompt: Speech | None
    max_length: int
    timeout: int
    beep: bool
    finish_on_key: str
    transcribe: bool
    next: str

    def edges(self) -> tuple[Edge, ...]:
        return (Edge(("next",), self.next),)


@dataclass(frozen=True, slots=True, kw_only=True)
class HangupNode:
    kind: ClassVar[str] = "hangup"
    id: str
    mark: Mark
    description: str
    goodbye: Speech | None

    def edges(self) -> tuple[Edge, ...]:
        return ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GotoNode:
    kind: ClassVar[str] = "goto"
    id: str
    mark: Mark
    description: str
    target: str
    limit: int | None
    exhausted: str | None

    def edges(self) -> tuple[Edge, ...]:
        if self.limit is None:
            return (Edge(("target",), self.target),)
        exhausted = (Edge(("exhausted",), self.exhausted),) if self.exhausted else ()
        return (Edge(("target",), self.target, EdgeKind.BOUNDED), *exhausted)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetNode:
    kind: ClassVar[str] = "set"
    id: str
    mark: Mark
    description: str
    values: Mapping[str, Template]
    next: str

    def edges(self) -> tuple[Edge, ...]:
        return (Edge(("next",), self.next),)


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchNode:
    kind: ClassVar[str] = "switch"
    id: str
    mark: Mark
    description: str
    variable: str
    cases: tuple[Case, ...]
    default: str

    def edges(self) -> tuple[Edge, ...]:
        cases = tuple(Edge(("cases", i, "next"), case.next) for i, case in enumerate(self.cases))
        return (*cases, Edge(("default",), self.default))


@dataclass(frozen=True, slots=True, kw_only=True)
class HoursNode:
    kind: ClassVar[str] = "hours"
    id: str
    mark: Mark
    description: str
    timezone: str
    weekly: tuple[tuple[TimeRange, ...], ...]
    """Opening ranges for Monday (index 0) to Sunday (index 6)."""
    holidays: tuple[Holiday, ...]
    open: str
    closed: str
    holiday: str

    def edges(self) -> tuple[Edge, ...]:
        return (
            Edge(("open",), self.open),
            Edge(("closed",), self.closed),
            Edge(("holiday",), self.holiday),
        )


Node = (
    SayNode
    | PauseNode
    | MenuNode
    | InputNode
    | DialNode
    | EnqueueNode
    | RecordNode
    | HangupNode
    | GotoNode
    | SetNode
    | SwitchNode
    | HoursNode
)

NODE_KINDS: tuple[str, ...] = tuple(kind.kind for kind in get_args(Node))
"""Every node kind, in the order of the `Node` union."""


@dataclass(frozen=True, slots=True)
class OnError:
    """What a caller hears when a step fails, and where the call goes next (None: hang up).

    `goodbye` is said instead when the call cannot go on to `next`: a plain apology that
    promises nothing.
    """

    apology: Speech
    next: str | None
    goodbye: Speech


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingPolicy:
    """The flow's `recording` setting: whether dials record unless they say otherwise, on one
    channel or two, and the node that tells callers the call may be recorded."""

    dials: bool = False
    channels: RecordingChannels = RecordingChannels.DUAL
    notice: str | None = None


@dataclass(frozen=True, slots=True)
class Flow:
    """A validated call flow, ready for the interpreter."""

    name: str
    description: str
    source: str
    entry: str
    voice: str
    language: str
    config: Mapping[str, str | None]
    on_error: OnError
    nodes: Mapping[str, Node]
    recording: RecordingPolicy = RecordingPolicy()
    queues: Mapping[str, QueueSpec] = field(default_factory=dict)
    """The queues this flow's enqueue nodes use, by name."""
