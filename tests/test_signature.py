"""Webhook signatures and forms, checked with the twilio library's own signing."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from flowpbx.twilio.signature import Form, SignatureChecker, parse_form

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def _form(params: dict[str, str]) -> Form:
    return Form({k: [v] for k, v in params.items()})


def test_signature_matches_twilio_documented_example() -> None:
    """Twilio's published example (token 12345) validates."""
    checker = SignatureChecker(TOKEN)
    assert checker.is_valid(URL, _form(PARAMS), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


@pytest.mark.parametrize(
    ("url", "params", "signature"),
    [
        pytest.param(URL, {**PARAMS, "Digits": "9"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", id="changed"),
        pytest.param(URL + "&x=1", PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", id="other-url"),
        pytest.param(URL, PARAMS, "", id="missing"),
        pytest.param(URL, PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ", id="truncated"),
    ],
)
def test_signature_rejects_anything_else(url: str, params: dict[str, str], signature: str) -> None:
    """A changed parameter, another URL or a missing or cut signature fails."""
    assert not SignatureChecker(TOKEN).is_valid(url, _form(params), signature)


def test_signature_accepts_default_port_variants() -> None:
    """Twilio may sign https://host:443/x or https://host/x; both are accepted."""
    signed = RequestValidator(TOKEN).compute_signature("https://pbx.example.com:443/x", PARAMS)
    assert SignatureChecker(TOKEN).is_valid("https://pbx.example.com/x", _form(PARAMS), signed)


def test_signature_covers_repeated_and_blank_fields() -> None:
    """Repeated keys and blank values are part of what Twilio signs."""
    form = parse_form(b"A=1&A=2&CallerZip=&B=x")
    assert form == {"A": ["1", "2"], "CallerZip": [""], "B": ["x"]}
    signed = RequestValidator(TOKEN).compute_signature(URL, form)
    checker = SignatureChecker(TOKEN)
    assert checker.is_valid(URL, form, signed)
    assert not checker.is_valid(URL, Form({"A": ["1"], "CallerZip": [""], "B": ["x"]}), signed)


def test_parse_form_rejects_bytes_that_are_not_utf8() -> None:
    """A body that is not UTF-8, raw or percent-encoded, is not a Twilio form."""
    assert parse_form(b"From=%C3%B1") == {"From": ["ñ"]}
    assert parse_form(b"From=%FF") is None
    assert parse_form(b"From=\xff") is None
