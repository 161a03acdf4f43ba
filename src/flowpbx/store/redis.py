"""Call state in Redis: one hash per CallSid (revision + JSON state) with a TTL."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from flowpbx.engine.state import CallState

KEY_PREFIX = "flowpbx:call:"

# Compare-and-set: write only if the revision is still the one the caller read.
_PUT = """
local current = redis.call('HGET', KEYS[1], 'rev')
if (current or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'state', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


RECENT_CALLS = 10_000


class RedisCallStore:
    """Call state shared by every flowpbx process that uses the same Redis.

    The state each process last saw for a call is kept locally, so that a step can write
    with one round trip (the compare-and-set refuses it if another process got there first).
    """

    def __init__(self, client: aioredis.Redis, ttl: int) -> None:
        self.client = client
        self.ttl = ttl
        self._put: Any = client.register_script(_PUT)
        self._recent: OrderedDict[str, tuple[CallState, int]] = OrderedDict()

    def _remember(self, state: CallState, revision: int) -> None:
        self._recent[state.call_sid] = (state, revision)
        self._recent.move_to_end(state.call_sid)
        if len(self._recent) > RECENT_CALLS:
            self._recent.popitem(last=False)

    def recent(self, call_sid: str) -> tuple[CallState, int] | None:
        return self._recent.get(call_sid)

    @classmethod
    def from_url(cls, url: str, ttl: int) -> RedisCallStore:
        return cls(aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5), ttl)

    async def get(self, call_sid: str) -> tuple[CallState | None, int]:
        revision, blob = await self.client.hmget(KEY_PREFIX + call_sid, ["rev", "state"])
        if blob is None:
            self._recent.pop(call_sid, None)
            return None, 0
        state = CallState.from_json(blob)
        self._remember(state, int(revision or 0))
        return state, int(revision or 0)

    async def put(self, state: CallState, revision: int) -> bool:
        key = KEY_PREFIX + state.call_sid
        args = [revision, revision + 1, state.to_json(), self.ttl]
        stored = bool(await self._put(keys=[key], args=args))
        if stored:
            self._remember(state, revision + 1)
        else:
            self._recent.pop(state.call_sid, None)
        return stored

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except RedisError:
            return False

    async def aclose(self) -> None:
        await self.client.aclose()
