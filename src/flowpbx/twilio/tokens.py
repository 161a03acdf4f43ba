"""Access tokens for the browser softphone (Twilio Voice SDK), made by the twilio library."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

MAX_TTL: Final = 24 * 3600
"""Twilio refuses access tokens that live longer than 24 hours."""
IDENTITY_MAX: Final = 121
IDENTITY: Final = re.compile(rf"[A-Za-z0-9_]{{1,{IDENTITY_MAX}}}")
"""A Twilio Client identity: letters, digits and underscores only (anything else and the
device can neither place nor receive calls), at most 121 characters."""


def is_identity(value: str) -> bool:
    return IDENTITY.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    """Signs Voice access tokens with an API key (SK…) and its secret, for one TwiML App."""

    account_sid: str
    api_key: str
    api_secret: str = field(repr=False)
    twiml_app_sid: str
    ttl: int = 3600

    def __post_init__(self) -> None:
        if not 60 <= self.ttl <= MAX_TTL:
            raise ValueError(f"token ttl {self.ttl} s: expected 60 to {MAX_TTL} s")

    def issue(self, identity: str) -> str:
        """A JWT letting `identity` place calls through the TwiML App and receive calls."""
        if not is_identity(identity):
            raise ValueError(f"not a client identity: {identity[:40]!r}")
        token = AccessToken(
            self.account_sid, self.api_key, self.api_secret, identity=identity, ttl=self.ttl
        )
        token.add_grant(
            VoiceGrant(outgoing_application_sid=self.twiml_app_sid, incoming_allow=True)
        )
        jwt: str = token.to_jwt()
        return jwt
