"""Call state in Redis: one hash per call (revision, write token, state, last and first reply)
with a TTL, and each step's call events appended to a stream in the same script.

Keys are laid out for Redis Cluster: a call's hash and the stream its events go to share a
hash tag, one of `EVENT_SHARDS` chosen from the CallSid, so one script touches one slot.
"""

from __future__ import annotations

import hashlib
import json
import random
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowpbx.engine.call_events import StepRecord
from flowpbx.engine.progress import Report
from flowpbx.engine.state import CallState, StateError
from flowpbx.engine.storage import CorruptState, StoredCall, StoreUnavailable

EVENT_SHARDS = 64
"""Call-event streams (and hash tags): 64 spread evenly over a 3-master cluster's slots.
Changing it moves every key: calls in flight are lost."""
DEFAULT_EVENTS_MAX = 100_000
"""Step records kept in all streams together (approximately) until call history reads them."""
RECENT_CALLS = 10_000
SOCKET_TIMEOUT = 1.5
CONNECT_TIMEOUT = 1.0
HEALTH_CHECK_SECONDS = 5
CLIENT_RETRIES = 1
LEGACY_PREFIX = "flowpbx:call:"
"""Where call engine v1 kept a call's hash (rev, state with the reply inside)."""

# Compare-and-set on the revision and on the token of the write that made it (revisions start
# again at 1 when Redis loses its data; tokens never repeat). The first write of a call keeps
# its reply as the answer to a repeated incoming webhook. The step's call events go to the
# call's stream in the same script: both are stored, or neither.
# ARGV[1] is "expected-revision new-revision new-token ttl stream-length expected-token" (one
# argument: each argument costs the client an encoding step on every webhook; the token read
# back comes last, taken as it is, so that even a damaged one can be replaced), then the
# state, the reply and the step record ('' for none).
_SAVE = """
local expected, rev, wid, ttl, length, token =
  string.match(ARGV[1], '^(%-?%d+) (%-?%d+) (%x+) (%d+) (%d+) (.*)$')
if not expected then return redis.error_reply('flowpbx: malformed save arguments') end
local stored = redis.call('HMGET', KEYS[1], 'rev', 'wid')
local current = stored[1] or '0'
if not tonumber(current) then current = '0' end  -- an unreadable revision: replaced as new
if current ~= expected or (stored[2] or '') ~= token then return 0 end
if expected == '0' then
  redis.call('HSET', KEYS[1], 'rev', rev, 'wid', wid, 'state', ARGV[2], 'reply', ARGV[3],
             'first', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'rev', rev, 'wid', wid, 'state', ARGV[2], 'reply', ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ttl)
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', length, '*', 'record', ARGV[4])
end
return 1
"""
_SAVE_SHA = hashlib.sha1(_SAVE.encode()).hexdigest()

# A progress report goes to the call's stream; a call Twilio said has ended keeps its state
# for ARGV[3] seconds more (a late webhook still finds it), not for the whole TTL.
_REPORT = """
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'report', ARGV[2])
if ARGV[3] ~= '' and redis.call('TTL', KEYS[1]) > tonumber(ARGV[3]) then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 1
"""
_REPORT_SHA = hashlib.sha1(_REPORT.encode()).hexdigest()
CLOSE_GRACE_SECONDS = 60
"""How long a call's state stays after Twilio said it ended."""


def shard(call_sid: str) -> int:
    """The event shard (and hash tag) of a call."""
    return zlib.crc32(call_sid.encode()) % EVENT_SHARDS


def call_key(call_sid: str) -> str:
    return f"flowpbx:{{{shard(call_sid):02d}}}:call:{call_sid}"


def stream_key(number: int) -> str:
    """The stream that call events of shard `number` go to."""
    return f"flowpbx:{{{number:02d}}}:events"


def flow_key(name: str, version: str) -> str:
    """Where a flow version's text is kept, for calls that outlive a reload."""
    return f"flowpbx:flow:{name}:{version}"


def connect(url: str) -> aioredis.Redis:
    """A client that retries a command once its connection broke (a restarted Redis leaves
    every pooled connection stale) and checks idle connections before reusing them. Commands
    give up quickly: the service's own retry time bounds how long a caller waits."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), CLIENT_RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


@dataclass(frozen=True, slots=True)
class _Seen:
    """What this process last read or wrote for a call: the call, and its write token."""

    stored: StoredCall | None
    revision: int
    token: str


class RedisCallStore:
    """Call state shared by every flowpbx process that uses the same Redis.

    What this process saw last for each call is kept locally, so that the usual step (taken
    by the process that took the previous one) costs one round trip; the compare-and-set
    refuses it if another process moved the call on meanwhile, and the next load reads Redis.
    """

    def __init__(self, client: aioredis.Redis, ttl: int, events_max: int = DEFAULT_EVENTS_MAX):
        self.client = client
        self.ttl = ttl
        self.stream_length = max(100, events_max // EVENT_SHARDS)
        # Commands are sent as they are: redis-py's per-command helpers cost every webhook.
        self._execute = cast(Callable[..., Awaitable[Any]], client.execute_command)
        self._seen: OrderedDict[str, _Seen] = OrderedDict()

    @classmethod
    def from_url(cls, url: str, ttl: int, events_max: int = DEFAULT_EVENTS_MAX) -> RedisCallStore:
        return cls(connect(url), ttl, events_max)

    def _remember(self, call_sid: str, seen: _Seen) -> None:
        self._seen[call_sid] = seen
        self._seen.move_to_end(call_sid)
        if len(self._seen) > RECENT_CALLS:
            self._seen.popitem(last=False)

    async def load(self, call_sid: str, *, seq: int | None = None) -> StoredCall | None:
        seen = self._seen.get(call_sid)
        recent = seen.stored if seen is not None else None
        if recent is not None and seq is not None and recent.state.seq == seq:
            return recent
        try:
            fields = await self._execute(
                "HMGET", call_key(call_sid), "rev", "wid", "state", "reply"
            )
            revision, token, blob, reply = fields
            if blob is None:
                return await self._legacy(call_sid)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        wid = _text(token)
        try:
            number = int(revision or 0)
        except ValueError as exc:
            self._remember(call_sid, _Seen(None, 0, wid))
            raise CorruptState(call_sid, 0, f"revision {revision!r} is not a number") from exc
        try:
            state = CallState.from_json(blob)
        except StateError as exc:
            self._remember(call_sid, _Seen(None, number, wid))
            raise CorruptState(call_sid, number, str(exc)) from exc
        stored = StoredCall(state=state, revision=number, reply=_text(reply))
        self._remember(call_sid, _Seen(stored, number, wid))
        return stored

    async def _legacy(self, call_sid: str) -> StoredCall | None:
        """A call that call engine v1 stored (before an upgrade): read it from its old key, as
        a new call (revision 0), so that the next save moves it to the new layout."""
        self._seen.pop(call_sid, None)
        blob = await self.client.hget(LEGACY_PREFIX + call_sid, "state")
        if blob is None:
            return None
        try:
            state = CallState.from_json(blob)
            reply = json.loads(blob).get("reply", "")
        except (StateError, ValueError) as exc:
            raise CorruptState(call_sid, 0, str(exc)) from exc
        return StoredCall(state=state, revision=0, reply=reply if isinstance(reply, str) else "")

    async def save(
        self, state: CallState, *, revision: int, reply: str, record: StepRecord | None
    ) -> bool:
        sid = state.call_sid
        seen = self._seen.get(sid)
        token = seen.token if seen is not None and seen.revision == revision else ""
        new_token = f"{random.getrandbits(64):016x}"
        head = f"{revision} {revision + 1} {new_token} {self.ttl} {self.stream_length} {token}"
        events = record.encode() if record is not None else b""
        args = (2, call_key(sid), stream_key(shard(sid)), head, state.encode(), reply, events)
        try:
            stored = bool(await self._script(_SAVE, _SAVE_SHA, args))
        except (RedisError, OSError) as exc:
            self._seen.pop(sid, None)
            raise StoreUnavailable(f"Redis: {exc}") from exc
        if stored:
            saved = StoredCall(state=state, revision=revision + 1, reply=reply)
            self._remember(sid, _Seen(saved, revision + 1, new_token))
        else:
            self._seen.pop(sid, None)
        return stored

    async def report(self, report: Report, *, close: bool = False) -> None:
        sid = report.call_sid
        grace = str(CLOSE_GRACE_SECONDS) if close else ""
        args = (
            2,
            call_key(sid),
            stream_key(shard(sid)),
            self.stream_length,
            report.encode(),
            grace,
        )
        try:
            await self._script(_REPORT, _REPORT_SHA, args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    async def _script(self, script: str, sha: str, args: tuple[Any, ...]) -> Any:
        """Run a Lua script by its SHA; Redis restarted (or flushed its scripts): load it and
        go on."""
        try:
            return await self._execute("EVALSHA", sha, *args)
        except NoScriptError:
            await self.client.script_load(script)
            return await self._execute("EVALSHA", sha, *args)

    async def first_reply(self, call_sid: str) -> str | None:
        try:
            first = await self.client.hget(call_key(call_sid), "first")
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        return None if first is None else _text(first)

    async def keep_flow(self, name: str, version: str, file: str, text: bytes) -> None:
        key = flow_key(name, version)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"file": file, "text": text})
                pipe.expire(key, 2 * self.ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    async def flow_text(self, name: str, version: str) -> tuple[str, bytes] | None:
        try:
            file, text = await self.client.hmget(flow_key(name, version), ["file", "text"])
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        if text is None:
            return None
        return _text(file), text if isinstance(text, bytes) else text.encode()

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
