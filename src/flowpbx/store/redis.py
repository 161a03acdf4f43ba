"""Call state in Redis: one hash per call (revision, write token, state, last and first reply)
with a TTL, and each step's call events appended to a stream in the same script.

Keys are laid out for Redis Cluster: a call's hash, the stream its events go to and the set
of active calls it counts in share a hash tag, one of `EVENT_SHARDS` chosen from the CallSid,
so one script touches one slot.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, cast
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError
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
# call's stream in the same script: both are stored, or neither. A call's first save also
# puts it in its shard's set of active calls (KEYS[3], scored by Redis's clock), pruning the
# entries older than the TTL there, so that counting active calls never reads a call's hash.
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
  local now = tonumber(redis.call('TIME')[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - tonumber(ttl)))
  redis.call('ZADD', KEYS[3], now, KEYS[1])
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
# for ARGV[3] seconds more (a late webhook still finds it), not for the whole TTL, and is no
# longer active (KEYS[3]).
_REPORT = """
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'report', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[3], KEYS[1])
  if redis.call('TTL', KEYS[1]) > tonumber(ARGV[3]) then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
  end
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


def active_key(number: int) -> str:
    """The calls of shard `number` in progress: a sorted set of their call keys, scored by
    when each started (Redis's clock, in seconds)."""
    return f"flowpbx:{{{number:02d}}}:active"


def flow_key(name: str, version: str) -> str:
    """Where a flow version's text is kept, for calls that outlive a reload."""
    return f"flowpbx:flow:{name}:{version}"


RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""A client on one Redis or on a Redis Cluster: `connect` makes the one its URL names."""

REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
"""What a Redis that does not answer raises: a RedisError, the socket's OSError, and a cluster
client's RedisClusterException (not a RedisError: raised when no seed node answers or a slot
has no master; also for a command whose keys are in different slots, a bug the cluster tests
keep out, which then shows as an outage naming it)."""

CLUSTER_SCHEME = "redis+cluster"
"""`redis+cluster://[[user]:password@]host:port,host:port,...`: a Redis Cluster, found from
these seed nodes (`Settings.redis_url` writes it from REDIS_CLUSTER_NODES)."""


@dataclass(frozen=True, slots=True)
class ClusterAddress:
    """What a `redis+cluster://` URL says: the seed nodes and the credentials."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None


def parse_cluster_url(url: str) -> ClusterAddress:
    """The seed nodes and credentials of a `redis+cluster://` URL; ValueError names what is
    wrong."""
    prefix = CLUSTER_SCHEME + "://"
    if not url.startswith(prefix):
        raise ValueError(f"not a Redis Cluster URL: expected {prefix}host:port,host:port,...")
    userinfo, _, hosts = url[len(prefix) :].rpartition("@")
    hosts = hosts.split("/", 1)[0]  # a database path (/0) is allowed: a cluster has only 0
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"Redis Cluster URL: node {item!r} is not host:port (port 1 to 65535)")
        nodes.append((host, int(port)))
    if not nodes:
        raise ValueError(f"Redis Cluster URL names no node: expected {prefix}host:port,...")
    return ClusterAddress(tuple(nodes), username, password)


def connect(url: str) -> RedisClient:
    """A client that retries a command once its connection broke (a restarted Redis leaves
    every pooled connection stale; on a cluster, a failed-over master moves its slots) and
    checks idle connections before reusing them. Commands give up quickly: the service's own
    retry time bounds how long a caller waits. A `redis+cluster://` URL makes a cluster
    client (it learns the slots' masters from the seed nodes on first use); any other URL a
    client on one Redis."""
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_SECONDS,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), CLIENT_RETRIES),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if url.startswith(CLUSTER_SCHEME + "://"):
        address = parse_cluster_url(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            username=address.username,
            password=address.password,
            **options,
        )
    return aioredis.Redis.from_url(url, **options)


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


async def ping(client: RedisClient) -> bool:
    """Whether Redis answers: the one Redis, or every master of a cluster (a master that does
    not answer leaves the calls of its slots without state)."""
    try:
        if isinstance(client, RedisCluster):
            return bool(await client.execute_command("PING", target_nodes=RedisCluster.PRIMARIES))
        return bool(await client.ping())
    except REDIS_ERRORS:
        return False


async def silent_masters(client: RedisClient) -> list[str] | None:
    """For messages, when `ping` says False on a cluster: the masters (host:port, as the
    cluster names them) that do not answer, each asked on its own; None when the masters are
    unknown (no seed node answers, a refused password) or `client` is not a cluster's."""
    if not isinstance(client, RedisCluster):
        return None
    try:
        await client.initialize()  # the slots' masters, from the first seed node that answers
    except REDIS_ERRORS:
        return None
    silent = []
    for node in client.get_primaries():
        try:
            await client.execute_command("PING", target_nodes=node)
        except REDIS_ERRORS:
            silent.append(node.name)
    return silent


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

    def __init__(self, client: RedisClient, ttl: int, events_max: int = DEFAULT_EVENTS_MAX):
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
        except REDIS_ERRORS as exc:
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
        number = shard(sid)
        keys = (call_key(sid), stream_key(number), active_key(number))
        args = (3, *keys, head, state.encode(), reply, events)
        try:
            stored = bool(await self._script(_SAVE, _SAVE_SHA, args))
        except REDIS_ERRORS as exc:
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
        number = shard(sid)
        args = (
            3,
            call_key(sid),
            stream_key(number),
            active_key(number),
            self.stream_length,
            report.encode(),
            grace,
        )
        try:
            await self._script(_REPORT, _REPORT_SHA, args)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    async def _script(self, script: str, sha: str, args: tuple[Any, ...]) -> Any:
        """Run a Lua script by its SHA; Redis restarted (or flushed its scripts): run it by
        its text, which also loads it. EVAL goes where EVALSHA went (on a cluster, the master
        of the keys' slot), so it needs no other master to answer (a SCRIPT LOAD to every
        master would fail while any one is down)."""
        try:
            return await self._execute("EVALSHA", sha, *args)
        except NoScriptError:
            return await self._execute("EVAL", script, *args)

    async def first_reply(self, call_sid: str) -> str | None:
        try:
            first = await self.client.hget(call_key(call_sid), "first")
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        return None if first is None else _text(first)

    async def keep_flow(self, name: str, version: str, file: str, text: bytes) -> None:
        key = flow_key(name, version)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"file": file, "text": text})
                pipe.expire(key, 2 * self.ttl)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    async def flow_text(self, name: str, version: str) -> tuple[str, bytes] | None:
        try:
            file, text = await self.client.hmget(flow_key(name, version), ["file", "text"])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        if text is None:
            return None
        return _text(file), text if isinstance(text, bytes) else text.encode()

    async def active_calls(self) -> int:
        since = time.time() - self.ttl
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for number in range(EVENT_SHARDS):
                    pipe.zcount(active_key(number), since, "+inf")
                counts = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        return sum(int(count) for count in counts)

    async def ping(self) -> bool:
        return await ping(self.client)

    async def aclose(self) -> None:
        await self.client.aclose()


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else value
