"""TwiML rendering: cached templates still escape the base URL and carry each step."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from flowpbx.engine.actions import Dial, Gather, Hangup, Leave, Play, Record, Redirect, Route, Say
from flowpbx.engine.events import NewCall
from flowpbx.engine.interpreter import Context, start
from flowpbx.language.flow import RecordingChannels
from flowpbx.language.loader import check_text
from flowpbx.twilio import params
from flowpbx.twilio.twiml import (
    CONTENT_TYPE,
    QueueUrls,
    Urls,
    agent_dial,
    callback_dial,
    place_query,
    render,
    spoken,
)
from twilio_fake import BASE_URL, Reply, Verb, check_reply

GATHER = Gather((Say("Pulse 1.", "Polly.Lucia", "es-ES"),), 5, 1, "")
RECORDING_STATUS = f"{BASE_URL}/api/webhooks/recording-status"
DIAL_EVENTS = "in-progress completed absent"


def test_render_puts_base_and_step_in_every_url() -> None:
    """Action, redirect and recording callback URLs are absolute and carry the step."""
    xml = render((Dial(("+34912345671",), None, 25, True),), Urls("https://pbx.example.com"), 7)
    assert 'action="https://pbx.example.com/api/calls/dial?seq=7"' in xml
    assert 'recordingStatusCallback="https://pbx.example.com/api/webhooks/recording-status"' in xml


def test_render_reuses_template_for_other_calls() -> None:
    """The same actions for another call and step differ only in base URL and step."""
    first = render((GATHER,), Urls("https://a.example.com"), 1)
    second = render((GATHER,), Urls("https://b.example.com"), 42)
    assert first.replace("a.example.com", "b.example.com").replace("seq=1", "seq=42") == second


def test_render_escapes_base_url() -> None:
    """A base URL with XML specials is escaped in attributes and text alike."""
    xml = render((GATHER,), Urls('https://x.example.com/p&q"'), 3)
    assert 'action="https://x.example.com/p&amp;q&quot;/api/calls/gather?seq=3"' in xml
    assert ">https://x.example.com/p&amp;q&quot;/api/calls/gather?seq=3</Redirect>" in xml


def test_render_escapes_spoken_text() -> None:
    """Text spoken to the caller is escaped, not interpreted as markup."""
    xml = render((Say("<Hangup/> & adiós", "Polly.Lucia", "es-ES"), Hangup()), Urls(""), 1)
    assert "&lt;Hangup/&gt; &amp; adiós</Say><Hangup /></Response>" in xml


def test_render_queue_key_gather_has_no_redirect() -> None:
    """A gather inside hold music returns to the wait loop by itself: no redirect after it."""
    gather = Gather((), 1, 1, "", Route.QUEUE_KEY)
    xml = render((gather,), Urls("https://pbx.example.com"), 2)
    assert "queue-key?seq=2" in xml
    assert "<Redirect" not in xml


def test_render_queue_key_gather_lets_silence_end_the_wait_document() -> None:
    """In a queue, a gather that hears nothing does not post an empty result (the wait document
    ends and Twilio asks the wait URL again); a menu's gather does post it."""
    hold = Gather((Play("https://example.com/espera.mp3"),), 1, 1, "", Route.QUEUE_KEY)
    in_queue = _reply(render((hold,), Urls(BASE_URL), 2)).one("Gather")
    assert in_queue["actionOnEmptyResult"] == "false"
    assert in_queue["action"] == f"{BASE_URL}/api/calls/queue-key?seq=2"
    assert [child.text for child in in_queue.named("Play")] == ["https://example.com/espera.mp3"]
    menu = _reply(render((GATHER,), Urls(BASE_URL), 2)).one("Gather")
    assert menu["actionOnEmptyResult"] == "true"


@pytest.mark.parametrize("pinned", ["", "seguros"])
def test_render_redirect_to_the_wait_names_the_enqueue_node(pinned: str) -> None:
    """A redirect back to the hold music names the flow and enqueue node (so a caller whose
    state is lost keeps waiting), once each, even on a call whose other URLs name its flow."""
    said = Say("Ese número no es válido.", "Polly.Lucia", "es-ES")
    actions = (said, Redirect(Route.QUEUE_WAIT, "seguros", "agente"))
    reply = _reply(render(actions, Urls(BASE_URL), 5, pinned))
    assert reply.names == ("Say", "Redirect")
    expected = f"{BASE_URL}/api/calls/queue-wait?seq=5&flow=seguros&node=agente"
    assert reply.one("Redirect").text == expected
    assert reply.seq == 5


def test_render_redirect_without_a_node_goes_to_the_plain_route() -> None:
    """A redirect that names no enqueue node is the route with the step only."""
    xml = render((Redirect(Route.GATHER),), Urls(BASE_URL), 3)
    assert f">{BASE_URL}/api/calls/gather?seq=3</Redirect>" in xml
    assert "node=" not in xml


def test_render_callback_booked_then_leave() -> None:
    """A booked callback thanks the caller, then takes them out of the queue."""
    booked = Say("Gracias. Ya puede colgar.", "Polly.Lucia", "es-ES")
    reply = _reply(render((booked, Leave()), Urls(BASE_URL), 2))
    assert (reply.names, reply.says) == (("Say", "Leave"), ("Gracias. Ya puede colgar.",))


RES = "0123456789abcdef" * 2
PLACE = place_query("general-queue", 4, "seguros", "agente")
INTRO = Say("Le pasamos con un agente.", "Polly.Lucia", "es-ES")


def test_place_query_reads_back_as_the_same_place() -> None:
    """The place a queue leg's URL carries is read back as the caller's queue, step and node."""
    assert PLACE == "queue=general-queue&seq=4&flow=seguros&node=agente"
    query = dict(item.split("=", 1) for item in PLACE.split("&"))
    assert params.queue_place(query) == params.QueuePlace("general-queue", 4, "seguros", "agente")


@pytest.mark.parametrize(
    ("target", "noun", "text"),
    [
        pytest.param("+34911111111", "Number", "+34911111111", id="phone"),
        pytest.param("client:ana", "Client", "ana", id="softphone"),
    ],
)
def test_agent_dial_rings_the_agent_and_reports_the_answer(
    target: str, noun: str, text: str
) -> None:
    """The caller hears the intro and ringing until the agent answers; the answer is reported
    at once, the dial's end to the dialed leg, which names the reservation and the place."""
    xml = agent_dial(QueueUrls(BASE_URL), RES, PLACE, target, timeout=20, intro=INTRO, record=None)
    reply = _reply(xml)
    assert (reply.names, reply.says) == (("Say", "Dial"), ("Le pasamos con un agente.",))
    dial = reply.one("Dial")
    assert dial["action"] == f"{BASE_URL}/api/calls/queue-dialed?res={RES}&{PLACE}"
    assert (dial["timeout"], dial["answerOnBridge"]) == ("20", "true")
    assert _recording(dial) == (None, None, None, None)
    (called,) = dial.children
    assert (called.name, called.text) == (noun, text)
    assert called["statusCallback"] == f"{BASE_URL}/api/webhooks/agent-answered?res={RES}"
    assert called["statusCallbackEvent"] == "answered"


def test_agent_dial_records_when_the_flow_records_dials() -> None:
    """A flow that records dials records the agent's call too, on its channels."""
    xml = agent_dial(
        QueueUrls(BASE_URL),
        RES,
        PLACE,
        "+34911111111",
        timeout=20,
        intro=None,
        record=RecordingChannels.DUAL,
    )
    reply = _reply(xml)
    assert reply.names == ("Dial",)
    recording = _recording(reply.one("Dial"))
    assert recording == ("record-from-answer-dual", RECORDING_STATUS, "POST", DIAL_EVENTS)


def test_callback_dial_whispers_then_calls_the_customer() -> None:
    """The agent hears which queue the callback is from, then the customer is dialled from
    the company's number."""
    whisper = Say("Devolución de llamada de la cola general-queue.", "Polly.Lucia", "es-ES")
    xml = callback_dial(
        QueueUrls(BASE_URL), RES, "+34612345678", caller_id="+34912345678", whisper=whisper
    )
    reply = _reply(xml)
    assert reply.names == ("Say", "Dial")
    assert reply.says == ("Devolución de llamada de la cola general-queue.",)
    dial = reply.one("Dial")
    assert dial["action"] == f"{BASE_URL}/api/calls/callback-dialed?res={RES}"
    assert (dial["callerId"], dial["answerOnBridge"]) == ("+34912345678", "true")
    assert [(n.name, n.text) for n in dial.children] == [("Number", "+34612345678")]


def test_spoken_says_then_hangs_up_unless_told_not_to() -> None:
    """Words for a queue leg, then a hangup by default; without it, only the words."""
    said = Say("Gracias.", "Polly.Lucia", "es-ES")
    assert _reply(spoken(said)).names == ("Say", "Hangup")
    assert _reply(spoken(said, hangup=False)).names == ("Say",)
    assert _reply(spoken()).names == ("Hangup",)


def test_render_builds_each_action_list_once() -> None:
    """The twilio library renders a given list of actions once; later replies reuse it."""
    from flowpbx.twilio.twiml import _template

    actions = (Say("Única.", "Polly.Lucia", "es-ES"), Hangup())
    render(actions, Urls("https://a.example.com"), 1)
    before = _template.cache_info()
    render(actions, Urls("https://b.example.com"), 2)
    after = _template.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 0)


def _reply(xml: str) -> Reply:
    """The TwiML as Twilio reads it, checked against the XSD and our allow-list."""
    return check_reply(httpx.Response(200, content=xml, headers={"content-type": CONTENT_TYPE}))


def _recording(dial: Verb) -> tuple[str | None, str | None, str | None, str | None]:
    """A <Dial>'s recording attributes: mode, status callback, its method and its events."""
    return (
        dial.get("record"),
        dial.get("recordingStatusCallback"),
        dial.get("recordingStatusCallbackMethod"),
        dial.get("recordingStatusCallbackEvent"),
    )


@pytest.mark.parametrize(
    ("channels", "mode"),
    [
        pytest.param(RecordingChannels.DUAL, "record-from-answer-dual", id="dual"),
        pytest.param(RecordingChannels.MONO, "record-from-answer", id="mono"),
    ],
)
def test_render_recorded_dial_reports_every_recording_event(
    channels: RecordingChannels, mode: str
) -> None:
    """A recorded dial records from the answer on its channels, and asks for in-progress,
    completed and absent callbacks at our recording-status webhook, by POST."""
    dial = Dial(("+34912345671",), None, 25, True, channels)
    reply = _reply(render((dial,), Urls(BASE_URL), 4))
    assert _recording(reply.one("Dial")) == (mode, RECORDING_STATUS, "POST", DIAL_EVENTS)


def test_render_unrecorded_dial_has_no_recording_attributes() -> None:
    """A dial that does not record asks for no recording and no recording callbacks."""
    dial = Dial(("+34912345671",), None, 25, False, RecordingChannels.MONO)
    reply = _reply(render((dial,), Urls(BASE_URL), 4))
    assert _recording(reply.one("Dial")) == (None, None, None, None)


def test_render_voicemail_keeps_default_recording_events() -> None:
    """<Record> reports to the same webhook but only sends completed or failed: no events."""
    reply = _reply(render((Record(120, 5, True, "#", False),), Urls(BASE_URL), 4))
    record = reply.one("Record")
    assert record.get("recordingStatusCallback") == RECORDING_STATUS
    assert record.get("recordingStatusCallbackEvent") is None


DIALING_FLOW = """\
name: grabacion
entry: aviso
{recording}
nodes:
  aviso:
    type: say
    text: Esta llamada puede ser grabada.
    next: llamar
  llamar:
    type: dial
    to: "+34912345671"
{record}
    no_answer: adios
  adios:
    type: hangup
"""


@pytest.mark.parametrize(
    ("recording", "record", "mode"),
    [
        pytest.param(
            "recording: {dials: true, channels: mono, notice: aviso}",
            "",
            "record-from-answer",
            id="flow-records-mono",
        ),
        pytest.param(
            "recording: {dials: true, notice: aviso}",
            "",
            "record-from-answer-dual",
            id="flow-records-dual-by-default",
        ),
        pytest.param(
            "recording: {dials: true, channels: dual, notice: aviso}",
            "    record: false",
            None,
            id="dial-opts-out",
        ),
        pytest.param(
            "recording: {channels: mono, notice: aviso}",
            "    record: true",
            "record-from-answer",
            id="dial-opts-in-with-flow-channels",
        ),
        pytest.param(
            "recording: {notice: aviso}",
            "",
            None,
            id="flow-does-not-record-by-default",
        ),
        pytest.param("", "    record: true", "record-from-answer-dual", id="no-flow-setting"),
        pytest.param("", "", None, id="nothing-recorded"),
    ],
)
def test_render_flow_recording_setting_reaches_dial(
    recording: str, record: str, mode: str | None
) -> None:
    """The flow's `recording` decides whether each dial records and on how many channels,
    unless the dial says `record:` itself; what the caller gets is the matching <Dial>."""
    report = check_text(DIALING_FLOW.format(recording=recording, record=record), "grabacion.yaml")
    assert report.flow is not None, report.problems
    ctx = Context(
        flow=report.flow,
        version="v1",
        config={},
        now=dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC),
    )
    call = NewCall(call_sid="CA" + "0" * 32, caller="+34600111222", called="+34910000000")
    actions = start(call, ctx).actions
    assert actions[0] == Say("Esta llamada puede ser grabada.", "Polly.Lucia", "es-ES")
    dial = _reply(render(actions, Urls(BASE_URL), 1)).one("Dial")
    expected = (mode, RECORDING_STATUS, "POST", DIAL_EVENTS) if mode else (None,) * 4
    assert _recording(dial) == expected
