"""Where the history writer reads from: the Redis call-event streams (through a consumer
group), or the memory store's log. Both hand out deliveries and forget them only when acked,
after the database committed them."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from flowpbx.engine.call_events import BadCallEvent, StepRecord
from flowpbx.engine.progress import Report
from flowpbx.engine.storage import StoreUnavailable
from flowpbx.history.projection import Entry
from flowpbx.store.memory import EventLog
from flowpbx.store.redis import EVENT_SHARDS, REDIS_ERRORS, RedisClient, is_cluster, stream_key

log = logging.getLogger("flowpbx.history")

GROUP = "flowpbx-history"
CLAIM_IDLE_MS = 60_000
"""Entries another writer took and has not acknowledged for a minute are taken over."""
CLAIM_EVERY_SECONDS = 30.0
BLOCK_MS = 1000
CLUSTER_POLL_SECONDS = 0.1
"""On a Redis Cluster, how long the reader waits after finding nothing before it looks again
(one blocking read of every stream is not possible there: each stream has its own slot)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One entry handed to the writer: `entry` is None when it cannot be read (it is logged
    and acknowledged: it would never become readable)."""

    stream: str
    id: str
    entry: Entry | None


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits for the database: entries not yet committed, and the oldest one's age."""

    count: int
    oldest_seconds: float | None
    limit: int | None = None
    """How many entries the call store keeps at most: past it the oldest are dropped."""


class EventSource(Protocol):
    async def setup(self) -> None: ...

    async def read(self, limit: int) -> list[Delivery]:
        """Up to `limit` new deliveries; waits a little (about a second) when there are none."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None: ...

    async def backlog(self) -> Backlog: ...

    async def aclose(self) -> None: ...


def decode(fields: dict[bytes, bytes]) -> Entry:
    """A stream entry: a step record or a progress report. Raises BadCallEvent."""
    if b"record" in fields:
        return StepRecord.from_json(fields[b"record"])
    if b"report" in fields:
        return Report.from_json(fields[b"report"])
    raise BadCallEvent(f"a stream entry with neither record nor report: {sorted(fields)!r}")


def consumer_name() -> str:
    """This process's name in the consumer group: host and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


class RedisEventSource:
    """The 64 call-event streams, read through one consumer group shared by every writer.

    An entry is acknowledged and deleted once committed, so a stream holds exactly what
    history has not stored yet: its length is the backlog. Entries a writer took and never
    acknowledged (it stopped) are claimed by another after `CLAIM_IDLE_MS`.

    On one Redis, a read is one XREADGROUP of all the streams that blocks up to `BLOCK_MS`.
    On a Redis Cluster the streams live in 64 slots spread over the masters, and a command
    may only name keys of one slot: a read is one non-blocking XREADGROUP per stream, sent
    in one pipeline (grouped by master, the masters asked at once), and when none had
    anything the reader waits `CLUSTER_POLL_SECONDS` before the writer asks again.
    """

    def __init__(
        self,
        client: RedisClient,
        consumer: str | None = None,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        limit: int | None = None,
    ) -> None:
        self.client = client
        self.limit = limit
        self.consumer = consumer or consumer_name()
        self.claim_idle_ms = claim_idle_ms
        self.keys = [stream_key(n) for n in range(EVENT_SHARDS)]
        self.cluster = is_cluster(client)
        self._own_pending = True
        self._claimed_at = 0.0

    async def setup(self) -> None:
        # (Again) at each start: entries this consumer took and never acknowledged come first.
        self._own_pending = True
        try:
            for key in self.keys:
                try:
                    # From the stream's start: entries made before history ran are kept too.
                    await self.client.xgroup_create(key, GROUP, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    async def read(self, limit: int) -> list[Delivery]:
        try:
            found = await self._next(limit)
            _stop_if_cancelled()
            return found
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise StoreUnavailable(f"Redis: {exc}") from exc
            # Redis lost its data (restarted without persistence): the group is gone with it.
            log.warning("call history: the Redis consumer group is gone; creating it again")
            await self.setup()
            return []
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    async def _next(self, limit: int) -> list[Delivery]:
        if self._own_pending:
            # Entries this consumer took before a restart and never acknowledged.
            found = await self._read("0", limit, block=None)
            if found:
                return found
            self._own_pending = False
        if time.monotonic() - self._claimed_at > CLAIM_EVERY_SECONDS:
            self._claimed_at = time.monotonic()
            claimed = await self._claim(limit)
            if claimed:
                return claimed
        return await self._read(">", limit, block=BLOCK_MS)

    async def _read(self, start: str, limit: int, block: int | None) -> list[Delivery]:
        # COUNT is per stream: a read of all of them brings about `limit` entries (the
        # streams are never evenly full).
        count = max(1, 2 * limit // len(self.keys))
        answer: Any
        if self.cluster:
            answer = await self._read_each(start, count)
            if not answer and block:
                await asyncio.sleep(CLUSTER_POLL_SECONDS)
        else:
            streams: dict[Any, Any] = dict.fromkeys(self.keys, start)
            answer = await self.client.xreadgroup(
                GROUP, self.consumer, streams, count=count, block=block
            )
        deliveries: list[Delivery] = []
        for key, entries in answer or []:
            stream = key.decode() if isinstance(key, bytes) else str(key)
            for entry_id, fields in entries:
                deliveries.append(self._delivery(stream, entry_id, fields))
        return deliveries[:limit] if start == "0" else deliveries

    async def _read_each(self, start: str, count: int) -> list[Any]:
        """Every stream read on its own (a cluster: one slot per command), in one pipeline
        that goes to the masters at once; the answers as one XREADGROUP of them all would
        give them. Each command names its master: left to itself, the cluster client would
        ask a server where the keys of every XREADGROUP are (COMMAND GETKEYS), a round trip
        per stream. A stream whose slot moved is answered MOVED and sent again by the client
        to the new master."""
        client = self.client
        assert isinstance(client, RedisCluster)
        await client.initialize()  # learns the slots' masters once (and after a failover)
        async with client.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.execute_command(
                    "XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", count,
                    "STREAMS", key, start,
                    target_nodes=client.get_node_from_key(key),
                )  # fmt: skip
            answers: list[Any] = await pipe.execute()
        return [stream for answer in answers for stream in answer or []]

    async def _claim(self, limit: int) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for key in self.keys:
            answer: Any = await self.client.xautoclaim(
                key, GROUP, self.consumer, self.claim_idle_ms, start_id="0-0", count=limit
            )
            for entry_id, fields in answer[1]:
                if fields:  # a claimed entry deleted meanwhile comes back empty
                    deliveries.append(self._delivery(key, entry_id, fields))
            if len(deliveries) >= limit:
                break
        if deliveries:
            log.warning("took over %d unacknowledged history entries", len(deliveries))
        return deliveries

    @staticmethod
    def _delivery(stream: str, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Delivery:
        ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        try:
            return Delivery(stream, ident, decode(fields))
        except BadCallEvent as exc:
            log.error("history entry %s %s cannot be read and is skipped: %s", stream, ident, exc)
            return Delivery(stream, ident, None)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        by_stream: dict[str, list[str]] = {}
        for delivery in deliveries:
            by_stream.setdefault(delivery.stream, []).append(delivery.id)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for stream, ids in by_stream.items():
                    pipe.xack(stream, GROUP, *ids)
                    pipe.xdel(stream, *ids)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    async def backlog(self) -> Backlog:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.xlen(key)
                    pipe.xrange(key, count=1)
                answers = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        count = sum(answers[0::2])
        firsts = [entries[0][0] for entries in answers[1::2] if entries]
        if not firsts:
            return Backlog(count, None, self.limit)
        oldest_ms = min(int(_text(ident).split("-")[0]) for ident in firsts)
        return Backlog(count, max(0.0, time.time() - oldest_ms / 1000), self.limit)

    async def aclose(self) -> None:
        await self.client.aclose()


class MemoryEventSource:
    """The memory store's log, for one process without Redis."""

    def __init__(self, events: EventLog, poll_seconds: float = 0.2) -> None:
        self.events = events
        self.poll_seconds = poll_seconds
        self._delivered = 0

    async def setup(self) -> None:
        return None

    async def read(self, limit: int) -> list[Delivery]:
        found = self.events.read(self._delivered, limit)
        if not found:
            await asyncio.sleep(self.poll_seconds)
            found = self.events.read(self._delivered, limit)
        if found:
            self._delivered = found[-1][0]
        return [Delivery("memory", str(number), entry) for number, entry in found]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            self.events.ack(max(int(d.id) for d in deliveries))

    async def backlog(self) -> Backlog:
        oldest = self.events.oldest()
        age = None if oldest is None else max(0.0, time.time() - oldest)
        return Backlog(len(self.events), age, self.events.max_entries)

    async def aclose(self) -> None:
        return None


def _stop_if_cancelled() -> None:
    """Stop the task if it was asked to stop and a Redis call swallowed the cancellation:
    Python 3.11's asyncio.wait_for, through which redis-py sends every command, returns the
    result instead of raising when the cancellation comes just as the send completes. The
    writer would go on reading (every 0.1 s on a cluster) and never stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
