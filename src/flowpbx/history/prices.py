"""What calls cost: Twilio's status callbacks carry no price, and Twilio prices a call shortly
after it ends. The price filler asks Twilio's REST API for the price of recently ended calls
that have none yet, a few times each, and stores it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Protocol

from sqlalchemy import select, update

from flowpbx.db.database import Database
from flowpbx.db.models import Call
from flowpbx.twilio.rest import TwilioFailure

log = logging.getLogger("flowpbx.history")

EVERY_SECONDS = 60.0
SETTLE_SECONDS = 30
"""Twilio prices a call after it ends: the first question waits this long."""
GIVE_UP_HOURS = 48
"""Calls ended longer ago than this without a price are not asked about any more."""
RETRY_SECONDS = 600.0
"""The same call is asked about again after this long."""
ATTEMPTS = 6
"""Times a call is asked about before it is left unpriced (an hour of tries)."""
PER_ROUND = 50


class Prices(Protocol):
    async def call_price(self, sid: str) -> tuple[str, str] | None: ...


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def micros(price: str) -> int | None:
    """Twilio's decimal string ("-0.01700") in millionths; None if it is not a number."""
    try:
        return int(Decimal(price) * 1_000_000)
    except InvalidOperation:
        return None


def unpriced(db: Database, now: dt.datetime, limit: int) -> list[str]:
    """Calls that ended between GIVE_UP_HOURS and SETTLE_SECONDS ago with no price, newest
    first."""
    with db.session() as session:
        query = (
            select(Call.sid)
            .where(
                # Twilio bills (and prices) calls that were connected: completed, with time.
                Call.status == "completed",
                Call.duration > 0,
                Call.price_micros.is_(None),
                Call.ended_at > now - dt.timedelta(hours=GIVE_UP_HOURS),
                Call.ended_at < now - dt.timedelta(seconds=SETTLE_SECONDS),
            )
            .order_by(Call.ended_at.desc())
            .limit(limit)
        )
        return list(session.scalars(query))


def store_price(db: Database, sid: str, price_micros: int, unit: str) -> None:
    with db.session() as session:
        session.execute(
            update(Call)
            .where(Call.sid == sid, Call.price_micros.is_(None))
            .values(price_micros=price_micros, price_unit=unit[:3])
        )


@dataclass
class PriceFiller:
    db: Database
    rest: Prices
    clock: Callable[[], dt.datetime] = utc_now
    asked: dict[str, float] = field(default_factory=dict)
    """When each call was last asked about (monotonic seconds)."""
    done: dict[str, float] = field(default_factory=dict)
    """Calls not asked about again (Twilio does not know them, or gave no price in ATTEMPTS
    tries), with when that was decided; forgotten after GIVE_UP_HOURS, as the query stops
    finding them."""
    tries: dict[str, int] = field(default_factory=dict)

    async def fill_once(self) -> int:
        """One round: ask about the calls due; how many got their price."""
        now = time.monotonic()
        self.asked = {sid: at for sid, at in self.asked.items() if now - at < RETRY_SECONDS}
        horizon = GIVE_UP_HOURS * 3600
        self.done = {sid: at for sid, at in self.done.items() if now - at < horizon}
        skipped = len(self.asked) + len(self.done)
        sids = await self.db.run(unpriced, self.db, self.clock(), PER_ROUND + skipped)
        pending = set(sids) | set(self.asked)
        self.tries = {sid: n for sid, n in self.tries.items() if sid in pending}
        priced = 0
        due = [s for s in sids if s not in self.asked and s not in self.done]
        for sid in due[:PER_ROUND]:
            self.asked[sid] = now
            self.tries[sid] = self.tries.get(sid, 0) + 1
            if self.tries[sid] >= ATTEMPTS:
                self.done[sid] = now
            try:
                found = await self.rest.call_price(sid)
            except TwilioFailure as exc:
                if exc.status == 404:
                    log.info(
                        "call %s: Twilio does not know it; no price",
                        sid,
                        extra={"call_sid": sid},
                    )
                    self.done[sid] = now
                    continue
                log.warning("call prices: %s; trying again later", exc)
                return priced
            if found is None:
                continue
            amount = micros(found[0])
            if amount is not None:
                await self.db.run(store_price, self.db, sid, amount, found[1])
                priced += 1
        return priced

    async def run(self) -> None:
        """Until cancelled: a round a minute; a failing database is retried next round."""
        while True:
            try:
                await self.fill_once()
            except Exception as exc:
                log.warning("call prices: %s; trying again in %d s", exc, EVERY_SECONDS)
            await asyncio.sleep(EVERY_SECONDS)
