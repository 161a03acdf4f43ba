"""Twilio's webhook signatures: the form as Twilio sent it, the URL it signed, and the check."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from urllib.parse import unquote_plus

from starlette.requests import Request
from twilio.request_validator import RequestValidator

from flowpbx.settings import Network

SIGNATURE_HEADER = "X-Twilio-Signature"


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
        try:
            return bool(self.validator.validate(url, form, signature))
        except ValueError:
            return False  # a URL the library cannot take apart (e.g. a bad port in Host)
