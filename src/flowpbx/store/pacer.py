"""The outbound-call pace in Redis: one key per account, the next free slot in milliseconds
of Redis's own clock (so that processes on machines whose clocks disagree share one pace)."""

from __future__ import annotations

import hashlib
from typing import Any, cast

from redis.exceptions import NoScriptError

from flowpbx.dialing.pacer import Slot
from flowpbx.engine.storage import StoreUnavailable
from flowpbx.store.redis import REDIS_ERRORS, RedisClient, connect

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
if slot - now > max_wait then return {0, slot - now - max_wait} end
redis.call('SET', KEYS[1], slot + interval, 'PX', slot + interval - now + 1000)
return {1, slot - now}
"""


def pace_key(account: str) -> str:
    return f"flowpbx:{{pace}}:calls:{account}"


_RESERVE_SHA = hashlib.sha1(_RESERVE.encode()).hexdigest()


class RedisPacer:
    def __init__(self, client: RedisClient) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str) -> RedisPacer:
        """On the call store's client (`connect`): one Redis or a Redis Cluster, one retry
        after a broken connection."""
        return cls(connect(url))

    async def reserve(self, account: str, interval: float, max_wait: float) -> Slot:
        args = (1, pace_key(account), max(1, round(interval * 1000)), round(max_wait * 1000))
        try:
            try:
                answer = await self.client.execute_command("EVALSHA", _RESERVE_SHA, *args)
            except NoScriptError:  # Redis lost its scripts: EVAL runs (and loads) it there
                answer = await self.client.execute_command("EVAL", _RESERVE, *args)
            result = cast(list[Any], answer)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        accepted, millis = int(result[0]), int(result[1])
        if not accepted:
            return Slot(delay=0.0, refused=True, retry_after=millis / 1000)
        return Slot(delay=millis / 1000)

    async def aclose(self) -> None:
        await self.client.aclose()
