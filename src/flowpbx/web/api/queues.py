"""The REST endpoints of queues and agents: every queue at a glance, the seed's queue status with
each place's estimated wait, a queue's statistics, and the agent directory with live statuses.
Handlers parse, check who may do what, call the queue store or run a directory or statistics
function in a worker thread, and translate errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from flowpbx.db.database import Database
from flowpbx.language.catalog import Catalog
from flowpbx.language.flow import QueueSpec
from flowpbx.privacy import mask_number
from flowpbx.queues import directory, stats
from flowpbx.queues.directory import SOFTPHONE, AgentDef, AgentDirectory, AgentError, AgentNotFound
from flowpbx.queues.engine import Staffing
from flowpbx.queues.estimate import estimate_waits
from flowpbx.queues.model import AgentLive, AgentStatus, Waiter, WaiterKind
from flowpbx.queues.store import QueueStore
from flowpbx.web.api.framework import (
    ApiError,
    Context,
    Handler,
    Operation,
    forbidden,
    pack_cursor,
    unpack_cursor,
    utc_now,
)
from flowpbx.web.api.history import report_range
from flowpbx.web.api.queue_shapes import (
    AgentChange,
    AgentCounts,
    AgentDeleted,
    AgentList,
    AgentOut,
    AgentQuery,
    AgentRequest,
    AgentStatusRequest,
    QueuedCall,
    QueueList,
    QueueQuery,
    QueueStatsQuery,
    QueueStatsReport,
    QueueStatus,
    QueueSummary,
)

DEFAULT_STATS_RANGE = dt.timedelta(hours=24)
DEFAULT_WRAP_UP = cast(
    int, next(f.default for f in dataclasses.fields(QueueSpec) if f.name == "wrap_up")
)
"""An agent serving no loaded queue who sets wrap-up by hand gets a queue's default wrap-up."""


@dataclass
class QueueApi:
    db: Database
    catalog: Catalog
    store: QueueStore
    directory: AgentDirectory
    clock: Callable[[], dt.datetime] = field(default=utc_now)
    on_agent_change: Callable[[], None] | None = None
    """Wakes the queue scheduler when agents change (a new one, another status...)."""
    reads: Database | None = None
    """Where the statistics are read (DATABASE_READ_URL: a read replica), else `db`."""

    # -- GET /api/queues --

    async def list_queues(self, ctx: Context) -> QueueList:
        now = self.clock().timestamp()
        agents = await self.directory.all()
        lives = await self.store.agents([a.id for a in agents])
        summaries = []
        for name, spec in sorted(self.catalog.queues.items()):
            # With priorities the one waiting longest need not be at the front: the store
            # finds them without reading every place.
            size, oldest = await self.store.oldest(name)
            figures = await self.store.figures(name)
            serving = [lives.get(a.id) for a in agents if name in a.skills]
            summaries.append(
                QueueSummary(
                    id=name,
                    name=name,
                    current_size=size,
                    max_size=spec.max_size,
                    average_wait_time=_seconds(figures.answered_wait),
                    longest_wait_time=None if oldest is None else _seconds(now - oldest),
                    agents=_counts(serving, now),
                )
            )
        return QueueList(queues=summaries)

    # -- GET /api/queues/{queueId} --

    async def queue(self, ctx: Context) -> QueueStatus:
        name, spec = self._spec(ctx)
        query: QueueQuery = ctx.query
        offset = _offset(query.cursor)
        now = self.clock().timestamp()
        waiters, size = await self.store.waiting(name, offset, query.limit)
        figures = await self.store.figures(name)
        agents = await self.directory.serving(name)
        staff = Staffing.of((await self.store.agents([a.id for a in agents])).values(), now)
        waits = estimate_waits(
            len(waiters),
            offset + 1,
            serving=staff.serving,
            free=staff.free,
            figures=figures,
            default_handle=spec.handle_time,
        )
        more = offset + len(waiters) < size
        return QueueStatus(
            id=name,
            name=name,
            current_size=size,
            max_size=spec.max_size,
            average_wait_time=_seconds(figures.answered_wait),
            calls=[
                _queued_call(waiter, offset + index + 1, wait, reveal=ctx.key.admin)
                for index, (waiter, wait) in enumerate(zip(waiters, waits, strict=True))
            ],
            next_cursor=pack_cursor(f"q{offset + len(waiters)}") if more and waiters else None,
        )

    # -- GET /api/queues/{queueId}/stats --

    async def queue_stats(self, ctx: Context) -> QueueStatsReport:
        ctx.require_admin()
        name, spec = self._spec(ctx)
        query: QueueStatsQuery = ctx.query
        since, before = report_range(
            query.from_, query.to, dt.UTC, self.clock(), DEFAULT_STATS_RANGE
        )
        db = self.reads or self.db
        found = await db.run(stats.queue_stats, db, name, since, before, spec.service_level)
        return QueueStatsReport(
            queue=name,
            from_=since,
            to=before,
            service_level_threshold=spec.service_level,
            offered=found.offered,
            turned_away=found.turned_away,
            answered=found.answered,
            abandoned=found.abandoned,
            timed_out=found.timed_out,
            left=found.left,
            callbacks=found.callbacks,
            waiting=found.waiting,
            missed=found.missed,
            average_wait=_rounded(found.average_wait),
            longest_wait=_rounded(found.longest_wait),
            service_level_percent=_rounded(found.service_level_percent),
            abandon_rate_percent=_rounded(found.abandon_rate_percent),
            average_talk=_rounded(found.average_talk),
            calls_per_agent=dict(found.calls_per_agent),
        )

    # -- /api/agents --

    async def list_agents(self, ctx: Context) -> AgentList:
        query: AgentQuery = ctx.query
        if not ctx.key.admin and ctx.key.identity is None:
            raise forbidden("this key has no identity: listing agents needs an admin key")
        agents = await self.db.run(directory.list_agents, self.db, query.queue)
        if not ctx.key.admin:  # an agent's key sees that agent only
            agents = [a for a in agents if _identity(a.target) == ctx.key.identity]
        return AgentList(agents=await self._answers(agents))

    async def agent(self, ctx: Context) -> AgentOut:
        agent = await self._agent(ctx)
        _act_for(ctx, agent)
        return (await self._answers([agent]))[0]

    async def create_agent(self, ctx: Context) -> AgentOut:
        ctx.require_admin()
        body: AgentRequest = ctx.body
        target = _target(body.identity, body.number)
        if target is None:
            raise ApiError(
                422, "invalid", "identity: give the agent's softphone identity, or a number"
            )
        self._check_queues(body.queues)
        try:
            agent = await self.db.run(
                partial(directory.create_agent, now=self.clock()),
                self.db,
                body.id,
                body.name,
                target,
                body.queues,
            )
        except AgentError as exc:
            raise _refused(exc, body.identity) from None
        self._changed()
        return (await self._answers([agent]))[0]

    async def update_agent(self, ctx: Context) -> AgentOut:
        ctx.require_admin()
        body: AgentChange = ctx.body
        if body.queues is not None:
            self._check_queues(body.queues)
        agent_id = ctx.request.path_params["agentId"]
        change = partial(
            directory.update_agent,
            name=body.name,
            target=_target(body.identity, body.number),
            queues=body.queues,
            now=self.clock(),
        )
        try:
            agent = await self.db.run(change, self.db, agent_id)
        except AgentNotFound:
            raise _no_agent(agent_id) from None
        except AgentError as exc:
            raise _refused(exc, body.identity) from None
        self._changed()
        return (await self._answers([agent]))[0]

    async def delete_agent(self, ctx: Context) -> AgentDeleted:
        ctx.require_admin()
        agent_id = ctx.request.path_params["agentId"]
        try:
            await self.db.run(directory.delete_agent, self.db, agent_id)
        except AgentNotFound:
            raise _no_agent(agent_id) from None
        await self.store.forget_agent(agent_id)
        self._changed()
        return AgentDeleted(id=agent_id)

    async def set_status(self, ctx: Context) -> AgentOut:
        agent = await self._agent(ctx)
        _act_for(ctx, agent)
        body: AgentStatusRequest = ctx.body
        status = AgentStatus(body.status)
        moment = self.clock()
        now = moment.timestamp()
        wrap_until = now + self._wrap_up(agent) if status is AgentStatus.WRAP_UP else 0.0
        live = await self.store.set_status(agent.id, status, now, wrap_until)
        try:
            await self.db.run(partial(directory.save_status, now=moment), self.db, agent.id, status)
        except AgentNotFound:  # removed meanwhile
            await self.store.forget_agent(agent.id)
            raise _no_agent(agent.id) from None
        self._changed()
        return _agent_out(agent, live, now)

    # -- helpers --

    def _spec(self, ctx: Context) -> tuple[str, QueueSpec]:
        name: str = ctx.request.path_params["queueId"]
        spec = self.catalog.queues.get(name)
        if spec is None:
            raise ApiError(
                404, "not_found", f"no queue {name[:64]!r}; {_known(self.catalog.queues)}"
            )
        return name, spec

    def _check_queues(self, queues: Mapping[str, int]) -> None:
        unknown = sorted(set(queues) - set(self.catalog.queues))
        if unknown:
            names = ", ".join(repr(q) for q in unknown)
            raise ApiError(
                422,
                "unknown_queue",
                f"queues: no queue {names} in the flows; {_known(self.catalog.queues)}",
            )

    def _wrap_up(self, agent: AgentDef) -> int:
        """The longest wrap-up of the loaded queues the agent serves."""
        queues = self.catalog.queues
        return max(
            (queues[q].wrap_up for q in agent.skills if q in queues), default=DEFAULT_WRAP_UP
        )

    async def _agent(self, ctx: Context) -> AgentDef:
        agent_id: str = ctx.request.path_params["agentId"]
        agent = await self.db.run(directory.get_agent, self.db, agent_id)
        if agent is None:
            raise _no_agent(agent_id)
        return agent

    async def _answers(self, agents: Sequence[AgentDef]) -> list[AgentOut]:
        lives = await self.store.agents([a.id for a in agents])
        now = self.clock().timestamp()
        return [_agent_out(a, lives.get(a.id), now) for a in agents]

    def _changed(self) -> None:
        self.directory.invalidate()
        if self.on_agent_change is not None:
            self.on_agent_change()

    def operations(self) -> list[Operation]:
        return queue_operations(self)


def queue_operations(api: QueueApi | None) -> list[Operation]:
    """The queue and agent endpoints: `api`'s, or for a service built without queues (None),
    the same endpoints answering 503."""

    def handler(method: Callable[[QueueApi, Context], Awaitable[Any]]) -> Handler:
        return _without_queues if api is None else partial(method, api)

    queue_path = "/api/queues/{queueId}"
    agent_path = "/api/agents/{agentId}"
    return [
        Operation(
            "GET",
            "/api/queues",
            "listQueues",
            "Every queue at a glance: size, waits, agents by status",
            handler(QueueApi.list_queues),
            QueueList,
            tags=("queues",),
            description=(
                "The queues the loaded flows declare, by name. `averageWaitTime` is the recent "
                "average wait of answered callers (null until one is answered); "
                "`longestWaitTime` the wait so far of the place waiting longest."
            ),
        ),
        Operation(
            "GET",
            queue_path,
            "getQueue",
            "A queue's status and the calls waiting in it, in order, with their estimated wait",
            handler(QueueApi.queue),
            QueueStatus,
            query=QueueQuery,
            errors=(404,),
            tags=("queues",),
            description=(
                "The seed's shape, with `nextCursor` and each place's `kind`. "
                "`estimatedWaitTime` is null when no agent serves the queue. An unknown "
                "queue is 404, naming the queues there are. Pages are by place: a caller "
                "leaving or answered between two pages shifts the places after it."
            ),
        ),
        Operation(
            "GET",
            f"{queue_path}/stats",
            "getQueueStats",
            "A queue's statistics over a period (admin keys only)",
            handler(QueueApi.queue_stats),
            QueueStatsReport,
            query=QueueStatsQuery,
            errors=(404,),
            tags=("queues",),
            description=(
                "Calls that joined the queue from `from` (included) to `to` (excluded), the "
                "last 24 hours by default, at most 366 days. Definitions: docs/api.md, "
                "Queue statistics."
            ),
        ),
        Operation(
            "GET",
            "/api/agents",
            "listAgents",
            "Agents with their live status",
            handler(QueueApi.list_agents),
            AgentList,
            query=AgentQuery,
            tags=("agents",),
            description=(
                "An admin key sees every agent; a key with an identity, the agent with that "
                "softphone identity (if any). By id."
            ),
        ),
        Operation(
            "POST",
            "/api/agents",
            "createAgent",
            "Add an agent (admin keys only)",
            handler(QueueApi.create_agent),
            AgentOut,
            status=201,
            body=AgentRequest,
            tags=("agents",),
            description=(
                "Reached at a softphone (`identity`) or a phone (`number`), exactly one. "
                "Queues the flows do not declare are 422, naming them. The agent starts "
                "offline."
            ),
        ),
        Operation(
            "GET",
            agent_path,
            "getAgent",
            "One agent",
            handler(QueueApi.agent),
            AgentOut,
            errors=(404,),
            tags=("agents",),
            description="Admin keys, and the key with the agent's softphone identity.",
        ),
        Operation(
            "PATCH",
            agent_path,
            "updateAgent",
            "Change an agent's name, phone or queues (admin keys only)",
            handler(QueueApi.update_agent),
            AgentOut,
            body=AgentChange,
            errors=(404,),
            tags=("agents",),
        ),
        Operation(
            "DELETE",
            agent_path,
            "deleteAgent",
            "Remove an agent (admin keys only)",
            handler(QueueApi.delete_agent),
            AgentDeleted,
            errors=(404,),
            tags=("agents",),
            description="The agent and their live state are gone; they are offered no calls.",
        ),
        Operation(
            "PUT",
            f"{agent_path}/status",
            "setAgentStatus",
            "Set an agent's status",
            handler(QueueApi.set_status),
            AgentOut,
            body=AgentStatusRequest,
            errors=(404,),
            tags=("agents",),
            description=(
                "Admin keys, and the key with the agent's softphone identity. `wrap-up` ends "
                "by itself after the longest `wrap_up` of the agent's queues. Calls are "
                "offered to `available` agents only; `offline` agents do not count as "
                "serving a queue."
            ),
        ),
    ]


async def _without_queues(ctx: Context) -> Any:
    raise ApiError(503, "not_configured", "queues are not part of this service")


# -- answers --


def _queued_call(waiter: Waiter, position: int, wait: int | None, *, reveal: bool) -> QueuedCall:
    """A place as the API shows it; callers' numbers are whole for admin keys only (agents and
    wallboards see them masked, as logs do)."""
    callback = waiter.kind is WaiterKind.CALLBACK
    number = waiter.number if callback else waiter.caller
    return QueuedCall(
        call_sid=waiter.call_sid,
        from_=number if reveal else mask_number(number),
        queued_at=_time(waiter.queued_at),
        position=position,
        estimated_wait_time=wait,
        kind=waiter.kind.value,
    )


def _counts(lives: Iterable[AgentLive | None], now: float) -> AgentCounts:
    counts = Staffing.of(lives, now).by_status
    return AgentCounts(
        available=counts[AgentStatus.AVAILABLE],
        busy=counts[AgentStatus.BUSY],
        wrap_up=counts[AgentStatus.WRAP_UP],
        offline=counts[AgentStatus.OFFLINE],
    )


def _agent_out(agent: AgentDef, live: AgentLive | None, now: float) -> AgentOut:
    identity = _identity(agent.target)
    status = AgentStatus.OFFLINE if live is None else live.status_at(now)
    wrapping = live is not None and status is AgentStatus.WRAP_UP
    return AgentOut(
        id=agent.id,
        name=agent.name,
        identity=identity,
        number=agent.target if identity is None else None,
        queues=dict(agent.skills),
        status=status.value,
        since=None if live is None or not live.since else _time(live.since),
        wrap_up_until=_time(live.wrap_until) if live is not None and wrapping else None,
        on_call=live is not None and bool(live.reservation),
        answered=0 if live is None else live.answered,
        missed=0 if live is None else live.missed,
    )


def _time(seconds: float) -> dt.datetime:
    """Unix seconds as a UTC time, to the second."""
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC)


def _seconds(value: float | None) -> int | None:
    return None if value is None else max(0, round(value))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# -- requests --


def _identity(target: str) -> str | None:
    return target.removeprefix(SOFTPHONE) if target.startswith(SOFTPHONE) else None


def _target(identity: str | None, number: str | None) -> str | None:
    """What is dialled to reach the agent; None when neither is given."""
    if identity is not None and number is not None:
        raise ApiError(422, "invalid", "number: give a softphone identity or a number, not both")
    return f"{SOFTPHONE}{identity}" if identity is not None else number


def _act_for(ctx: Context, agent: AgentDef) -> None:
    """Refuse (403) unless the key is an admin key or has the agent's softphone identity."""
    identity = _identity(agent.target)
    if identity is None and not ctx.key.admin:
        raise forbidden(f"agent {agent.id!r} has no softphone identity: this needs an admin key")
    ctx.act_for(identity)


def _offset(cursor: str) -> int:
    return int(unpack_cursor(cursor, r"q([0-9]{1,9})").group(1)) if cursor else 0


def _known(queues: Mapping[str, QueueSpec]) -> str:
    return f"the queues are {', '.join(sorted(queues))}" if queues else "the flows declare none"


def _no_agent(agent_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no agent {agent_id[:64]!r}")


def _refused(exc: AgentError, identity: str | None) -> ApiError:
    """The directory's refusal, naming the field of the request at fault."""
    where = exc.field
    if where == "target":
        where = "identity" if identity is not None else "number"
    return ApiError(422, "invalid", f"{where}: {exc}")
