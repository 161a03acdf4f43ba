"""Who may be called, and at what pace: destination rules, softphone routing, and the pace
shared by every process through a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from flowpbx.dialing.pacer import MemoryPacer
from flowpbx.dialing.rules import Destinations
from flowpbx.dialing.softphone import Connect, Refuse, caller_identity, route
from flowpbx.settings import DEFAULT_ALLOWED_PREFIXES, DEFAULT_BLOCKED_PREFIXES
from flowpbx.store.pacer import RedisPacer, pace_key
from servers import RedisServer, redis_server

SPAIN = Destinations(DEFAULT_ALLOWED_PREFIXES, DEFAULT_BLOCKED_PREFIXES)
COMPANY = "+34910000000"


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("+34612345678", None),
        ("+34912345678", None),
        ("+34803123456", "blocked destination (+34803"),
        ("+34806123456", "blocked destination (+34806"),
        ("+34807123456", "blocked destination (+34807"),
        ("+34905123456", "blocked destination (+34905"),
        ("+34701234567", "blocked destination (+3470"),
        ("+4915112345678", "outside the allowed destinations (+34"),
        ("+882123456789", "outside the allowed destinations"),
        ("0034612345678", "not a phone number in E.164 form"),
        ("612345678", "not a phone number in E.164 form"),
        ("+34 612", "not a phone number in E.164 form"),
        ("+0123456789", "not a phone number in E.164 form"),
        ("+1234567890123456", "not a phone number in E.164 form"),
    ],
)
def test_spanish_defaults(number: str, why: str | None) -> None:
    refusal = SPAIN.refusal(number)
    if why is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert why in refusal


def test_an_empty_allowed_list_allows_every_country_but_not_the_blocked() -> None:
    anywhere = Destinations((), ("+44", "+1900"))
    assert anywhere.refusal("+4915112345678") is None
    assert anywhere.refusal("+12125550100") is None
    assert anywhere.refusal("+19005550100") is not None
    assert anywhere.refusal("+447700900123") is not None


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("+34612345678", Connect("+34612345678", COMPANY)),
        ("+34 612 34 56 78", Connect("+34612345678", COMPANY)),
        ("(+34) 612-345-678", Connect("+34612345678", COMPANY)),
        ("0034612345678", Connect("+34612345678", COMPANY)),
        ("client:bob", Connect("client:bob", None)),
        ("client:bob-smith", Refuse("'client:bob-smith' is not a softphone identity")),
        ("", Refuse("no number was dialled (To is empty)")),
    ],
)
def test_softphone_routes(to: str, expected: Connect | Refuse) -> None:
    assert route(to, destinations=SPAIN, company_number=COMPANY) == expected


def test_softphone_calls_to_numbers_need_the_company_number() -> None:
    routed = route("+34612345678", destinations=SPAIN, company_number="")
    assert isinstance(routed, Refuse)
    assert "TWILIO_PHONE_NUMBER" in routed.reason
    assert route("client:bob", destinations=SPAIN, company_number="") == Connect("client:bob", None)


def test_caller_identity() -> None:
    assert caller_identity("client:ana") == "ana"
    assert caller_identity("client:ana-maria") is None
    assert caller_identity("+34612345678") is None
    assert caller_identity("") is None


# -- the pace --


def test_memory_pacer_spaces_slots_and_refuses_beyond_the_wait() -> None:
    async def scenario() -> list[tuple[float, bool]]:
        pacer = MemoryPacer()
        slots = [await pacer.reserve("AC1", 10.0, 25.0) for _ in range(4)]
        other = await pacer.reserve("AC2", 10.0, 25.0)  # another account has its own pace
        return [(round(s.delay), s.refused) for s in [*slots, other]]

    assert asyncio.run(scenario()) == [
        (0, False),
        (10, False),
        (20, False),
        (0, True),  # 30 s away: more than the 25 s a call may wait
        (0, False),
    ]


@pytest.fixture(scope="module")
def redis_db() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def test_processes_share_one_pace_through_redis(redis_db: RedisServer) -> None:
    """Two pacers (as in two processes) on one Redis hand out one sequence of slots."""

    async def scenario() -> tuple[list[float], list[bool], float]:
        first, second = RedisPacer.from_url(redis_db.url), RedisPacer.from_url(redis_db.url)
        try:
            await first.client.delete(pace_key("ACshared"))
            slots = []
            for pacer in (first, second, first, second):
                slots.append(await pacer.reserve("ACshared", 1.0, 2.5))
            ttl = await first.client.pttl(pace_key("ACshared"))
        finally:
            await first.aclose()
            await second.aclose()
        return [s.delay for s in slots], [s.refused for s in slots], ttl

    started = time.monotonic()
    delays, refused, ttl = asyncio.run(scenario())
    elapsed = time.monotonic() - started
    assert refused == [False, False, False, True]  # the 4th is 3 s away: over 2.5 s
    accepted = delays[:3]
    # Each slot 1 s after the one before, less the time the test itself took.
    for n, delay in enumerate(accepted):
        assert n - elapsed - 0.01 <= delay <= n + 0.01, accepted
    assert 0 < ttl <= 4000  # the key goes away once the pace is idle


def test_a_refused_slot_says_when_to_retry(redis_db: RedisServer) -> None:
    async def scenario() -> float:
        pacer = RedisPacer.from_url(redis_db.url)
        try:
            await pacer.client.delete(pace_key("ACretry"))
            await pacer.reserve("ACretry", 2.0, 0.0)
            refused = await pacer.reserve("ACretry", 2.0, 0.0)
            assert refused.refused
            return refused.retry_after
        finally:
            await pacer.aclose()

    assert 1.9 <= asyncio.run(scenario()) <= 2.0
