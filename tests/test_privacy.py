"""Phone numbers in logs (`flowpbx.privacy`): masked where flowpbx logs them, and in every
line its log handler writes (`flowpbx.logs`) for numbers quoted in errors."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowpbx.logs import log_formatter
from flowpbx.privacy import mask_number, mask_numbers
from test_api import CUSTOMER, Api, running, settings_for, softphone
from twilio_rest import twilio_rest

MASKED = "+34******678"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        pytest.param("+34612345678", MASKED, id="spain"),
        pytest.param("+14155550123", "+1*******123", id="nanp"),
        pytest.param("+447700900123", "+44*******123", id="uk"),
        pytest.param("+351912345678", "+351******678", id="three-digit-code"),
        pytest.param("+79161234567", "+7*******567", id="russia"),
        pytest.param("+34 612 34 56 78", MASKED, id="spaced"),
        pytest.param("+2661234", "+266*234", id="shortest"),
        pytest.param("612345678", "******678", id="national"),
        pytest.param("client:alice", "client:alice", id="softphone"),
        pytest.param("1234", "***", id="extension"),
        pytest.param("112", "***", id="short-code"),
        pytest.param("anonymous", "***", id="word"),
        pytest.param("sip:ana@pbx.example.com", "***", id="sip"),
        pytest.param("+34612345678x", "***", id="junk"),
        pytest.param("", "", id="empty"),
    ],
)
def test_mask_number_keeps_the_country_and_last_three_digits(value: str, masked: str) -> None:
    """E.164 numbers keep country code and last three digits; softphones stay; anything else
    is hidden whole."""
    assert mask_number(value) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        pytest.param(
            "+34806123456 is a blocked destination (+34806: premium-rate)",
            "+34******456 is a blocked destination (+34806: premium-rate)",
            id="refusal",
        ),
        pytest.param(
            "'612345678' is not a phone number in E.164 form, like +34912345678",
            "'******678' is not a phone number in E.164 form, like +34******678",
            id="quoted",
        ),
        pytest.param(
            "dialled sip:+34612345678@trunk.example and tel:0034612345678",
            "dialled sip:+34******678@trunk.example and tel:**********678",
            id="sip-and-tel",
        ),
        pytest.param("called +34612345678.", f"called {MASKED}.", id="sentence"),
        pytest.param("to +34612345678,+34699000111", f"to {MASKED},+34******111", id="list"),
    ],
)
def test_mask_numbers_masks_every_number_in_a_message(text: str, masked: str) -> None:
    """Numbers inside a message are masked wherever they stand."""
    assert mask_numbers(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("call CA0123456789abcdef0123456789abcdef", id="sid"),
        pytest.param("history entry 1764000000000-0 skipped", id="stream-id"),
        pytest.param("listening on 192.168.100.200:3020", id="address"),
        pytest.param("waited 1234567.25 s", id="decimal"),
        pytest.param("at 2026-09-02T10:00:00+00:00", id="timestamp"),
        pytest.param("softphone client:ana1234567 calls", id="identity"),
    ],
)
def test_mask_numbers_leaves_other_digits_alone(text: str) -> None:
    """Sids, stream ids, addresses, decimals and times are not phone numbers."""
    assert mask_numbers(text) == text


def test_log_lines_mask_messages_and_tracebacks() -> None:
    """A number in a message's arguments or in an exception's text is masked in the line
    written (flowpbx.logs, the handler of `flowpbx serve` and `flowpbx history-writer`)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter("json"))
    log = logging.getLogger("flowpbx.test.privacy")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.warning("refused %s: %s", "POST /api/calls", f"{CUSTOMER} is outside")
        try:
            raise ValueError(f"The 'To' number {CUSTOMER} is not valid")
        except ValueError:
            log.exception("webhook failed")
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
    assert CUSTOMER not in stream.getvalue()
    refused, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert refused["event"] == f"refused POST /api/calls: {MASKED} is outside"
    assert failed["exception"].endswith(f"ValueError: The 'To' number {MASKED} is not valid")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with twilio_rest() as fake:
        yield from running(settings_for(f"sqlite:///{tmp_path / 'api.sqlite3'}", fake), fake)


def test_placed_and_softphone_calls_log_no_full_number(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls placed through the API (answered, refused by Twilio) and softphone calls (connected
    and refused) log the numbers masked, with no help from the filter."""
    caplog.set_level(logging.DEBUG)
    response = api.call(api.admin, to=CUSTOMER, flow="seguros")
    assert response.status_code == 201, response.text
    api.fake.answer(response.json()["sid"], api.client)
    api.fake.fail_next(
        status=400, code=21211, message=f"The 'To' number {CUSTOMER} is not a valid phone number."
    )
    assert api.call(api.admin, to=CUSTOMER, flow="seguros").status_code == 502
    assert api.call(api.admin, to="+447700900123", flow="seguros").status_code == 422
    softphone(api, "+34 612 34 56 78")
    softphone(api, "+34806123456")
    softphone(api, "612345678")
    logged = caplog.text
    for number in (CUSTOMER, "612345678", "+34806123456", "+447700900123"):
        assert number not in logged
    assert f"placed to {MASKED} for flow seguros" in logged
    assert f"not placed: Twilio refused the call: The 'To' number {MASKED} is not" in logged
    assert "refused POST /api/calls: +44*******123 is outside" in logged
    assert f"softphone ana calls {MASKED}" in logged
    assert "softphone ana refused: +34******456 is a blocked destination" in logged
    assert "softphone ana refused: '******678' is not a phone number" in logged
