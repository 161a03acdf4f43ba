"""The only module that writes TwiML: actions to a <Response> with absolute webhook URLs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, assert_never
from urllib.parse import quote
from xml.sax.saxutils import escape

from twilio.twiml.voice_response import Dial as DialVerb
from twilio.twiml.voice_response import Gather as GatherVerb
from twilio.twiml.voice_response import VoiceResponse

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
    Route,
    Say,
)
from flowpbx.language.flow import RecordingChannels

CONTENT_TYPE = "application/xml"

_DIAL_RECORD = {
    RecordingChannels.MONO: "record-from-answer",
    RecordingChannels.DUAL: "record-from-answer-dual",
}
# <Dial> recordings report when they start, when they are ready, and when there was nothing to
# record (`absent`); Twilio's default is `completed` only. <Record> only ever sends completed
# or failed, so it keeps the default.
_DIAL_RECORDING_EVENTS = "in-progress completed absent"


@dataclass(frozen=True, slots=True)
class Urls:
    """Absolute webhook URLs under `base` (e.g. https://pbx.example.com, no trailing slash)."""

    base: str

    def route(self, route: Route, seq: int | str) -> str:
        return f"{self.base}/api/calls/{route}?seq={seq}"

    @property
    def recording_status(self) -> str:
        return f"{self.base}/api/webhooks/recording-status"

    @property
    def call_status(self) -> str:
        return f"{self.base}/api/webhooks/call-status"

    def outbound(self, flow: str) -> str:
        """Where Twilio asks what to do when a call flowpbx placed for `flow` is answered."""
        return f"{self.base}/api/calls/outbound?flow={quote(flow)}"

    def connect(self, identity: str) -> str:
        """Where Twilio asks what to do when a call placed for softphone `identity` is
        answered (it is connected to that softphone)."""
        return f"{self.base}/api/calls/connect?identity={quote(identity)}"


def _prompt(parent: VoiceResponse | GatherVerb, prompt: Prompt) -> None:
    match prompt:
        case Say():
            loop = prompt.loop if prompt.loop != 1 else None
            parent.say(prompt.text, voice=prompt.voice, language=prompt.language, loop=loop)
        case Play():
            parent.play(prompt.url, loop=prompt.loop if prompt.loop != 1 else None)
        case Pause():
            parent.pause(length=prompt.seconds)
        case _:
            assert_never(prompt)


def _dial(action: Dial, urls: Urls, seq: int | str) -> DialVerb:
    extra: dict[str, Any] = {}
    if action.record:
        extra = {
            "record": _DIAL_RECORD[action.channels],
            "recording_status_callback": urls.recording_status,
            "recording_status_callback_method": "POST",
            "recording_status_callback_event": _DIAL_RECORDING_EVENTS,
        }
    dial = DialVerb(
        action=urls.route(Route.DIAL, seq),
        method="POST",
        timeout=action.timeout,
        caller_id=action.caller_id,
        **extra,
    )
    for target in action.targets:
        _dial_target(dial, target)
    return dial


def _dial_target(dial: DialVerb, target: str) -> None:
    """A softphone (`client:<identity>`), a SIP address or a number, as `<Dial>`'s noun."""
    if target.startswith("client:"):
        dial.client(target.removeprefix("client:"))
    elif target.startswith(("sip:", "sips:")):
        dial.sip(target)
    else:
        dial.number(target)


def _wait_url(urls: Urls, seq: int | str, flow: str, node: str) -> str:
    """A queue's wait URL names the enqueue node: a caller whose state is lost keeps waiting."""
    wait_seq = _SEQ_ONLY if seq == _SEQ else seq
    return f"{urls.route(Route.QUEUE_WAIT, wait_seq)}&flow={quote(flow)}&node={quote(node)}"


def _append(response: VoiceResponse, action: Action, urls: Urls, seq: int | str) -> None:
    match action:
        case Say() | Play() | Pause():
            _prompt(response, action)
        case Gather():
            url = urls.route(action.route, seq)
            gather = response.gather(
                action=url,
                method="POST",
                input="dtmf",
                timeout=action.timeout,
                num_digits=action.num_digits,
                finish_on_key=action.finish_on_key,
                # In a queue, a gather that hears nothing lets the wait document end: Twilio
                # then asks the wait URL again, with the queue's parameters.
                action_on_empty_result=action.route is not Route.QUEUE_KEY,
            )
            for prompt in action.prompt:
                _prompt(gather, prompt)
            if action.route is Route.GATHER:
                # Should the empty-result request not come, silence still reaches the flow.
                response.redirect(url, method="POST")
        case Dial():
            response.append(_dial(action, urls, seq))
        case Enqueue():
            wait_url = _wait_url(urls, seq, action.flow, action.node)
            response.enqueue(
                action.queue,
                action=urls.route(Route.ENQUEUE, seq),
                method="POST",
                wait_url=wait_url,
                wait_url_method="POST",
            )
        case Record():
            url = urls.route(Route.RECORD, seq)
            response.record(
                action=url,
                method="POST",
                max_length=action.max_length,
                timeout=action.timeout,
                play_beep=action.beep,
                finish_on_key=action.finish_on_key,
                transcribe=action.transcribe,
                recording_status_callback=urls.recording_status,
                recording_status_callback_method="POST",
            )
            # Twilio skips the action when nothing was recorded and runs the next verb instead.
            response.redirect(url, method="POST")
        case Hangup():
            response.hangup()
        case Leave():
            response.leave()
        case Redirect():
            if action.route is Route.QUEUE_WAIT and action.node:
                response.redirect(_wait_url(urls, seq, action.flow, action.node), method="POST")
            else:
                response.redirect(urls.route(action.route, seq), method="POST")
        case _:
            assert_never(action)


# Rendering is cached per sequence of actions, with these markers where the call's base URL
# and step go. They hold a NUL, which no flow text or Twilio parameter can contain.
_BASE = "\x00base\x00"
_SEQ = "\x00seq\x00"
_SEQ_ONLY = "\x00seq-only\x00"


@lru_cache(maxsize=4096)
def _template(actions: tuple[Action, ...]) -> str:
    response = VoiceResponse()
    for action in actions:
        _append(response, action, Urls(_BASE), _SEQ)
    return str(response.to_xml(xml_declaration=True))


def render(actions: Iterable[Action], urls: Urls, seq: int, flow: str = "") -> str:
    """A TwiML document; webhook URLs carry `seq` so that replies match their step, and `flow`
    when given (a call whose flow the number called does not tell: one flowpbx placed)."""
    base = escape(urls.base, {'"': "&quot;"})
    step = f"{seq}&amp;flow={escape(flow)}" if flow else str(seq)
    document = _template(tuple(actions)).replace(_BASE, base).replace(_SEQ, step)
    return document.replace(_SEQ_ONLY, str(seq))


@dataclass(frozen=True, slots=True)
class TwimlRenderer:
    """Renders the engine's actions as TwiML with webhook URLs under one base."""

    urls: Urls

    def __call__(self, actions: tuple[Action, ...], seq: int, flow: str = "") -> str:
        return render(actions, self.urls, seq, flow)


EMPTY = render((), Urls(""), 0)


def connect(target: str, *, caller_id: str | None, timeout: int = 30) -> str:
    """A call connected straight to one number or softphone (`client:<identity>`), without a
    flow: the caller hears ringing until it answers (answerOnBridge); the call ends with it."""
    response = VoiceResponse()
    dial = DialVerb(answer_on_bridge=True, timeout=timeout, caller_id=caller_id)
    _dial_target(dial, target)
    response.append(dial)
    return str(response.to_xml(xml_declaration=True))


# -- the legs of a queue's calls (agents and callbacks) --


@dataclass(frozen=True, slots=True)
class QueueUrls:
    """Webhook URLs of the queue engine's legs under `base`: `res` names the reservation (the
    agent held for one caller); a caller's place in the flow rides along, so that a caller can
    be put back in the queue whatever became of the reservation."""

    base: str

    def connect(self, res: str, place: str) -> str:
        """Where a caller taken out of Twilio's queue goes: the dial to the agent."""
        return f"{self.base}/api/calls/queue-connect?res={res}&{place}"

    def answered(self, res: str) -> str:
        return f"{self.base}/api/webhooks/agent-answered?res={res}"

    def dialed(self, res: str, place: str) -> str:
        return f"{self.base}/api/calls/queue-dialed?res={res}&{place}"

    def callback(self, res: str) -> str:
        """Where the agent's leg of a callback goes when they answer."""
        return f"{self.base}/api/calls/callback?res={res}"

    def callback_status(self, res: str) -> str:
        return f"{self.base}/api/webhooks/callback-status?res={res}"

    def callback_dialed(self, res: str) -> str:
        return f"{self.base}/api/calls/callback-dialed?res={res}"

    def recording_status(self) -> str:
        return f"{self.base}/api/webhooks/recording-status"


def place_query(queue: str, seq: int, flow: str, node: str) -> str:
    """A caller's place in a flow's queue, as a query string for the queue legs' URLs."""
    return f"queue={quote(queue)}&seq={seq}&flow={quote(flow)}&node={quote(node)}"


def _document(response: VoiceResponse) -> str:
    return str(response.to_xml(xml_declaration=True))


def agent_dial(
    urls: QueueUrls,
    res: str,
    place: str,
    target: str,
    *,
    timeout: int,
    intro: Say | None,
    record: RecordingChannels | None,
) -> str:
    """A caller's turn: connect them to the agent held for them. The caller hears `intro`
    and ringing until the agent answers (answerOnBridge); the agent's answer is reported at
    once (for their status), the dial's end to `dialed`."""
    response = VoiceResponse()
    if intro is not None:
        _prompt(response, intro)
    extra: dict[str, Any] = {}
    if record is not None:
        extra = {
            "record": _DIAL_RECORD[record],
            "recording_status_callback": urls.recording_status(),
            "recording_status_callback_method": "POST",
            "recording_status_callback_event": _DIAL_RECORDING_EVENTS,
        }
    dial = DialVerb(
        action=urls.dialed(res, place),
        method="POST",
        timeout=timeout,
        answer_on_bridge=True,
        **extra,
    )
    status = {
        "status_callback_event": "answered",
        "status_callback": urls.answered(res),
        "status_callback_method": "POST",
    }
    if target.startswith("client:"):
        dial.client(target.removeprefix("client:"), **status)
    else:
        dial.number(target, **status)
    response.append(dial)
    return _document(response)


def callback_dial(
    urls: QueueUrls, res: str, number: str, *, caller_id: str | None, whisper: Say
) -> str:
    """The agent answered a callback: tell them, then call the person back."""
    response = VoiceResponse()
    _prompt(response, whisper)
    dial = DialVerb(
        action=urls.callback_dialed(res),
        method="POST",
        timeout=30,
        caller_id=caller_id,
        answer_on_bridge=True,
    )
    dial.number(number)
    response.append(dial)
    return _document(response)


def spoken(*said: Say, hangup: bool = True) -> str:
    """Words, then (by default) hang up."""
    response = VoiceResponse()
    for say in said:
        _prompt(response, say)
    if hangup:
        response.hangup()
    return _document(response)
