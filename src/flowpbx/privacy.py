"""Phone numbers as logs show them: the country prefix and the last three digits, the rest
hidden ("+34******678"), so that a log can be read and shared without identifying a caller."""

from __future__ import annotations

import re
from typing import Final

# ITU-T E.164 country calling codes of one and two digits; every other code has three.
_SHORT_CODES: Final = frozenset(
    str(code)
    for code in (
        *(1, 7, 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49),
        *(51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86),
        *(90, 91, 92, 93, 94, 95, 98),
    )
)
_SEPARATORS: Final = re.compile(r"[\s().-]")
_DIGITS: Final = re.compile(r"\+?[0-9]+")
_KEPT: Final = 3
"""Trailing digits left visible: enough to tell two callers apart in a log, not to call one."""
_MIN_DIGITS: Final = 7
"""Shorter digit strings (extensions, short codes, typos) are hidden whole."""
_HIDDEN: Final = "***"
# A run of 7 to 15 digits, perhaps after a +, that is not part of a longer token: a sid, a
# Redis stream id (1764000000000-0), an address or a decimal number is left alone.
_IN_TEXT: Final = re.compile(r"(?<![\w+])(?<!\w[.:/-])\+?[0-9]{7,15}(?![\w+]|[.:/-]\w)")

_IN_URI: Final = re.compile(r"(?i)\b((?:sips?|tel):)(\+?[0-9]{7,15})(?![0-9])")
"""A number in a SIP or tel URI (sip:+34612345678@trunk), which _IN_TEXT leaves alone."""


def country_code(digits: str) -> str:
    """The country calling code that `digits` (an E.164 number without its +) starts with."""
    for length in (1, 2):
        if digits[:length] in _SHORT_CODES:
            return digits[:length]
    return digits[:3]


def mask_number(value: str) -> str:
    """`value` (a caller, a callee, a dial target) fit for a log: an E.164 number keeps its
    country code and last three digits ("+34612345678" -> "+34******678"); a softphone
    (`client:alice`) is not a phone number and stays; anything else is hidden."""
    value = value.strip()
    if not value or value.startswith("client:"):
        return value
    compact = _SEPARATORS.sub("", value)
    if not _DIGITS.fullmatch(compact):
        return _HIDDEN
    digits = compact.removeprefix("+")
    if len(digits) < _MIN_DIGITS:
        return _HIDDEN
    prefix = "+" + country_code(digits) if compact.startswith("+") else ""
    hidden = len(digits) - len(prefix.removeprefix("+")) - _KEPT
    return f"{prefix}{'*' * hidden}{digits[-_KEPT:]}"


def mask_numbers(text: str) -> str:
    """`text` with every phone number in it masked (see `mask_number`): for messages built
    from a number, such as a refusal's reason or an error Twilio returned. Every log line
    passes through it too (`flowpbx.logs`), as a safety net for numbers quoted from elsewhere."""
    text = _IN_URI.sub(lambda found: found.group(1) + mask_number(found.group(2)), text)
    return _IN_TEXT.sub(lambda found: mask_number(found.group()), text)
