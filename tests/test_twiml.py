"""TwiML rendering: cached templates still escape the base URL and carry each step."""

from __future__ import annotations

from flowpbx.engine.actions import Dial, Gather, Hangup, Route, Say
from flowpbx.twilio.twiml import Urls, render

GATHER = Gather((Say("Pulse 1.", "Polly.Lucia", "es-ES"),), 5, 1, "")


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
