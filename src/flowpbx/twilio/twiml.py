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
                action_on_empty_result=True,
            )
            for prompt in action.prompt:
                _prompt(gather, prompt)
            if action.route is Route.GATHER:
                # Should the empty-result request not come, silence still reaches the flow.
                response.redirect(url, method="POST")
        case Dial():
            response.append(_dial(action, urls, seq))
        case Enqueue():
            # The wait URL names the enqueue node: a caller whose state is lost keeps waiting.
            wait_seq = _SEQ_ONLY if seq == _SEQ else seq
            wait_url = (
                f"{urls.route(Route.QUEUE_WAIT, wait_seq)}&flow={action.flow}&node={action.node}"
            )
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
