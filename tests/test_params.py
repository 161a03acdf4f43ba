"""Twilio's webhook parameters become the engine's own events and enums, in one place."""

from __future__ import annotations

import pytest

from flowpbx.engine.events import (
    DialEnded,
    DialResult,
    Direction,
    KeysPressed,
    NewCall,
    QueueKeysPressed,
    QueueLeft,
    QueueResult,
    QueueWaitTick,
    RecordingEnded,
)
from flowpbx.twilio import params
from flowpbx.twilio.params import BadWebhook

SID = "CA" + "a" * 32


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({}, "CallSid", id="missing"),
        pytest.param({"CallSid": "CA123"}, "CallSid", id="short"),
        pytest.param({"CallSid": "CA" + "a" * 32 + "\n"}, "CallSid", id="newline"),
        pytest.param({"CallSid": "CA" + "a" * 32, "From": "+34\x00"}, "From", id="control"),
    ],
)
def test_new_call_rejects_malformed(fields: dict[str, str], field: str) -> None:
    """Malformed call parameters name the field."""
    with pytest.raises(BadWebhook) as caught:
        params.new_call(fields)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        pytest.param("inbound", Direction.INBOUND, id="inbound"),
        pytest.param("outbound-api", Direction.OUTBOUND, id="rest-api"),
        pytest.param("outbound-dial", Direction.OUTBOUND, id="dial"),
        pytest.param("trunking-terminating", Direction.INBOUND, id="unknown"),
    ],
)
def test_new_call_direction(direction: str, expected: Direction) -> None:
    """Twilio's Direction becomes inbound or outbound."""
    fields = {"CallSid": SID, "From": "+34600111222", "To": "+34910000000", "Direction": direction}
    assert params.new_call(fields, "seguros") == NewCall(
        call_sid=SID,
        caller="+34600111222",
        called="+34910000000",
        direction=expected,
        flow="seguros",
    )


@pytest.mark.parametrize(
    ("status", "result"),
    [
        pytest.param("completed", DialResult.ANSWERED, id="completed"),
        pytest.param("answered", DialResult.ANSWERED, id="answered"),
        pytest.param("busy", DialResult.BUSY, id="busy"),
        pytest.param("no-answer", DialResult.NO_ANSWER, id="no-answer"),
        pytest.param("failed", DialResult.FAILED, id="failed"),
        pytest.param("canceled", DialResult.CANCELED, id="canceled"),
        pytest.param("some-new-status", DialResult.FAILED, id="unknown"),
    ],
)
def test_dial_status_mapping(status: str, result: DialResult) -> None:
    """Every DialCallStatus maps to a dial result; one Twilio adds later counts as failed."""
    fields = {"DialCallStatus": status, "DialCallDuration": "42"}
    assert params.dial_ended(fields) == DialEnded(result=result, duration=42)


@pytest.mark.parametrize(
    ("value", "result"),
    [
        pytest.param("bridged", QueueResult.BRIDGED, id="bridged"),
        pytest.param("bridging-in-process", QueueResult.BRIDGING, id="bridging"),
        pytest.param("redirected", QueueResult.REDIRECTED, id="redirected"),
        pytest.param("redirected-from-bridged", QueueResult.REDIRECTED, id="redirected-bridged"),
        pytest.param("hangup", QueueResult.HANGUP, id="hangup"),
        pytest.param("leave", QueueResult.LEAVE, id="leave"),
        pytest.param("queue-full", QueueResult.FULL, id="full"),
        pytest.param("error", QueueResult.ERROR, id="error"),
        pytest.param("system-error", QueueResult.ERROR, id="system-error"),
        pytest.param("system-shutdown", QueueResult.ERROR, id="unknown"),
    ],
)
def test_queue_result_mapping(value: str, result: QueueResult) -> None:
    """Every QueueResult maps to ours; Twilio's errors and unknown values are queue errors."""
    assert params.queue_left({"QueueResult": value, "QueueTime": "30"}) == QueueLeft(
        result=result, waited=30
    )


def test_every_enum_value_has_a_twilio_source() -> None:
    """No dial or queue result of ours is unreachable from Twilio's strings."""
    assert set(params.DIAL_RESULTS.values()) == set(DialResult)
    assert set(params.QUEUE_RESULTS.values()) == set(QueueResult)


def test_keys_of_any_length() -> None:
    """Digits are not capped: an input without max_digits takes what Twilio sends."""
    digits = "1234567890" * 20
    assert params.keys_pressed({"Digits": digits}) == KeysPressed(digits=digits)
    assert params.keys_pressed({}) == KeysPressed(digits="")
    with pytest.raises(BadWebhook):
        params.keys_pressed({"Digits": "12a"})


def test_recording_and_wait_parameters() -> None:
    """A recording's URL and duration, and a queue wait's time, are read; absent means none."""
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    ended = params.recording_ended({"RecordingUrl": url, "RecordingDuration": "-1"})
    assert ended == RecordingEnded(url=url, duration=0)
    assert params.recording_ended({}) == RecordingEnded(url="", duration=0)
    assert params.queue_wait_tick({"QueueTime": "65"}) == QueueWaitTick(waited=65)
    assert params.queue_wait_tick({}) == QueueWaitTick(waited=0)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param({"seq": "3"}, (None, None), id="none"),
        pytest.param(
            {"seq": "3", "flow": "seguros", "node": "agente"}, ("seguros", "agente"), id="both"
        ),
    ],
)
def test_wait_node(query: dict[str, str], expected: tuple[str | None, str | None]) -> None:
    """A wait URL names its flow and enqueue node, or nothing."""
    assert params.wait_node(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"seq": "3", "node": "Agente"}, id="uppercase"),
        pytest.param({"seq": "3", "flow": "../x"}, id="path"),
    ],
)
def test_wait_node_rejects_malformed(query: dict[str, str]) -> None:
    """A flow or node name that flowpbx could not have written is refused."""
    with pytest.raises(BadWebhook):
        params.wait_node(query)


@pytest.mark.parametrize("value", ["", "abc", "1٣", "1" * 10, "-1"])
def test_sequence_rejects_malformed(value: str) -> None:
    """seq is 1-9 ASCII digits."""
    with pytest.raises(BadWebhook):
        params.sequence({"seq": value})


def test_dial_recording_url_is_kept() -> None:
    """A recorded dial's RecordingUrl reaches the dial's end event."""
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    fields = {"DialCallStatus": "completed", "DialCallDuration": "7", "RecordingUrl": url}
    assert params.dial_ended(fields) == DialEnded(
        result=DialResult.ANSWERED, duration=7, recording_url=url
    )


def test_queue_keys_carry_a_typed_number() -> None:
    """Keys pressed in a queue: one key, a callback number with its '#', or nothing."""
    assert params.queue_keys_pressed({"Digits": "0"}) == QueueKeysPressed(digits="0")
    typed = params.queue_keys_pressed({"Digits": "612345678#"})
    assert typed == QueueKeysPressed(digits="612345678#")
    assert params.queue_keys_pressed({}) == QueueKeysPressed(digits="")
    with pytest.raises(BadWebhook) as caught:
        params.queue_keys_pressed({"Digits": "+34612345678"})
    assert caught.value.field == "Digits"


def test_queue_sid_is_twilios_or_none() -> None:
    """A wait request's QueueSid is read as sent; absent is ''; anything else is refused."""
    sid = "QU" + "0f" * 16
    assert params.queue_sid({"QueueSid": sid}) == sid
    assert params.queue_sid({}) == ""
    with pytest.raises(BadWebhook):
        params.queue_sid({"QueueSid": "QU123"})


def test_reservation_is_required_and_well_formed() -> None:
    """A queue leg's reservation is 32 lowercase hex digits; missing or other is refused."""
    res = "0123456789abcdef" * 2
    assert params.reservation({"res": res}) == res
    for query in ({}, {"res": res.upper()}, {"res": res[:-1]}):
        with pytest.raises(BadWebhook) as caught:
            params.reservation(query)
        assert caught.value.field == "res"


def test_queue_place_reads_where_the_caller_waits() -> None:
    """A queue leg's URL names the queue, step, flow and enqueue node of the caller."""
    query = {"queue": "general-queue", "seq": "4", "flow": "seguros", "node": "agente"}
    assert params.queue_place(query) == params.QueuePlace("general-queue", 4, "seguros", "agente")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param(
            {"queue": "general-queue", "seq": "4", "flow": "seguros"}, "node", id="no-node"
        ),
        pytest.param(
            {"queue": "general-queue", "seq": "4", "node": "agente"}, "node", id="no-flow"
        ),
        pytest.param({"seq": "4", "flow": "seguros", "node": "agente"}, "queue", id="no-queue"),
        pytest.param(
            {"queue": "Cola General", "seq": "4", "flow": "seguros", "node": "agente"},
            "queue",
            id="bad-queue",
        ),
        pytest.param(
            {"queue": "general-queue", "seq": "x", "flow": "seguros", "node": "agente"},
            "seq",
            id="bad-seq",
        ),
    ],
)
def test_queue_place_rejects_malformed(query: dict[str, str], field: str) -> None:
    """A place flowpbx could not have written is refused, naming what is wrong."""
    with pytest.raises(BadWebhook) as caught:
        params.queue_place(query)
    assert caught.value.field == field
