"""Call state in Redis: one hash per call (revision, state, last and first reply) with a TTL,
and each step's call events appended to a stream in the same script.

Keys are laid out for Redis Cluster: a call's hash and the stream its events go to share a
hash tag, one of `EVENT_SHARDS` chosen from the CallSid, so one script touches one slot.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowpbx.engine.call_events import StepRecord
from flowpbx.engine.state import CallState, StateError
from flowpbx.store import CorruptState, StoredCall, StoreUnavailable

EVENT_SHARDS = 16
"""Call-event streams (and hash tags). Changing it moves every key: calls in flight are lost."""
DEFAULT_STREAM_LENGTH = 100_000
"""Entries kept per event stream (approximately) until call history consumes them."""
RECENT_CALLS = 10_000
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 1.0
HEALTH_CHECK_SECONDS = 5
CLIENT_RETRIES = 2

# Compare-and-set: write only if the revision is still the one the caller read; the first
# write of a call also keeps its reply as the answer to a repeated incoming webhook. The step's
# call events go to the call's stream in the same script: both are stored, or neither.
_SAVE = """
local current = redis.call('HGET', KEYS[1], 'rev')
if (current or '0') ~= ARGV[1] then return 0 end
if ARGV[1] == '0' then
  redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'state', ARGV[3], 'reply', ARGV[4], 'first', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'state', ARGV[3], 'reply', ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'record', ARGV[7])
end
return 1
"""


def shard(call_sid: str) -> int:
    """The event shard (and hash tag) of a call."""
    return zlib.crc32(call_sid.encode()) % EVENT_SHARDS


def call_key(call_sid: str) -> str:
    return f"flowpbx:{{{shard(call_sid):02d}}}:call:{call_sid}"


def stream_key(number: int) -> str:
    """The stream that call events of shard `number` go to."""
    return f"flowpbx:{{{number:02d}}}:events"


def connect(url: str) -> aioredis.Redis:
    """A client that retries a command once its connection broke (a restarted Redis leaves
    every pooled connection stale) and checks idle connections before reusing them."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), CLIENT_RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


class RedisCallStore:
    """Call state shared by every flowpbx process that uses the same Redis.

    What this process saved last for each call is kept locally, so that the usual step (taken
    by the process that took the previous one) costs one round trip; the compare-and-set
    refuses it if another process moved the call on meanwhile, and the next load reads Redis.
    """

    def __init__(
        self, client: aioredis.Redis, ttl: int, stream_length: int = DEFAULT_STREAM_LENGTH
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.stream_length = stream_length
        self._save: Any = client.register_script(_SAVE)
        self._recent: OrderedDict[str, StoredCall] = OrderedDict()

    @classmethod
    def from_url(
        cls, url: str, ttl: int, stream_length: int = DEFAULT_STREAM_LENGTH
    ) -> RedisCallStore:
        return cls(connect(url), ttl, stream_length)

    def _remember(self, stored: StoredCall) -> None:
        sid = stored.state.call_sid
        self._recent[sid] = stored
        self._recent.move_to_end(sid)
        if len(self._recent) > RECENT_CALLS:
            self._recent.popitem(last=False)

    async def load(self, call_sid: str, *, seq: int | None = None) -> StoredCall | None:
        recent = self._recent.get(call_sid)
        if recent is not None and seq is not None and recent.state.seq == seq:
            return recent
        try:
            revision, blob, reply = await self.client.hmget(
                call_key(call_sid), ["rev", "state", "reply"]
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        if blob is None:
            self._recent.pop(call_sid, None)
            return None
        try:
            state = CallState.from_json(blob)
        except StateError as exc:
            raise CorruptState(call_sid, int(revision or 0), str(exc)) from exc
        stored = StoredCall(state=state, revision=int(revision or 0), reply=_text(reply))
        self._remember(stored)
        return stored

    async def save(
        self, state: CallState, *, revision: int, reply: str, record: StepRecord | None
    ) -> bool:
        sid = state.call_sid
        keys = [call_key(sid), stream_key(shard(sid))]
        events = record.to_json() if record is not None else ""
        args = [revision, revision + 1, state.to_json(), reply, self.ttl, self.stream_length]
        try:
            stored = bool(await self._save(keys=keys, args=[*args, events]))
        except (RedisError, OSError) as exc:
            self._recent.pop(sid, None)
            raise StoreUnavailable(f"Redis: {exc}") from exc
        if stored:
            self._remember(StoredCall(state=state, revision=revision + 1, reply=reply))
        else:
            self._recent.pop(sid, None)
        return stored

    async def first_reply(self, call_sid: str) -> str | None:
        try:
            first = await self.client.hget(call_key(call_sid), "first")
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        return None if first is None else _text(first)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        await self.client.aclose()


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else value
