"""TwiML rendering: cached templates still escape the base URL and carry each step."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from flowpbx.engine.actions import Dial, Gather, Hangup, Record, Route, Say
from flowpbx.engine.events import NewCall
from flowpbx.engine.interpreter import Context, start
from flowpbx.language.flow import RecordingChannels
from flowpbx.language.loader import check_text
from flowpbx.twilio.twiml import CONTENT_TYPE, Urls, render
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
