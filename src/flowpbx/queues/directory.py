"""The agent directory: who the agents are, how to reach them, which queues they serve and
with what skill, and the last status each set. Kept in the database (tables `agents` and
`agent_queues`), so that it outlives a queue store that lost its data.

The functions are synchronous, as the history queries are: the REST API and the CLI run them
with `Database.run`. `AgentDirectory` is what the queue scheduler reads: the same data, cached
for a moment, so that a scheduler ticking several times a second asks the database once in a
while rather than on every tick.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flowpbx.db.database import Database
from flowpbx.db.models import Agent, AgentQueue
from flowpbx.dialing.rules import is_e164
from flowpbx.errors import FlowpbxError
from flowpbx.queues.model import AgentStatus
from flowpbx.twilio.tokens import is_identity

AGENT_ID: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
QUEUE_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
"""As flows name queues (schema: enqueue_node.queue)."""
SKILL_MIN, SKILL_MAX, DEFAULT_SKILL = 1, 10, 5
NAME_MAX = 100
SOFTPHONE = "client:"
CACHE_TTL = 2.0


class AgentError(FlowpbxError):
    """An agent cannot be made, changed or found as asked. `field` names the input at fault
    (id, name, target, queues or status), for an API to point at it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class AgentNotFound(AgentError):
    """No agent has the id given (an API answers 404)."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"no agent {agent_id[:64]!r}", "id")


@dataclass(frozen=True, slots=True)
class AgentDef:
    """An agent as the directory knows them."""

    id: str
    name: str
    target: str
    """What is dialled: 'client:<identity>' (the browser softphone) or an E.164 number."""
    status: AgentStatus
    """The last status the agent set (their live state is in the queue store)."""
    skills: Mapping[str, int] = field(hash=False)
    """Queue -> skill (1 to 10; higher is offered calls first), in queue order. Read-only."""


# -- checks --


def check_id(agent_id: str) -> str:
    if not isinstance(agent_id, str) or AGENT_ID.fullmatch(agent_id) is None:
        raise AgentError(
            f"agent id {str(agent_id)[:40]!r}: expected 1 to 64 lowercase letters, digits, "
            "'_', '.' or '-', starting with a letter or digit (like 'ana')",
            "id",
        )
    return agent_id


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX or not name.isprintable():
        raise AgentError(
            f"agent name {name[:40]!r}: expected 1 to {NAME_MAX} printable characters", "name"
        )
    return name


def check_target(target: str) -> str:
    """'client:<identity>' (a Twilio client identity) or an E.164 number."""
    target = target.strip()
    if target.startswith(SOFTPHONE):
        if is_identity(target[len(SOFTPHONE) :]):
            return target
    elif is_e164(target):
        return target
    raise AgentError(
        f"agent target {target[:40]!r}: expected 'client:<identity>' (letters, digits and "
        "underscores: the browser softphone) or a number in E.164 form, like +34912345678",
        "target",
    )


def check_queues(queues: Mapping[str, int]) -> dict[str, int]:
    """Queue ids as flows name them, each with a skill from 1 to 10; sorted by queue."""
    checked: dict[str, int] = {}
    for queue, skill in queues.items():
        if not isinstance(queue, str) or QUEUE_ID.fullmatch(queue) is None:
            raise AgentError(
                f"queue {str(queue)[:40]!r}: expected a lowercase queue id like "
                "'general-queue' (letters, digits, '_' and '-', at most 64)",
                "queues",
            )
        if isinstance(skill, bool) or not isinstance(skill, int):
            raise AgentError(f"queue {queue!r}: the skill must be a whole number", "queues")
        if not SKILL_MIN <= skill <= SKILL_MAX:
            raise AgentError(
                f"queue {queue!r}: skill {skill} is out of range: expected {SKILL_MIN} to "
                f"{SKILL_MAX} (higher is offered calls first)",
                "queues",
            )
        checked[queue] = skill
    return dict(sorted(checked.items()))


def check_status(status: AgentStatus | str) -> AgentStatus:
    try:
        return AgentStatus(status)
    except ValueError:
        expected = ", ".join(s.value for s in AgentStatus)
        raise AgentError(
            f"agent status {str(status)[:40]!r}: expected one of {expected}", "status"
        ) from None


# -- reading and writing --


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _defs(session: Session, agents: Iterable[Agent]) -> list[AgentDef]:
    """`agents` (in order) with their skills, fetched in one query."""
    rows = list(agents)
    skills: dict[str, dict[str, int]] = {row.id: {} for row in rows}
    if rows:
        query = (
            select(AgentQueue.agent_id, AgentQueue.queue, AgentQueue.skill)
            .where(AgentQueue.agent_id.in_(list(skills)))
            .order_by(AgentQueue.agent_id, AgentQueue.queue)
        )
        for agent_id, queue, skill in session.execute(query):
            skills[agent_id][queue] = skill
    return [
        AgentDef(
            id=row.id,
            name=row.name,
            target=row.target,
            status=check_status(row.status),
            skills=types.MappingProxyType(skills[row.id]),
        )
        for row in rows
    ]


def _refuse_taken(session: Session, agent_id: str | None, target: str | None, own: str) -> None:
    """An error when `agent_id` or `target` belongs to an agent other than `own`."""
    if agent_id is not None and session.get(Agent, agent_id) is not None:
        raise AgentError(f"agent {agent_id!r} exists already", "id")
    if target is not None:
        holder = session.scalar(select(Agent.id).where(Agent.target == target))
        if holder is not None and holder != own:
            raise AgentError(
                f"target {target!r} is agent {holder!r}'s already: each phone or softphone "
                "reaches one agent",
                "target",
            )


def _set_queues(session: Session, agent_id: str, queues: Mapping[str, int]) -> None:
    session.execute(delete(AgentQueue).where(AgentQueue.agent_id == agent_id))
    session.add_all(
        AgentQueue(agent_id=agent_id, queue=queue, skill=skill) for queue, skill in queues.items()
    )


def create_agent(
    db: Database,
    agent_id: str,
    name: str,
    target: str,
    queues: Mapping[str, int],
    *,
    now: dt.datetime | None = None,
) -> AgentDef:
    """A new agent, offline, serving `queues` (queue -> skill)."""
    agent_id = check_id(agent_id)
    name, target, skills = check_name(name), check_target(target), check_queues(queues)
    when = _now(now)
    try:
        with db.session() as session:
            _refuse_taken(session, agent_id, target, own=agent_id)
            row = Agent(
                id=agent_id,
                name=name,
                target=target,
                status=AgentStatus.OFFLINE.value,
                created_at=when,
                updated_at=when,
            )
            session.add(row)
            session.flush()
            _set_queues(session, agent_id, skills)
            session.flush()
            return _defs(session, [row])[0]
    except IntegrityError:
        # Another process made the same agent (or took the target) meanwhile: say which.
        with db.session() as session:
            _refuse_taken(session, agent_id, target, own=agent_id)
        raise


def get_agent(db: Database, agent_id: str) -> AgentDef | None:
    with db.session() as session:
        row = session.get(Agent, agent_id)
        return None if row is None else _defs(session, [row])[0]


def list_agents(db: Database, queue: str | None = None) -> list[AgentDef]:
    """Every agent, or those serving `queue`, by id."""
    query = select(Agent).order_by(Agent.id)
    if queue is not None:
        serving = select(AgentQueue.agent_id).where(AgentQueue.queue == queue)
        query = query.where(Agent.id.in_(serving))
    with db.session() as session:
        return _defs(session, session.scalars(query))


def update_agent(
    db: Database,
    agent_id: str,
    *,
    name: str | None = None,
    target: str | None = None,
    queues: Mapping[str, int] | None = None,
    now: dt.datetime | None = None,
) -> AgentDef:
    """Change what is given (None: kept); `queues` replaces the agent's queues and skills."""
    name = None if name is None else check_name(name)
    target = None if target is None else check_target(target)
    skills = None if queues is None else check_queues(queues)
    try:
        with db.session() as session:
            row = session.get(Agent, agent_id, with_for_update=db.dialect == "postgresql")
            if row is None:
                raise AgentNotFound(agent_id)
            _refuse_taken(session, None, target, own=agent_id)
            if name is not None:
                row.name = name
            if target is not None:
                row.target = target
            if skills is not None:
                _set_queues(session, agent_id, skills)
            row.updated_at = _now(now)
            session.flush()
            return _defs(session, [row])[0]
    except IntegrityError:
        with db.session() as session:
            _refuse_taken(session, None, target, own=agent_id)
        raise


def delete_agent(db: Database, agent_id: str) -> None:
    """Remove the agent and their queues."""
    with db.session() as session:
        if session.get(Agent, agent_id) is None:
            raise AgentNotFound(agent_id)
        # Not left to ON DELETE CASCADE: SQLite applies it only with its foreign_keys pragma.
        session.execute(delete(AgentQueue).where(AgentQueue.agent_id == agent_id))
        session.execute(delete(Agent).where(Agent.id == agent_id))


def save_status(
    db: Database, agent_id: str, status: AgentStatus | str, *, now: dt.datetime | None = None
) -> None:
    """Keep the status the agent set (for a queue store that lost its data to restore)."""
    checked = check_status(status)
    with db.session() as session:
        row = session.get(Agent, agent_id)
        if row is None:
            raise AgentNotFound(agent_id)
        if row.status != checked.value:
            row.status = checked.value
            row.updated_at = _now(now)


# -- the scheduler's view --


class AgentDirectory:
    """The agents, read from the database at most once every `ttl` seconds (by `clock`, a
    monotonic one unless given). A change made in this process is seen at once after
    `invalidate()`; one made elsewhere within `ttl`."""

    def __init__(
        self, db: Database, ttl: float = CACHE_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self._agents: list[AgentDef] | None = None
        self._loaded_at = 0.0
        self._generation = 0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Forget what was read: the next call reads the database again."""
        self._agents = None
        self._generation += 1

    def _fresh(self) -> list[AgentDef] | None:
        if self._agents is not None and self.clock() - self._loaded_at < self.ttl:
            return self._agents
        return None

    async def all(self) -> list[AgentDef]:
        """Every agent, by id."""
        agents = self._fresh()
        if agents is not None:
            return list(agents)
        async with self._lock:  # several callers at once: one query
            agents = self._fresh()
            while agents is None:
                generation, started = self._generation, self.clock()
                loaded = await self.db.run(list_agents, self.db)
                # Invalidated while reading: read again (what was read may predate the change).
                if generation == self._generation:
                    self._agents, self._loaded_at = loaded, started
                    agents = loaded
        return list(agents)

    async def serving(self, queue: str) -> list[AgentDef]:
        """The agents who serve `queue`, by id."""
        return [agent for agent in await self.all() if queue in agent.skills]
