"""Queues and agents in Redis, shared by every flowpbx process that uses the same Redis.

Every change that touches more than one value is one Lua script, so it is atomic; every script
touches the keys of one hash tag only, so the store works on Redis Cluster:

- a queue, `<prefix>:{q:<name>}:...`: `order` (sorted set member -> score: a position is a
  rank, O(log n)), `entry` (hash member -> the Waiter's JSON, for every place, waiting or
  claimed), `claimed` (hash member -> reservation id), `meta` (hash: `last_agent`, `figures`)
  and `lock` (the scheduler's lock, a string with a TTL);
- the agents, `<prefix>:{agents}:live` (hash agent -> AgentLive's JSON) and
  `<prefix>:{agents}:res` (hash reservation id -> Reservation's JSON);
- `<prefix>:where:{<CallSid>}` -> the queue the call joined last, on its own (a call's key may
  live in any slot): set by a separate command after a join, deleted (if it still names the
  queue) after the call leaves the queue for good. It lasts a day at most.

The scripts edit JSON that Python wrote. Redis's cjson writes numbers with 14 significant
digits, which would round join times and clocks, so the scripts write JSON with their own
`encode` (the shortest of 15, 16 or 17 digits that reads back as the same double). They follow
`flowpbx.queues.model` (scores, `AgentLive.is_free`, `learned`) and the memory store exactly;
the contract suite runs both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from hashlib import sha1
from string import Template
from typing import Any, NamedTuple, Self, cast

import msgspec
from redis.exceptions import NoScriptError

from flowpbx.engine.storage import StoreUnavailable
from flowpbx.queues.memory_store import WHERE_TTL
from flowpbx.queues.model import (
    ABANDON_WEIGHT,
    HANDLE_WEIGHT,
    MAX_PRIORITY,
    PRIORITY_BAND,
    WAIT_WEIGHT,
    AgentLive,
    AgentStatus,
    Figures,
    JoinOutcome,
    QueuePlace,
    Reservation,
    Waiter,
    WaiterKind,
    callback_member,
    score,
)
from flowpbx.store.redis import REDIS_ERRORS, RedisClient, connect, ping

DEFAULT_PREFIX = "fq"

# Helpers every script starts with. `encode` writes a decoded JSON object back, nested objects
# included (numbers exact, see the module's docstring); `score` is `flowpbx.queues.model.score`
# (round() of Python 3 rounds halves to even); `is_free` is `AgentLive.is_free`.
_PRELUDE = Template(r"""
local function num(x)
  local s = string.format('%.15g', x)
  if tonumber(s) ~= x then
    s = string.format('%.16g', x)
    if tonumber(s) ~= x then s = string.format('%.17g', x) end
  end
  return s
end
local encode
local function value(v)
  local kind = type(v)
  if kind == 'number' then return num(v) end
  if kind == 'boolean' then return v and 'true' or 'false' end
  if v == cjson.null then return 'null' end
  if kind == 'table' then return encode(v) end
  return cjson.encode(v)
end
encode = function(t)
  local parts = {}
  if t[1] ~= nil then  -- an array (an empty one is written as an object: none is expected)
    for i = 1, #t do parts[i] = value(t[i]) end
    return '[' .. table.concat(parts, ',') .. ']'
  end
  for k, v in pairs(t) do parts[#parts + 1] = cjson.encode(k) .. ':' .. value(v) end
  return '{' .. table.concat(parts, ',') .. '}'
end
local function round_even(x)
  local f = math.floor(x)
  local d = x - f
  if d > 0.5 or (d == 0.5 and f % 2 == 1) then return f + 1 end
  return f
end
local function score(w)
  local p = math.min(math.max(w.priority or 0, 0), $max_priority)
  return string.format('%.17g', ($max_priority - p) * $band + round_even(w.queued_at * 1000))
end
local function is_free(a, now)
  if (a.reservation or '') ~= '' then return false end
  local s = a.status
  if s == '$wrap_up' and now >= (a.wrap_until or 0) then s = '$available' end
  return s == '$available'
end
""").substitute(
    max_priority=MAX_PRIORITY,
    band=int(score(MAX_PRIORITY - 1, 0.0) - score(MAX_PRIORITY, 0.0)),
    wrap_up=AgentStatus.WRAP_UP.value,
    available=AgentStatus.AVAILABLE.value,
)


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, run by its SHA (loaded again if Redis lost it)."""

    name: str
    source: str
    sha: str


SCRIPTS: dict[str, Script] = {}
"""Every script of the store, by name."""


def _script(name: str, body: str, **constants: object) -> Script:
    source = _PRELUDE + Template(body).substitute(constants)
    script = Script(name, source, sha1(source.encode()).hexdigest())
    SCRIPTS[name] = script
    return script


# KEYS order, entry, claimed. ARGV member, waiter JSON, score, max_size (of places waiting). A
# member waiting keeps its place (its call's details updated); a claimed one stays claimed (its
# step updated).
_JOIN = _script(
    "join",
    """
local member = ARGV[1]
local rank = redis.call('ZRANK', KEYS[1], member)
local claimed = not rank and redis.call('HEXISTS', KEYS[3], member) == 1
if rank or claimed then
  local new = cjson.decode(ARGV[2])
  local old = redis.call('HGET', KEYS[2], member)
  local w = old and cjson.decode(old) or new
  w.queue_sid = new.queue_sid
  w.seq = new.seq
  if rank then
    w.flow = new.flow
    w.node = new.node
  end
  redis.call('HSET', KEYS[2], member, encode(w))
  if rank then return {'$waiting', rank + 1, redis.call('ZCARD', KEYS[1])} end
  return {'$claimed', 0, redis.call('ZCARD', KEYS[1])}
end
local waiting = redis.call('ZCARD', KEYS[1])
if waiting >= tonumber(ARGV[4]) then
  return {'$full', 0, waiting}
end
redis.call('HSET', KEYS[2], member, ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], member)
return {'$joined', redis.call('ZRANK', KEYS[1], member) + 1, waiting + 1}
""",
    waiting=JoinOutcome.WAITING.value,
    claimed=JoinOutcome.CLAIMED.value,
    full=JoinOutcome.FULL.value,
    joined=JoinOutcome.JOINED.value,
)

# KEYS order, claimed. ARGV member.
_PLACE = _script(
    "place",
    """
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
local size = redis.call('ZCARD', KEYS[1])
if rank then return {'$waiting', rank + 1, size} end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {'$claimed', 0, size} end
return {'$full', 0, size}
""",
    waiting=JoinOutcome.WAITING.value,
    claimed=JoinOutcome.CLAIMED.value,
    full=JoinOutcome.FULL.value,
)

# KEYS order, entry. ARGV member.
_LEAVE = _script(
    "leave",
    """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
local entry = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return entry
""",
)

# KEYS order, entry. ARGV offset, limit. -> {waiting, entry...}
_WAITING = _script(
    "waiting",
    """
local total = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[2])
if limit <= 0 then return {total} end
local members = redis.call('ZRANGE', KEYS[1], ARGV[1], tonumber(ARGV[1]) + limit - 1)
local out = {total}
for i = 1, #members, 500 do  -- unpack() has a limit: HMGET 500 at a time
  local last = math.min(i + 499, #members)
  for _, entry in ipairs(redis.call('HMGET', KEYS[2], unpack(members, i, last))) do
    if entry then out[#out + 1] = entry end
  end
end
return out
""",
)

# KEYS order. ARGV the priority band's width, the number of bands. Within a band a place's score
# is its join time (ms): the earliest of the bands' first places is the one waiting longest.
_OLDEST = _script(
    "oldest",
    """
local band = tonumber(ARGV[1])
local oldest = false
for b = 0, tonumber(ARGV[2]) - 1 do
  local first = redis.call('ZRANGEBYSCORE', KEYS[1], b * band, '(' .. ((b + 1) * band),
    'WITHSCORES', 'LIMIT', 0, 1)
  if first[2] then
    local ms = tonumber(first[2]) - b * band
    if not oldest or ms < oldest then oldest = ms end
  end
end
return {redis.call('ZCARD', KEYS[1]), oldest and tostring(oldest) or false}
""",
)

# KEYS order, entry, claimed. ARGV member, number, the callback members' prefix. The new member
# takes the caller's score as Redis holds it (the same double).
_TO_CALLBACK = _script(
    "to_callback",
    """
local member = ARGV[1]
local at = redis.call('ZSCORE', KEYS[1], member)
if not at then return false end
local w = cjson.decode(redis.call('HGET', KEYS[2], member))
local new = ARGV[3] .. w.call_sid
if new ~= member and redis.call('HEXISTS', KEYS[3], new) == 1 then return false end
redis.call('ZREM', KEYS[1], member)
redis.call('HDEL', KEYS[2], member)
w.member = new
w.kind = '$callback'
w.number = ARGV[2]
w.not_before = tonumber(ARGV[4])
local out = encode(w)
redis.call('HSET', KEYS[2], new, out)
redis.call('ZADD', KEYS[1], at, new)
return out
""",
    callback=WaiterKind.CALLBACK.value,
)

# KEYS order, entry, claimed. ARGV member, waiter JSON, score.
_REQUEUE = _script(
    "requeue",
    """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
""",
)

# KEYS lock. ARGV token, milliseconds.
_LOCK = _script(
    "lock",
    """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
""",
)

# KEYS lock (or a where key). ARGV value: deleted only if it still holds that value.
_DELETE_IF = _script(
    "delete_if",
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""",
)

# KEYS order, entry, claimed, meta. ARGV member, reservation, agent.
_CLAIM = _script(
    "claim",
    """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], 'last_agent', ARGV[3])
return redis.call('HGET', KEYS[2], ARGV[1])
""",
)

# KEYS order, entry, claimed. ARGV member, reservation. Back at the score of its entry.
_UNCLAIM = _script(
    "unclaim",
    """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then return 0 end
redis.call('ZADD', KEYS[1], score(cjson.decode(entry)), ARGV[1])
return 1
""",
)

# KEYS entry, claimed. ARGV member, reservation.
_DONE = _script(
    "done",
    """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return false end
redis.call('HDEL', KEYS[2], ARGV[1])
local entry = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
return entry
""",
)

# KEYS meta. ARGV handle_time, answered_wait, abandoned ('' for none; '1'/'0'), the empty
# figures' JSON. `learned` of flowpbx.queues.model, operation for operation.
_LEARN = _script(
    "learn",
    """
local raw = redis.call('HGET', KEYS[1], 'figures')
local f = cjson.decode(raw or ARGV[4])
local function weighted(old, sample, weight)
  if old == nil or old == cjson.null then return sample end
  return old + weight * (sample - old)
end
if ARGV[1] ~= '' then
  f.handle_time = weighted(f.handle_time, tonumber(ARGV[1]), $handle_weight)
  f.samples = (f.samples or 0) + 1
end
if ARGV[2] ~= '' then
  f.answered_wait = weighted(f.answered_wait, tonumber(ARGV[2]), $wait_weight)
end
if ARGV[3] ~= '' then
  local target = ARGV[3] == '1' and 1.0 or 0.0
  local rate = f.abandon_rate or 0
  f.abandon_rate = rate + $abandon_weight * (target - rate)
end
local out = encode(f)
redis.call('HSET', KEYS[1], 'figures', out)
return out
""",
    handle_weight=repr(HANDLE_WEIGHT),
    wait_weight=repr(WAIT_WEIGHT),
    abandon_weight=repr(ABANDON_WEIGHT),
)

# KEYS live. ARGV agent, status, now, wrap_until, a new agent's JSON. `with_status` of the
# memory store.
_SET_STATUS = _script(
    "set_status",
    """
local a = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]) or ARGV[5])
local now = tonumber(ARGV[3])
a.status = ARGV[2]
a.since = now
if ARGV[2] == '$available' then
  a.idle_since = now
elseif ARGV[2] == '$wrap_up' then
  a.wrap_until = tonumber(ARGV[4])
end
local out = encode(a)
redis.call('HSET', KEYS[1], ARGV[1], out)
return out
""",
    available=AgentStatus.AVAILABLE.value,
    wrap_up=AgentStatus.WRAP_UP.value,
)

# KEYS live, res. ARGV agent, reservation id, reservation JSON, now.
_RESERVE = _script(
    "reserve",
    """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local a = cjson.decode(raw)
if not is_free(a, tonumber(ARGV[4])) then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end
a.reservation = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], encode(a))
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
""",
)

# KEYS res. ARGV reservation id, now, until.
_CONNECTED = _script(
    "connected",
    """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local r = cjson.decode(raw)
r.connected = true
r.connected_at = tonumber(ARGV[2])
r['until'] = tonumber(ARGV[3])
local out = encode(r)
redis.call('HSET', KEYS[1], ARGV[1], out)
return out
""",
)

# KEYS live, res. ARGV how (finish, missed, release), reservation id, now, wrap_until. The
# reservation goes; its agent, if it still holds it, is freed and (`finished` of the memory
# store) counted.
_END = _script(
    "end",
    """
local id = ARGV[2]
local raw = redis.call('HGET', KEYS[2], id)
if not raw then return false end
redis.call('HDEL', KEYS[2], id)
local agent = cjson.decode(raw).agent
local live = redis.call('HGET', KEYS[1], agent)
if not live then return raw end
local a = cjson.decode(live)
if a.reservation ~= id then return raw end
a.reservation = ''
if ARGV[1] == 'finish' then
  local now, wrap = tonumber(ARGV[3]), tonumber(ARGV[4])
  a.answered = (a.answered or 0) + 1
  a.missed = 0
  if a.status ~= '$offline' and a.status ~= '$busy' then
    a.since = now
    a.idle_since = math.max(now, wrap)
    if wrap > now then
      a.status = '$wrap_up'
      a.wrap_until = wrap
    else
      a.status = '$available'
    end
  end
elseif ARGV[1] == 'missed' then
  a.missed = (a.missed or 0) + 1
end
redis.call('HSET', KEYS[1], agent, encode(a))
return raw
""",
    offline=AgentStatus.OFFLINE.value,
    busy=AgentStatus.BUSY.value,
    wrap_up=AgentStatus.WRAP_UP.value,
    available=AgentStatus.AVAILABLE.value,
)


class QueueKeys(NamedTuple):
    """A queue's keys (one hash tag)."""

    order: str
    entry: str
    claimed: str
    meta: str
    lock: str


_waiter = msgspec.json.Decoder(Waiter)
_agent = msgspec.json.Decoder(AgentLive)
_reservation = msgspec.json.Decoder(Reservation)
_figures = msgspec.json.Decoder(Figures)
_encode = msgspec.json.Encoder().encode
_CALLBACK_PREFIX = callback_member("")
_Arg = str | bytes | int | float
_EMPTY_FIGURES = _encode(Figures())


class RedisQueueStore:
    """The `QueueStore` on Redis. Its keys are laid out for Redis Cluster (one slot per
    script); `from_url` makes a client on one Redis or on a cluster, as the URL says. Keys
    start with `prefix` (no braces: the hash tags follow it). Raises StoreUnavailable when
    Redis does not answer."""

    def __init__(self, client: RedisClient, prefix: str = DEFAULT_PREFIX) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"queue store prefix {prefix!r}: braces would change hash tags")
        self.client = client
        self.prefix = prefix
        self.live_key = f"{prefix}:{{agents}}:live"
        self.res_key = f"{prefix}:{{agents}}:res"
        # Commands are sent as they are: redis-py's per-command helpers cost on every call.
        self._execute = cast(Callable[..., Awaitable[Any]], client.execute_command)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX) -> Self:
        """A store on a client that retries once after a broken connection and gives up
        quickly (the call store's settings)."""
        return cls(connect(url), prefix)

    def keys(self, queue: str) -> QueueKeys:
        base = f"{self.prefix}:{{q:{queue}}}"
        return QueueKeys(
            f"{base}:order", f"{base}:entry", f"{base}:claimed", f"{base}:meta", f"{base}:lock"
        )

    def where_key(self, call_sid: str) -> str:
        return f"{self.prefix}:where:{{{call_sid}}}"

    async def _run(self, script: Script, keys: Sequence[str], *args: _Arg) -> Any:
        """Run `script` on `keys` (all of one hash tag) by its SHA; if Redis restarted or
        flushed its scripts, by its text, which loads it again (EVAL goes where EVALSHA went:
        on a cluster, the master of the keys' slot, whatever the other masters do)."""
        try:
            try:
                return await self._execute("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await self._execute("EVAL", script.source, len(keys), *keys, *args)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    async def _command(self, *args: _Arg) -> Any:
        try:
            return await self._execute(*args)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    # -- places in a queue --

    async def join(self, queue: str, waiter: Waiter, max_size: int) -> QueuePlace:
        k = self.keys(queue)
        outcome, position, size = await self._run(
            _JOIN,
            (k.order, k.entry, k.claimed),
            waiter.member,
            _encode(waiter),
            waiter.score,
            max_size,
        )
        place = QueuePlace(outcome=JoinOutcome(_text(outcome)), position=position, size=size)
        if place.outcome is not JoinOutcome.FULL:
            await self._command("SET", self.where_key(waiter.call_sid), queue, "EX", WHERE_TTL)
        return place

    async def place(self, queue: str, member: str) -> QueuePlace:
        k = self.keys(queue)
        outcome, position, size = await self._run(_PLACE, (k.order, k.claimed), member)
        return QueuePlace(outcome=JoinOutcome(_text(outcome)), position=position, size=size)

    async def leave(self, queue: str, member: str) -> Waiter | None:
        k = self.keys(queue)
        raw = await self._run(_LEAVE, (k.order, k.entry), member)
        if raw is None:
            return None
        waiter = _waiter.decode(raw)
        await self._forget_where(waiter.call_sid, queue)
        return waiter

    async def waiting(self, queue: str, offset: int, limit: int) -> tuple[list[Waiter], int]:
        k = self.keys(queue)
        total, *entries = await self._run(
            _WAITING, (k.order, k.entry), max(offset, 0), max(limit, 0)
        )
        return [_waiter.decode(raw) for raw in entries], total

    async def oldest(self, queue: str) -> tuple[int, float | None]:
        k = self.keys(queue)
        size, ms = await self._run(_OLDEST, (k.order,), PRIORITY_BAND, MAX_PRIORITY + 1)
        return int(size), None if ms is None else float(ms) / 1000

    async def to_callback(
        self, queue: str, member: str, number: str, not_before: float = 0.0
    ) -> Waiter | None:
        k = self.keys(queue)
        raw = await self._run(
            _TO_CALLBACK,
            (k.order, k.entry, k.claimed),
            member,
            number,
            _CALLBACK_PREFIX,
            not_before,
        )
        return None if raw is None else _waiter.decode(raw)

    async def requeue(self, queue: str, waiter: Waiter) -> None:
        k = self.keys(queue)
        await self._run(
            _REQUEUE, (k.order, k.entry, k.claimed), waiter.member, _encode(waiter), waiter.score
        )
        await self._command("SET", self.where_key(waiter.call_sid), queue, "EX", WHERE_TTL)

    async def where(self, call_sid: str) -> str | None:
        raw = await self._command("GET", self.where_key(call_sid))
        return None if raw is None else _text(raw)

    async def _forget_where(self, call_sid: str, queue: str) -> None:
        """Best effort: a key left behind lapses within a day, so an outage here is not one
        worth failing the leave (already done) for."""
        with contextlib.suppress(StoreUnavailable):
            await self._run(_DELETE_IF, (self.where_key(call_sid),), queue)

    # -- the scheduler --

    async def lock(self, queue: str, token: str, ttl: float) -> bool:
        held = await self._run(_LOCK, (self.keys(queue).lock,), token, max(1, round(ttl * 1000)))
        return bool(held)

    async def unlock(self, queue: str, token: str) -> None:
        await self._run(_DELETE_IF, (self.keys(queue).lock,), token)

    async def claim(self, queue: str, member: str, reservation: str, agent: str) -> Waiter | None:
        k = self.keys(queue)
        raw = await self._run(
            _CLAIM, (k.order, k.entry, k.claimed, k.meta), member, reservation, agent
        )
        return None if raw is None else _waiter.decode(raw)

    async def unclaim(self, queue: str, member: str, reservation: str) -> bool:
        k = self.keys(queue)
        return bool(await self._run(_UNCLAIM, (k.order, k.entry, k.claimed), member, reservation))

    async def done(self, queue: str, member: str, reservation: str) -> Waiter | None:
        k = self.keys(queue)
        raw = await self._run(_DONE, (k.entry, k.claimed), member, reservation)
        if raw is None:
            return None
        waiter = _waiter.decode(raw)
        await self._forget_where(waiter.call_sid, queue)
        return waiter

    async def claimed_by(self, queue: str, member: str) -> str | None:
        raw = await self._command("HGET", self.keys(queue).claimed, member)
        return None if raw is None else _text(raw)

    async def last_agent(self, queue: str) -> str | None:
        raw = await self._command("HGET", self.keys(queue).meta, "last_agent")
        return None if raw is None else _text(raw)

    # -- agents --

    async def agents(self, ids: Sequence[str]) -> dict[str, AgentLive]:
        if not ids:
            return {}
        found = await self._command("HMGET", self.live_key, *ids)
        return {agent: _agent.decode(raw) for agent, raw in zip(ids, found, strict=True) if raw}

    async def set_status(
        self, agent: str, status: AgentStatus, now: float, wrap_until: float = 0.0
    ) -> AgentLive:
        raw = await self._run(
            _SET_STATUS,
            (self.live_key,),
            agent,
            status.value,
            now,
            wrap_until,
            _encode(AgentLive(agent=agent)),
        )
        return _agent.decode(raw)

    async def forget_agent(self, agent: str) -> None:
        await self._command("HDEL", self.live_key, agent)

    async def reserve(self, reservation: Reservation, now: float) -> bool:
        held = await self._run(
            _RESERVE,
            (self.live_key, self.res_key),
            reservation.agent,
            reservation.id,
            _encode(reservation),
            now,
        )
        return bool(held)

    async def reservation(self, reservation: str) -> Reservation | None:
        raw = await self._command("HGET", self.res_key, reservation)
        return None if raw is None else _reservation.decode(raw)

    async def reservations(self) -> list[Reservation]:
        return [_reservation.decode(raw) for raw in await self._command("HVALS", self.res_key)]

    async def connected(self, reservation: str, now: float, until: float) -> Reservation | None:
        raw = await self._run(_CONNECTED, (self.res_key,), reservation, now, until)
        return None if raw is None else _reservation.decode(raw)

    async def finish(self, reservation: str, now: float, wrap_until: float) -> Reservation | None:
        return await self._end("finish", reservation, now, wrap_until)

    async def missed(self, reservation: str, now: float) -> Reservation | None:
        return await self._end("missed", reservation, now, 0.0)

    async def release(self, reservation: str, now: float) -> Reservation | None:
        return await self._end("release", reservation, now, 0.0)

    async def _end(
        self, how: str, reservation: str, now: float, wrap_until: float
    ) -> Reservation | None:
        raw = await self._run(
            _END, (self.live_key, self.res_key), how, reservation, now, wrap_until
        )
        return None if raw is None else _reservation.decode(raw)

    # -- what a queue learned --

    async def figures(self, queue: str) -> Figures:
        raw = await self._command("HGET", self.keys(queue).meta, "figures")
        return Figures() if raw is None else _figures.decode(raw)

    async def learn(
        self,
        queue: str,
        *,
        handle_time: float | None = None,
        answered_wait: float | None = None,
        abandoned: bool | None = None,
    ) -> Figures:
        raw = await self._run(
            _LEARN,
            (self.keys(queue).meta,),
            "" if handle_time is None else float(handle_time),
            "" if answered_wait is None else float(answered_wait),
            "" if abandoned is None else ("1" if abandoned else "0"),
            _EMPTY_FIGURES,
        )
        return _figures.decode(raw)

    # -- the store --

    async def ping(self) -> bool:
        return await ping(self.client)

    async def aclose(self) -> None:
        await self.client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
