"""Which numbers may be called: E.164 only, within the allowed prefixes, outside the blocked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")


def is_e164(number: str) -> bool:
    return E164.fullmatch(number) is not None


@dataclass(frozen=True, slots=True)
class Destinations:
    """`allowed` prefixes (empty: every country) minus `blocked` prefixes (premium numbers)."""

    allowed: tuple[str, ...]
    blocked: tuple[str, ...]

    def refusal(self, number: str) -> str | None:
        """Why `number` may not be called, or None when it may."""
        if not is_e164(number):
            return f"{number[:32]!r} is not a phone number in E.164 form, like +34912345678"
        if self.allowed and not number.startswith(self.allowed):
            return (
                f"{number} is outside the allowed destinations "
                f"({', '.join(self.allowed)}; FLOWPBX_CALL_ALLOWED_PREFIXES)"
            )
        blocked = next((p for p in self.blocked if number.startswith(p)), None)
        if blocked is not None:
            return (
                f"{number} is a blocked destination ({blocked}: premium-rate or otherwise "
                "barred; FLOWPBX_CALL_BLOCKED_PREFIXES)"
            )
        return None
