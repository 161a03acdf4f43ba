"""What one step reads and collects: its context (flow, clock, config) and its walk through the
flow (the actions for the caller and the call events, in order)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from flowpbx.dialing.rules import Destinations
from flowpbx.engine.actions import Action, Play, Prompt, Say
from flowpbx.engine.call_events import CallEvent
from flowpbx.engine.hours import HoursStatus
from flowpbx.engine.state import CallState
from flowpbx.errors import FlowpbxError
from flowpbx.language.flow import Flow, Speech, resolve_config


class StepError(FlowpbxError):
    """A step that cannot go on: a loop, a missing config value, a node that is gone."""

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node
        """The node where the step failed, when it got as far as one."""
        self.events: tuple[CallEvent, ...] = ()
        """What the step had done before it failed (options chosen, nodes entered)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """The values a step may read besides the call's state: no clock or environment inside."""

    flow: Flow
    version: str
    """The flow's version (a hash of its text), recorded by new calls."""
    config: Mapping[str, str]
    now: dt.datetime
    hours_override: HoursStatus | None = None
    """Forces every hours node (the operator's day/night switch); None follows the clock."""
    destinations: Destinations | None = None
    """The numbers flowpbx may call (a callback's number is checked against them); None: any
    number in E.164 form."""


@dataclass(slots=True)
class Walk:
    """The actions and call events one step collects as it enters nodes."""

    ctx: Context
    actions: list[Action] = field(default_factory=list)
    events: list[CallEvent] = field(default_factory=list)

    def play(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def note(self, *events: CallEvent) -> None:
        self.events.extend(events)


@dataclass(frozen=True, slots=True)
class Go:
    """Continue at `node` within the same step."""

    node: str
    state: CallState


@dataclass(frozen=True, slots=True)
class Wait:
    """End the step: the call waits at its current node (or has ended)."""

    state: CallState


Outcome = Go | Wait


def resolve(value: str, ctx: Context) -> str:
    """A phone number or URL with its ${NAME} config values filled in."""
    try:
        return resolve_config(value, ctx.config)
    except KeyError as exc:
        name = exc.args[0]
        raise StepError(
            f"config '{name}' has no value; set the environment variable {name}"
        ) from exc


def prompt(speech: Speech, state: CallState, ctx: Context, loop: int = 1) -> tuple[Prompt, ...]:
    """What the caller hears for a message: spoken text (with variables) or an audio file."""
    if speech.play is not None:
        return (Play(resolve(speech.play, ctx), loop),)
    assert speech.text is not None
    text = speech.text.render(state.variables)
    return (Say(text, speech.voice, speech.language, loop),) if text.strip() else ()
