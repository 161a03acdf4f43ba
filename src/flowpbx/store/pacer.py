"""The outbound-call pace in Redis: one key per account, the next free slot in milliseconds
of Redis's own clock (so that processes on machines whose clocks disagree share one pace)."""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from flowpbx.dialing.pacer import Slot
from flowpbx.engine.storage import StoreUnavailable

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


class RedisPacer:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._script = client.register_script(_RESERVE)

    @classmethod
    def from_url(cls, url: str) -> RedisPacer:
        return cls(aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0))

    async def reserve(self, account: str, interval: float, max_wait: float) -> Slot:
        try:
            result = cast(
                list[Any],
                await self._script(
                    keys=[pace_key(account)],
                    args=[max(1, round(interval * 1000)), round(max_wait * 1000)],
                ),
            )
        except RedisError as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        accepted, millis = int(result[0]), int(result[1])
        if not accepted:
            return Slot(delay=0.0, refused=True, retry_after=millis / 1000)
        return Slot(delay=millis / 1000)

    async def aclose(self) -> None:
        await self.client.aclose()
