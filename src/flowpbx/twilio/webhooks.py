"""The only module that knows Twilio's webhook parameters and signatures."""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_plus

from starlette.requests import Request
from twilio.request_validator import RequestValidator

from flowpbx.engine.interpreter import DialEnded, KeysPressed, QueueLeft, RecordingEnded
from flowpbx.errors import FlowpbxError
from flowpbx.settings import Network

SIGNATURE_HEADER = "X-Twilio-Signature"
_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_DIGITS = re.compile(r"[0-9*#]{0,64}")
_PARTY = re.compile(r"[^\x00-\x1f\x7f]{0,256}")
_STATUS = re.compile(r"[a-z-]{1,32}")
_SECONDS = re.compile(r"[0-9]{1,9}")
_DURATION = re.compile(r"-?[0-9]{1,9}")
_RECORDING_URL = re.compile(r"(https?://[^\s\x00-\x1f\x7f]{1,2000})?")
_SEQ = re.compile(r"[0-9]{1,9}")


class BadWebhook(FlowpbxError):
    """Parameters that are missing or malformed: answered 400, nothing executed."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _is_trusted(client: str | None, proxies: Sequence[Network]) -> bool:
    if client is None or not proxies:
        return False
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in network for network in proxies)


def public_url(request: Request, base_url: str, trusted_proxies: Sequence[Network]) -> str:
    """The URL Twilio requested and signed: the configured base, else trusted proxy headers."""
    query = request.url.query
    suffix = request.url.path + (f"?{query}" if query else "")
    if base_url:
        return base_url + suffix
    scheme, host = request.url.scheme, request.headers.get("host", request.url.netloc)
    if _is_trusted(request.client.host if request.client else None, trusted_proxies):
        scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
        host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
    return f"{scheme}://{host}{suffix}"


def base_of(url: str, path: str) -> str:
    """The public base URL (scheme, host and any prefix) of a URL built by `public_url`."""
    return url.split("?", 1)[0].removesuffix(path)


class Form(dict[str, list[str]]):
    """A webhook's form fields with every value kept, in the shape the twilio library's
    RequestValidator reads (`getall`): a signature covers repeated and blank fields too."""

    def getall(self, name: str) -> list[str]:
        return self[name]

    @property
    def first(self) -> dict[str, str]:
        """One value per field, for reading parameters."""
        return {name: values[0] for name, values in self.items()}


class SignatureChecker:
    """Checks X-Twilio-Signature with the twilio library, over every parameter received."""

    def __init__(self, auth_token: str) -> None:
        self.validator = RequestValidator(auth_token)

    def is_valid(self, url: str, form: Form, signature: str) -> bool:
        if not signature:
            return False
        # The URL exactly as received matches in the common case: one HMAC. Otherwise the
        # library's full check, which also tries the URL with and without a default port.
        computed = self.validator.compute_signature(url, form)
        if hmac.compare_digest(computed.encode(), signature.encode()):
            return True
        return bool(self.validator.validate(url, form, signature))


@dataclass(frozen=True, slots=True)
class CallParams:
    """The parameters every voice webhook carries that flowpbx uses."""

    call_sid: str
    caller: str
    called: str


def parse_form(body: bytes) -> Form | None:
    """A form-urlencoded body as Twilio sent it: every value, repeated and blank ones too."""
    form = Form()
    try:
        for pair in body.decode("utf-8").split("&"):
            if not pair:
                continue
            name, _, value = pair.partition("=")
            # Most fields need no decoding; unquoting all of them is a sixth of a step's time.
            if "%" in name or "+" in name:
                name = unquote_plus(name, errors="strict")
            if "%" in value or "+" in value:
                value = unquote_plus(value, errors="strict")
            form.setdefault(name, []).append(value)
    except UnicodeDecodeError:
        return None
    return form


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


def call_params(form: Mapping[str, str]) -> CallParams:
    """What a new call is: its CallSid, who calls (From) and the number dialled (To)."""
    return CallParams(
        call_sid=call_sid(form),
        caller=_one(form, "From", _PARTY, ""),
        called=_one(form, "To", _PARTY, ""),
    )


def sequence(query: Mapping[str, str]) -> int:
    value = query.get("seq", "")
    if not _SEQ.fullmatch(value):
        raise BadWebhook("seq", f"expected the step number flowpbx put in the URL, got {value!r}")
    return int(value)


def keys_pressed(form: Mapping[str, str]) -> KeysPressed:
    return KeysPressed(_one(form, "Digits", _DIGITS, ""))


def dial_ended(form: Mapping[str, str]) -> DialEnded:
    return DialEnded(_one(form, "DialCallStatus", _STATUS, None))


def queue_left(form: Mapping[str, str]) -> QueueLeft:
    return QueueLeft(_one(form, "QueueResult", _STATUS, None))


def queue_time(form: Mapping[str, str]) -> int:
    return int(_one(form, "QueueTime", _SECONDS, "0"))


def recording_ended(form: Mapping[str, str]) -> RecordingEnded:
    url = _one(form, "RecordingUrl", _RECORDING_URL, "")
    duration = _one(form, "RecordingDuration", _DURATION, "0")
    return RecordingEnded(url, max(0, int(duration)))
