"""API keys: made once and shown once, kept as a SHA-256 hash, found by their public prefix.

A key reads `fpbx_<prefix>_<secret>`: the prefix (8 hex digits) names the key in lists and
logs; the secret (256 random bits) is never stored or logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowpbx.db.database import Database
from flowpbx.db.models import ApiKey
from flowpbx.errors import FlowpbxError
from flowpbx.twilio.tokens import IDENTITY_MAX, is_identity

_KEY = re.compile(r"fpbx_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")
TOUCH_EVERY = dt.timedelta(minutes=1)
"""`last_used_at` is written at most this often per key, not on every request."""


class ApiKeyError(FlowpbxError):
    """A key cannot be made or found as asked."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What is known of a key, without its secret."""

    id: int
    name: str
    prefix: str
    identity: str | None
    admin: bool
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def label(self) -> str:
        """How logs name the key: its name and public prefix."""
        return f"{self.name!r} (fpbx_{self.prefix})"

    def may_act_for(self, identity: str | None) -> bool:
        """An admin key acts for anyone; another only for its own identity."""
        return self.admin or (identity is not None and identity == self.identity)


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        identity=row.identity,
        admin=row.admin,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def prefix_of(key: str) -> str | None:
    """The public prefix of a well-formed key, else None."""
    match = _KEY.fullmatch(key)
    return match.group(1) if match else None


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 100 or not name.isprintable():
        raise ApiKeyError(f"key name {name[:40]!r}: expected 1 to 100 printable characters")
    return name


def check_identity(identity: str) -> str:
    if not is_identity(identity):
        raise ApiKeyError(
            f"identity {identity[:40]!r}: expected letters, digits and underscores only, "
            f"at most {IDENTITY_MAX} characters (a Twilio client identity)"
        )
    return identity


def create(
    db: Database, name: str, *, identity: str | None, admin: bool, now: dt.datetime
) -> tuple[KeyInfo, str]:
    """A new key: its description, and the key itself (to show once)."""
    name = check_name(name)
    if identity is not None:
        check_identity(identity)
    with db.session() as session:
        taken = session.scalar(
            select(ApiKey.id).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        )
        if taken is not None:
            raise ApiKeyError(
                f"a key named {name!r} exists already: revoke it or pick another name"
            )
        while True:
            prefix = secrets.token_hex(4)
            if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
                break
        key = f"fpbx_{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKey(
            name=name,
            prefix=prefix,
            secret_hash=_hash(key),
            identity=identity,
            admin=admin,
            created_at=now,
        )
        session.add(row)
        session.flush()
        return _info(row), key


def list_keys(
    db: Database, *, include_revoked: bool = False, after: int = 0, limit: int = 1000
) -> list[KeyInfo]:
    """Keys in the order they were made, from id `after` on."""
    query = select(ApiKey).where(ApiKey.id > after).order_by(ApiKey.id).limit(limit)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    with db.session() as session:
        return [_info(row) for row in session.scalars(query)]


def _find(session: Session, which: str) -> ApiKey | None:
    """A key by its id, its prefix (with or without `fpbx_`), or its name (active keys).
    Refused when these name different keys ('12345678' as an id, a prefix and a name)."""
    which = which.strip()
    whole = prefix_of(which)  # the whole key pasted: its prefix names it
    if whole is not None:
        which = whole
    by_id = session.get(ApiKey, int(which)) if which.isdigit() and len(which) < 10 else None
    prefix = which.removeprefix("fpbx_")
    by_prefix = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    by_name = session.scalar(
        select(ApiKey).where(ApiKey.name == which, ApiKey.revoked_at.is_(None))
    )
    found = {row.id: row for row in (by_id, by_prefix, by_name) if row is not None}
    if len(found) > 1:
        named = ", ".join(f"{row.name!r} (id {row.id})" for row in found.values())
        raise ApiKeyError(
            f"{which!r} could mean several keys: {named}; give its prefix fpbx_xxxxxxxx"
        )
    return next(iter(found.values()), None)


def revoke(db: Database, which: str, *, now: dt.datetime) -> KeyInfo:
    """Revoke a key (by id, prefix, name or the whole key); it stops working at once."""
    with db.session() as session:
        row = _find(session, which)
        if row is None:
            shown = f"fpbx_{prefix_of(which)}" if prefix_of(which) else repr(which[:40])
            raise ApiKeyError(
                f"no active key {shown}: give its id, its prefix or its name "
                "(flowpbx apikey list --all shows them)"
            )
        if row.revoked_at is not None:
            when = f"{row.revoked_at:%Y-%m-%d %H:%M} UTC"
            raise ApiKeyError(f"key {_info(row).label} was revoked already, on {when}")
        row.revoked_at = now
        return _info(row)


def verify(db: Database, key: str, now: dt.datetime) -> tuple[KeyInfo | None, str]:
    """The key's description if it is valid and not revoked; else None and why (for logs,
    never containing the key)."""
    prefix = prefix_of(key)
    if prefix is None:
        return None, "malformed key"
    with db.session() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None:
            return None, f"unknown key fpbx_{prefix}"
        if not hmac.compare_digest(row.secret_hash, _hash(key)):
            return None, f"wrong secret for key {_info(row).label}"
        if row.revoked_at is not None:
            return None, f"revoked key {_info(row).label}"
        if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
            row.last_used_at = now
        return _info(row), ""
