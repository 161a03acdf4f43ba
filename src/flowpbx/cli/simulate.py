"""`flowpbx simulate FLOW`: a call in the terminal, through the same engine as real calls.

It shows what the caller hears, the path through the flow and the call events, and asks what
only a real call would tell: keys, how a dial ended, what happens in a queue or a voicemail.
With `--digits` the answers come from a script, and the output is stable enough to diff.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from starlette.config import Config

from flowpbx.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    fail,
    flow_file,
    flow_name_folder,
    text_or_json,
)
from flowpbx.engine.actions import (
    Action,
    Dial,
    Enqueue,
    Gather,
    Hangup,
    Leave,
    Pause,
    Play,
    Prompt,
    Record,
    Redirect,
    Say,
)
from flowpbx.engine.call_events import CallEnded, NodeEntered, to_dict
from flowpbx.engine.interpreter import CALLBACK_NUMBER
from flowpbx.engine.state import Waiting
from flowpbx.errors import FlowError, FlowpbxError
from flowpbx.language.catalog import load_one
from flowpbx.language.flow import EnqueueNode, InputNode, MenuNode
from flowpbx.simulator import ENDINGS, Question, SimulationError, Simulator, Turn, flow_timezone

DEFAULT_CALLER = "+34600000000"
DEFAULT_CALLED = "+34910000000"


def _clock(at: str | None, zone: str | None) -> dt.datetime:
    """`--at` as an aware instant: a time without an offset is in the flow's time zone."""
    tz = zoneinfo.ZoneInfo(zone) if zone else dt.UTC
    if at is None:
        return dt.datetime.now(tz).replace(second=0, microsecond=0)
    try:
        moment = dt.datetime.fromisoformat(at)
    except ValueError:
        raise click.BadParameter(
            f"{at!r} is not a date and time; write it like '2026-12-25 10:00'", param_hint="--at"
        ) from None
    if moment.tzinfo:
        return moment
    local = moment.replace(tzinfo=tz)
    # A wall-clock time skipped when the clocks go forward does not exist: say so.
    if local.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != moment:
        raise click.BadParameter(
            f"{at} does not exist in {zone}: the clocks go forward then; pick another time",
            param_hint="--at",
        )
    return local


WAITS = {
    Waiting.KEYS: "keys",
    Waiting.DIAL: "a dial to end",
    Waiting.QUEUE: "an agent in a queue",
    Waiting.RECORDING: "a message",
    Waiting.ENDED: "nothing",
}


def _heard_data(action: Action) -> dict[str, Any]:
    """What the caller hears or what happens, as data: {"kind": ..., fields...}."""
    data: dict[str, Any] = {"kind": type(action).__name__.lower()}
    for name in action.__slots__:
        value = getattr(action, name)
        if isinstance(value, tuple) and value and not isinstance(value[0], str):
            value = [_heard_data(item) for item in value]
        elif isinstance(value, tuple):
            value = list(value)
        data[name] = str(value) if hasattr(value, "value") else value
    return data


def _heard(prompt: Prompt) -> str:
    match prompt:
        case Say():
            return f"  says ({prompt.voice}, {prompt.language}): {prompt.text}"
        case Play():
            return f"  plays: {prompt.url}"
        case Pause():
            return f"  silence: {prompt.seconds} s"


def heard(actions: tuple[Action, ...]) -> Iterator[str]:
    """What the caller hears and what happens to the call, one line each."""
    for action in actions:
        match action:
            case Say() | Play() | Pause():
                yield _heard(action)
            case Gather():
                yield from (_heard(prompt) for prompt in action.prompt)
            case Dial():
                recorded = ", recorded" if action.record else ""
                yield f"  dials: {', '.join(action.targets)} (up to {action.timeout} s{recorded})"
            case Enqueue():
                yield f"  joins queue: {action.queue}"
            case Record():
                beep = " after a beep" if action.beep else ""
                yield f"  records a message{beep} (up to {action.max_length} s)"
            case Hangup():
                yield "  hangs up"
            case Leave():
                yield "  leaves the queue"
            case Redirect():
                pass  # plumbing between webhooks: nothing the caller hears


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _event_line(event: Any) -> str:
    data = to_dict(event)
    kind = data.pop("type")
    fields = ", ".join(f"{k}={_value(v)}" for k, v in data.items() if v not in ("", None))
    return f"  - {kind}: {fields}"


def _ask(simulator: Simulator) -> str:
    """The question a real call would answer now, as a prompt."""
    node = simulator.node
    match simulator.question:
        case Question.KEYS:
            if isinstance(node, MenuNode):
                keys = ", ".join(node.options)
                return f"keys? (options {keys}; {node.timeout} s; - or Enter = silence)"
            if isinstance(node, InputNode):
                finish = f", then {node.finish_on_key}" if node.finish_on_key else ""
                return f"keys? (digits{finish}; {node.timeout} s; - or Enter = silence)"
            return "keys?"
        case Question.DIAL:
            return "dial ends: answered, busy, no-answer or failed?"
        case Question.QUEUE:
            if simulator.step.state.queue_phase == CALLBACK_NUMBER:
                return "number to be called back at? (digits, then #; - = nothing)"
            if simulator.step.state.queue_phase:
                return "callback: 1 (confirm the number), 2 (another number) or - (nothing)?"
            key = ""
            leave_key = node.leave_key if isinstance(node, EnqueueNode) else None
            if leave_key:
                key = f", {leave_key} (the caller presses the leave key)"
            callback = [k for k in simulator.queue_keys() if k != leave_key]
            if callback:
                key += f", {callback[0]} (asks to be called back)"
            return f"in the queue: agent, hangup, timeout{key}; or full, error (refused)?"
        case Question.RECORDING:
            return "voicemail: message or silence?"
        case None:
            return ""


class _Output:
    """Prints the call as text (as it happens) or gathers it for one JSON document."""

    def __init__(self, *, as_json: bool, show_events: bool, show_twiml: bool) -> None:
        self.as_json = as_json
        self.show_events = show_events
        self.show_twiml = show_twiml
        self.document: dict[str, Any] = {"steps": []}
        self.seq = 0

    def line(self, text: str = "") -> None:
        if not self.as_json:
            click.echo(text)

    def step(self, turn: Turn) -> None:
        step = turn.step
        if step is None:
            self.line("  (nothing changes: the call takes no such event here)")
            return
        path = [e.node for e in step.events if isinstance(e, NodeEntered)]
        entry: dict[str, Any] = {
            "seq": step.state.seq,
            "answer": turn.answer or None,
            "note": turn.note or None,
            "path": path,
            "heard": [_heard_data(a) for a in step.actions],
            "events": [to_dict(e) for e in step.events],
            "node": step.state.node,
            "waiting": str(step.state.waiting),
        }
        if self.show_twiml:
            entry["twiml"] = turn.reply
        self.document["steps"].append(entry)
        if turn.note:
            self.line(f"  ({turn.note})")
        if path:
            self.line(f"step {step.state.seq}: {' > '.join(path)}")
        elif step.state.seq != self.seq:
            again = "the call ends" if step.state.waiting is Waiting.ENDED else "again at"
            where = "" if step.state.waiting is Waiting.ENDED else f" {step.state.node}"
            self.line(f"step {step.state.seq}: {again}{where}")
        self.seq = step.state.seq
        for text in heard(step.actions):
            self.line(text)
        if self.show_events:
            for event in step.events:
                self.line(_event_line(event))
        if self.show_twiml:
            self.line(f"  twiml: {turn.reply}")


async def _run(simulator: Simulator, script: list[str] | None, output: _Output) -> int:
    for turn in await simulator.start():
        output.step(turn)
    while simulator.question is not None:
        question = _ask(simulator)
        if script is not None:
            if not script:
                state = simulator.step.state
                waits = WAITS[state.waiting]
                output.line(f"script ended: the call waits for {waits} at '{state.node}'")
                output.document["ended"] = None
                return EXIT_OK
            answer = script.pop(0)
            output.line(f"{question} {answer}")
        else:
            answer = click.prompt(question, default="-", show_default=False, prompt_suffix=" ")
        try:
            turns: list[Turn] = await simulator.answer(answer)
        except SimulationError as exc:
            if script is not None:
                fail(f"flowpbx simulate: at step {simulator.step.state.seq}: {exc}", EXIT_USAGE)
            click.echo(f"  {exc}", err=True)
            continue
        for turn in turns:
            output.step(turn)
    ended = next(e for e in simulator.step.events[::-1] if isinstance(e, CallEnded))
    output.line(f"call ended: {ENDINGS[ended.how]} (at '{ended.node}')")
    output.document["ended"] = {"how": str(ended.how), "node": ended.node}
    if script:
        output.line(f"script: {len(script)} answer(s) not used: {', '.join(script)}")
        output.document["unused_answers"] = script
    return EXIT_OK


@click.command(short_help="Try a call to a flow in the terminal, no phone needed.")
@click.argument("flow")
@click.option(
    "--digits",
    "script",
    default=None,
    metavar="ANSWERS",
    help="Play a scripted call: answers separated by commas, in order. Keys (e.g. 4 or "
    "12345678), - for silence; dial: answered/busy/no-answer/failed; queue: agent/hangup/"
    "timeout/full/error or the leave key; voicemail: message/silence.",
)
@click.option(
    "--at",
    default=None,
    metavar="'YYYY-MM-DD HH:MM'",
    help="The clock of the call, in the flow's time zone unless an offset is given (default: now).",
)
@click.option("--from", "caller", default=DEFAULT_CALLER, show_default=True, help="Who calls.")
@click.option("--to", "called", default=DEFAULT_CALLED, show_default=True, help="Number called.")
@flow_name_folder
@click.option("--events/--no-events", default=True, show_default=True, help="Show call events.")
@click.option("--twiml", is_flag=True, help="Also show the TwiML each step answers.")
@text_or_json("text as it happens, or one JSON document at the end (needs --digits).")
def simulate(  # noqa: PLR0917 - one parameter per option
    flow: str,
    script: str | None,
    at: str | None,
    caller: str,
    called: str,
    flows_dir: Path,
    events: bool,
    twiml: bool,
    output_format: str,
) -> None:
    """Try a call to FLOW (a flow file, or a flow's name in --flows) in the terminal.

    Shows what the caller hears, the nodes the call goes through and its call events; asks
    for keys (Enter = silence) and for what happens at dial, queue and voicemail nodes.
    """
    if output_format == "json" and script is None:
        raise click.UsageError("--format json plays a scripted call: give --digits")
    path = flow_file(flow, flows_dir)
    env = Config(Path(".env") if Path(".env").is_file() else None)
    try:
        catalog = load_one(path, lambda name: env(name, default=None) or None)
    except FlowError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        fail(
            f"flowpbx simulate: {path} has errors (above, with their line and column); fix them "
            f"and try again (flowpbx validate {path} lists them too)",
            EXIT_PROBLEMS,
        )
    except FlowpbxError as exc:
        fail(f"flowpbx simulate: {exc}", EXIT_PROBLEMS)
    loaded = catalog.default_flow
    zone = flow_timezone(loaded.flow.nodes)
    now = _clock(at, zone)
    simulator = Simulator(
        catalog=catalog, flow=loaded.flow.name, caller=caller, called=called, now=now
    )
    output = _Output(as_json=output_format == "json", show_events=events, show_twiml=twiml)
    output.document |= {
        "flow": loaded.flow.name,
        "version": loaded.version,
        "caller": caller,
        "called": called,
        "clock": now.isoformat(),
    }
    output.line(f"flow {loaded.flow.name} ({path}, version {loaded.version})")
    output.line(f"call from {caller} to {called}, {now:%A %Y-%m-%d %H:%M} {now.tzname()}")
    answers = None if script is None else [part.strip() for part in script.split(",")]
    code = asyncio.run(_run(simulator, answers, output))
    if output.as_json:
        click.echo(json.dumps(output.document, ensure_ascii=False, indent=2))
    raise SystemExit(code)
