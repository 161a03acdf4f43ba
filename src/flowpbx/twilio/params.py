"""The only module that knows Twilio's webhook parameters: their names, their formats, and
the strings Twilio reports, mapped here, in one place, to the engine's own events and enums."""

from __future__ import annotations

import email.utils
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

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
from flowpbx.engine.progress import (
    CallProgress,
    CallStatus,
    RecordingProgress,
    RecordingStatus,
    Report,
)
from flowpbx.errors import FlowpbxError

_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_DIGITS = re.compile(r"[0-9*#]*")
"""Keys: as many as Twilio sends (an input without max_digits takes any length)."""
_PARTY = re.compile(r"[^\x00-\x1f\x7f]{0,256}")
_STATUS = re.compile(r"[a-z-]{1,32}")
_SECONDS = re.compile(r"[0-9]{1,9}")
_DURATION = re.compile(r"-?[0-9]{1,9}")
_RECORDING_URL = re.compile(r"(https?://[^\s\x00-\x1f\x7f]{1,2000})?")
_SEQ = re.compile(r"[0-9]{1,9}")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_IDENTITY = re.compile(r"[A-Za-z0-9_]{1,121}")
_PARENT_SID = re.compile(r"(CA[0-9a-fA-F]{32})?")
_RECORDING_SID = re.compile(r"RE[0-9a-fA-F]{32}")
_PRICE = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,9})?")
_UNIT = re.compile(r"[A-Za-z]{3}")
_CHANNELS = re.compile(r"[12]")
_WORD = re.compile(r"[A-Za-z0-9_-]{0,40}")
_TIMESTAMP = re.compile(r"[^\x00-\x1f\x7f]{0,64}")

DIAL_RESULTS: Mapping[str, DialResult] = MappingProxyType(
    {
        "completed": DialResult.ANSWERED,
        "answered": DialResult.ANSWERED,  # a <Dial><Conference> that was joined
        "busy": DialResult.BUSY,
        "no-answer": DialResult.NO_ANSWER,
        "failed": DialResult.FAILED,
        "canceled": DialResult.CANCELED,
    }
)
"""DialCallStatus; anything else Twilio may add later counts as failed."""

QUEUE_RESULTS: Mapping[str, QueueResult] = MappingProxyType(
    {
        "bridged": QueueResult.BRIDGED,
        "bridging-in-process": QueueResult.BRIDGING,
        "redirected": QueueResult.REDIRECTED,
        "redirected-from-bridged": QueueResult.REDIRECTED,
        "hangup": QueueResult.HANGUP,
        "leave": QueueResult.LEAVE,
        "queue-full": QueueResult.FULL,
        "error": QueueResult.ERROR,
        "system-error": QueueResult.ERROR,
    }
)
"""QueueResult; anything else counts as an error of the queue."""

DIRECTIONS: Mapping[str, Direction] = MappingProxyType(
    {
        "inbound": Direction.INBOUND,
        "outbound-api": Direction.OUTBOUND,
        "outbound-dial": Direction.OUTBOUND,
    }
)


class BadWebhook(FlowpbxError):
    """Parameters that are missing or malformed: answered 400, nothing executed."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _one(form: Mapping[str, str], name: str, pattern: re.Pattern[str], default: str | None) -> str:
    value = form.get(name)
    if value is None:
        if default is None:
            raise BadWebhook(name, "missing")
        return default
    if not pattern.fullmatch(value):
        raise BadWebhook(name, f"malformed value {value[:40]!r}")
    return value


def call_sid(form: Mapping[str, str]) -> str:
    return _one(form, "CallSid", _CALL_SID, None)


def call_sid_for_log(form: Mapping[str, str]) -> str:
    """The CallSid as sent, for a log line about a request that was not accepted."""
    return form.get("CallSid", "?")[:40]


def well_formed_call_sid(form: Mapping[str, str]) -> str | None:
    """The CallSid if it is one (CA and 32 hex digits), else None: the log lines of a webhook
    carry it as their `call_sid` (`flowpbx.logs`), even before its signature is checked."""
    value = form.get("CallSid")
    return value if value is not None and _CALL_SID.fullmatch(value) else None


def new_call(form: Mapping[str, str], flow: str | None = None) -> NewCall:
    """The call a webhook belongs to: its CallSid, who calls (From), the number called (To)."""
    direction = DIRECTIONS.get(form.get("Direction", "inbound"), Direction.INBOUND)
    return NewCall(
        call_sid=call_sid(form),
        caller=_one(form, "From", _PARTY, ""),
        called=_one(form, "To", _PARTY, ""),
        direction=direction,
        flow=flow,
    )


def sequence(query: Mapping[str, str]) -> int:
    """The step a webhook answers, from the `seq` flowpbx put in its URL."""
    value = query.get("seq", "")
    if not _SEQ.fullmatch(value):
        raise BadWebhook("seq", f"expected the step number flowpbx put in the URL, got {value!r}")
    return int(value)


def wait_node(query: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The flow and enqueue node a queue's wait URL names (None when it names none)."""
    flow, node = query.get("flow"), query.get("node")
    if flow is not None and not _NAME.fullmatch(flow):
        raise BadWebhook("flow", f"malformed value {flow[:40]!r}")
    if node is not None and not _NAME.fullmatch(node):
        raise BadWebhook("node", f"malformed value {node[:40]!r}")
    return flow, node


def keys_pressed(form: Mapping[str, str]) -> KeysPressed:
    return KeysPressed(digits=_one(form, "Digits", _DIGITS, ""))


def dial_ended(form: Mapping[str, str]) -> DialEnded:
    status = _one(form, "DialCallStatus", _STATUS, None)
    duration = int(_one(form, "DialCallDuration", _SECONDS, "0"))
    recording = _one(form, "RecordingUrl", _RECORDING_URL, "")
    result = DIAL_RESULTS.get(status, DialResult.FAILED)
    return DialEnded(result=result, duration=duration, recording_url=recording)


def queue_left(form: Mapping[str, str]) -> QueueLeft:
    result = _one(form, "QueueResult", _STATUS, None)
    waited = int(_one(form, "QueueTime", _SECONDS, "0"))
    return QueueLeft(result=QUEUE_RESULTS.get(result, QueueResult.ERROR), waited=waited)


def queue_wait_tick(form: Mapping[str, str]) -> QueueWaitTick:
    return QueueWaitTick(waited=int(_one(form, "QueueTime", _SECONDS, "0")))


def queue_keys_pressed(form: Mapping[str, str]) -> QueueKeysPressed:
    return QueueKeysPressed(digits=_one(form, "Digits", _DIGITS, ""))


def recording_ended(form: Mapping[str, str]) -> RecordingEnded:
    url = _one(form, "RecordingUrl", _RECORDING_URL, "")
    duration = _one(form, "RecordingDuration", _DURATION, "0")
    return RecordingEnded(url=url, duration=max(0, int(duration)))


_CALLBACK_FACTS = {
    "CallStatus": "call_status",
    "CallDuration": "call_duration",
    "SequenceNumber": "sequence_number",
    "RecordingSid": "recording_sid",
    "RecordingStatus": "recording_status",
    "RecordingDuration": "recording_duration",
}


def callback_summary(form: Mapping[str, str]) -> dict[str, str]:
    """The facts of a status callback worth a log line, as the line's fields (`extra=`): its
    status, duration and sequence number, a recording's sid. Not the numbers, not the
    signature; the CallSid is already on every line of the webhook."""
    return {field: form[name][:64] for name, field in _CALLBACK_FACTS.items() if name in form}


def pinned_flow(query: Mapping[str, str]) -> str | None:
    """The flow a step URL names (`&flow=`, on calls flowpbx placed), else None."""
    flow = query.get("flow")
    if flow is not None and not _NAME.fullmatch(flow):
        raise BadWebhook("flow", f"malformed value {flow[:40]!r}")
    return flow


def outbound_flow(query: Mapping[str, str]) -> str:
    """The flow an outbound call's answer URL names (`?flow=`)."""
    flow = query.get("flow", "")
    if not _NAME.fullmatch(flow):
        raise BadWebhook("flow", f"expected the flow flowpbx put in the URL, got {flow[:40]!r}")
    return flow


def connect_identity(query: Mapping[str, str]) -> str:
    """The softphone a connect URL names (`?identity=`)."""
    identity = query.get("identity", "")
    if not _IDENTITY.fullmatch(identity):
        raise BadWebhook("identity", f"expected a softphone identity, got {identity[:40]!r}")
    return identity


def _time(form: Mapping[str, str], name: str) -> float | None:
    """An RFC 2822 date (Twilio's Timestamp, RecordingStartTime) as Unix time; None when
    absent or unreadable (a date is worth keeping the callback for, not refusing it)."""
    value = _one(form, name, _TIMESTAMP, "")
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None or not 2000 <= moment.year <= 2100:
        return None  # not a date Twilio would send: the time it was received stands in
    return moment.timestamp()


def _price(form: Mapping[str, str]) -> int | None:
    value = _one(form, "Price", _PRICE, "") or _one(form, "CallPrice", _PRICE, "")
    if not value:
        return None
    try:
        return int(Decimal(value) * 1_000_000)
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        return None


def without_credentials(url: str) -> str:
    """A URL with any user:password@ removed: recording URLs are kept and shown as they are."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def recording_sid_in(url: str) -> str | None:
    """The RecordingSid at the end of a Twilio recording URL (…/Recordings/RE…), if any."""
    match = re.search(r"/Recordings/(RE[0-9a-fA-F]{32})(?:\.[a-z0-9]{2,4})?$", url)
    return match.group(1) if match else None


def call_progress(form: Mapping[str, str], received: float) -> Report:
    """A call status callback: CallStatus, SequenceNumber, Timestamp, CallDuration, Price."""
    sid = call_sid(form)
    value = _one(form, "CallStatus", _STATUS, None)
    try:
        status = CallStatus(value)
    except ValueError:
        raise BadWebhook("CallStatus", f"unknown status {value!r}") from None
    sequence = _one(form, "SequenceNumber", _SEQ, "")
    duration = _one(form, "CallDuration", _SECONDS, "")
    progress = CallProgress(
        status=status,
        sequence=int(sequence) if sequence else -1,
        timestamp=_time(form, "Timestamp"),
        caller=_one(form, "From", _PARTY, ""),
        called=_one(form, "To", _PARTY, ""),
        direction=DIRECTIONS.get(form.get("Direction", "inbound"), Direction.INBOUND),
        parent_sid=_one(form, "ParentCallSid", _PARENT_SID, ""),
        duration=int(duration) if duration else None,
        price_micros=_price(form),
        price_unit=_one(form, "PriceUnit", _UNIT, "").upper(),
    )
    return Report.of(sid, progress, received)


def recording_progress(form: Mapping[str, str], received: float) -> Report:
    """A recording status callback (its CallSid is the parent call's)."""
    sid = call_sid(form)
    value = _one(form, "RecordingStatus", _STATUS, None)
    try:
        status = RecordingStatus(value)
    except ValueError:
        raise BadWebhook("RecordingStatus", f"unknown status {value!r}") from None
    duration = _one(form, "RecordingDuration", _DURATION, "")
    channels = _one(form, "RecordingChannels", _CHANNELS, "")
    progress = RecordingProgress(
        recording_sid=_one(form, "RecordingSid", _RECORDING_SID, None),
        status=status,
        url=without_credentials(_one(form, "RecordingUrl", _RECORDING_URL, "")),
        duration=max(0, int(duration)) if duration else None,
        channels=int(channels) if channels else None,
        source=_one(form, "RecordingSource", _WORD, ""),
        started=_time(form, "RecordingStartTime"),
        error_code=_one(form, "ErrorCode", _WORD, "")[:10],
    )
    return Report.of(sid, progress, received)


# -- the queue engine's legs --

_QUEUE_SID = re.compile(r"(QU[0-9a-fA-F]{32})?")
_RESERVATION = re.compile(r"[0-9a-f]{32}")
_QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def queue_sid(form: Mapping[str, str]) -> str:
    """Twilio's QueueSid of a wait request ('' when it sends none)."""
    return _one(form, "QueueSid", _QUEUE_SID, "")


def reservation(query: Mapping[str, str]) -> str:
    """The reservation a queue leg's URL names."""
    return _one(query, "res", _RESERVATION, None)


@dataclass(frozen=True, slots=True)
class QueuePlace:
    """Where a caller waits, as a queue leg's URL says: to put them back in the queue."""

    queue: str
    seq: int
    flow: str
    node: str


def queue_place(query: Mapping[str, str]) -> QueuePlace:
    flow, node = wait_node(query)
    if flow is None or node is None:
        raise BadWebhook("node", "the URL names no flow and enqueue node")
    return QueuePlace(_one(query, "queue", _QUEUE_NAME, None), sequence(query), flow, node)


def call_status(form: Mapping[str, str]) -> CallStatus:
    value = _one(form, "CallStatus", _STATUS, None)
    try:
        return CallStatus(value)
    except ValueError:
        raise BadWebhook("CallStatus", f"unknown status {value!r}") from None


def call_duration(form: Mapping[str, str]) -> int:
    return int(_one(form, "CallDuration", _SECONDS, "0"))
