"""The tables, as typed SQLAlchemy models. Migrations in `migrations/versions/` must produce
exactly these (a test runs Alembic's autogenerate against them and expects no difference)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints, so that migrations on PostgreSQL and SQLite name them the same way.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC datetime on every database (SQLite keeps no time zone: it is added back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: flowpbx stores aware UTC datetimes only")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ApiKey(Base):
    """A key for the REST API. Only a hash of its secret is kept; `prefix` finds it."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    """The public part of the key (`fpbx_<prefix>_...`): shown in lists and logs."""
    secret_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the whole key, hex. The key is 256 random bits: no slow hash is needed."""
    identity: Mapped[str | None] = mapped_column(String(121))
    """The softphone identity this key acts for; None for a key with no identity."""
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


ID = BigInteger().with_variant(Integer, "sqlite")
"""A 64-bit key (SQLite's autoincrementing key is its 64-bit INTEGER)."""


class Call(Base):
    """One call as history knows it: merged from the engine's call events and Twilio's status
    callbacks, whatever order they arrive in (see `flowpbx.history.projection`)."""

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_started_at_sid", "started_at", "sid"),
        Index("ix_calls_from_number_started_at", "from_number", "started_at"),
        Index("ix_calls_to_number_started_at", "to_number", "started_at"),
        Index("ix_calls_status_started_at", "status", "started_at"),
        # The calls still to be priced (history/prices.py): few, whatever the table's size.
        Index(
            "ix_calls_unpriced_ended_at",
            "ended_at",
            postgresql_where=text("price_micros IS NULL"),
            sqlite_where=text("price_micros IS NULL"),
        ),
    )

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_sid: Mapped[str | None] = mapped_column(String(64))
    from_number: Mapped[str] = mapped_column(String(160), default="")
    """Who called: an E.164 number, or `client:<identity>` for the softphone."""
    to_number: Mapped[str] = mapped_column(String(160), default="")
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    """'inbound' or 'outbound' (placed by flowpbx)."""
    status: Mapped[str] = mapped_column(String(16), default="in-progress")
    """Twilio's CallStatus: queued ... in-progress, then completed, busy, failed, no-answer,
    canceled."""
    status_rank: Mapped[int] = mapped_column(SmallInteger, default=0)
    status_seq: Mapped[int] = mapped_column(Integer, default=-1)
    """The SequenceNumber of the status callback that set `status` (-1: none yet)."""
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    """When a person answered: the callee of an outbound call, or an agent or a dialled
    number for an inbound one (None: nobody did)."""
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    duration: Mapped[int | None] = mapped_column(Integer)
    """Seconds, from Twilio's CallDuration."""
    price_micros: Mapped[int | None] = mapped_column(BigInteger)
    """Twilio's price in millionths of `price_unit` (negative: a cost)."""
    price_unit: Mapped[str | None] = mapped_column(String(3))
    flow: Mapped[str | None] = mapped_column(String(64))
    flow_version: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(64))
    end_reason: Mapped[str | None] = mapped_column(String(20))
    """How the flow ended it (docs/call-events.md, `call_ended.how`); None: the caller hung
    up before the flow ended."""
    last_node: Mapped[str | None] = mapped_column(String(64))
    """The last node the call entered: where the caller left the flow."""
    last_seq: Mapped[int] = mapped_column(Integer, default=-1)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class CallParty(Base):
    """A softphone identity or agent that took part in a call (`userId` in the history API)."""

    __tablename__ = "call_parties"
    __table_args__ = (
        Index("ix_call_parties_identity_started_at", "identity", "started_at", "call_sid"),
    )

    call_sid: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.sid", ondelete="CASCADE"), primary_key=True
    )
    identity: Mapped[str] = mapped_column(String(121), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    """The call's `started_at`, here so that one index answers a person's newest calls."""


class CallStep(Base):
    """One call event of a call's path through its flow."""

    __tablename__ = "call_steps"
    __table_args__ = (
        UniqueConstraint("record_id", "position", name="uq_call_steps_record_id_position"),
        Index("ix_call_steps_call_sid_seq", "call_sid", "seq"),
        Index("ix_call_steps_event_at", "event", "at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    call_sid: Mapped[str] = mapped_column(String(64), ForeignKey("calls.sid", ondelete="CASCADE"))
    record_id: Mapped[str] = mapped_column(String(40))
    """The step record the event came in: with `position`, what makes a redelivery harmless."""
    position: Mapped[int] = mapped_column(SmallInteger)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    flow: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(24))
    node: Mapped[str] = mapped_column(String(64), default="")
    outcome: Mapped[str | None] = mapped_column(String(200))
    """What happened there: the option's target, the dial's result, why the queue was left..."""
    keys: Mapped[str | None] = mapped_column(String(64))
    """The keys pressed (masked at a sensitive input)."""
    data: Mapped[str] = mapped_column(Text)
    """The whole call event, as JSON (docs/call-events.md)."""


class Recording(Base):
    """A recording Twilio made of a call: a dial's conversation or a voicemail."""

    __tablename__ = "recordings"
    __table_args__ = (Index("ix_recordings_call_sid", "call_sid"),)

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), ForeignKey("calls.sid", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000), default="")
    """Twilio's RecordingUrl (no credentials ever)."""
    duration: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16))
    """in-progress, completed, absent or failed."""
    status_rank: Mapped[int] = mapped_column(SmallInteger, default=0)
    source: Mapped[str] = mapped_column(String(40), default="")
    """Twilio's RecordingSource: DialVerb, RecordVerb..."""
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    error_code: Mapped[str | None] = mapped_column(String(10))
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Agent(Base):
    """A person who answers a queue's calls (queues/directory.py). Their live state (ringing,
    talking, wrap-up) is in the queue store; this row is what outlives it."""

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Lowercase letters, digits, '_', '.', '-' (checked in code): 'ana'."""
    name: Mapped[str] = mapped_column(String(100))
    """The display name."""
    target: Mapped[str] = mapped_column(String(160), unique=True)
    """What is dialled to reach them: 'client:<identity>' (the browser softphone) or an E.164
    number."""
    status: Mapped[str] = mapped_column(String(16), default="offline")
    """The last status the agent set (available, busy, wrap-up, offline): kept so that a queue
    store that lost its data can restore agents."""
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class AgentQueue(Base):
    """An agent serves a queue, with a skill: higher skills are offered calls first."""

    __tablename__ = "agent_queues"
    __table_args__ = (Index("ix_agent_queues_queue", "queue"),)

    agent_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    skill: Mapped[int] = mapped_column(SmallInteger, default=5)
    """1 to 10 (checked in code)."""


class QueueCall(Base):
    """A call's time in one queue, folded from the queue engine's reports (`QueueActivity`,
    history/projection.py): when it joined, how it left, who answered, for queue statistics
    (queues/stats.py)."""

    __tablename__ = "queue_calls"
    __table_args__ = (
        UniqueConstraint("call_sid", "queue", name="uq_queue_calls_call_sid_queue"),
        Index("ix_queue_calls_queue_joined_at", "queue", "joined_at"),
        Index("ix_queue_calls_agent_joined_at", "agent", "joined_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    call_sid: Mapped[str] = mapped_column(String(64), ForeignKey("calls.sid", ondelete="CASCADE"))
    queue: Mapped[str] = mapped_column(String(64))
    member: Mapped[str] = mapped_column(String(80))
    """The place's id in the queue: the CallSid, or 'cb:' + CallSid for a callback."""
    caller: Mapped[str] = mapped_column(String(160), default="")
    """The caller's number."""
    kind: Mapped[str] = mapped_column(String(16), default="caller")
    """'caller' (waited on the line) or 'callback' (asked to be called back)."""
    joined_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    left_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    """When the place ended: answered, abandoned, timed out, left, turned away, given up."""
    outcome: Mapped[str] = mapped_column(String(16), default="waiting")
    """waiting, answered, abandoned, timed_out, left, full, callback (waiting to be called
    back), callback_failed (given up)."""
    wait_seconds: Mapped[float | None] = mapped_column(Float)
    """From joining to being answered, or to leaving the queue."""
    agent: Mapped[str | None] = mapped_column(String(64))
    """The agent who answered."""
    talk_seconds: Mapped[int | None] = mapped_column(Integer)
    offers: Mapped[int] = mapped_column(Integer, default=0)
    """Times it was offered to an agent (their phone rang)."""
    missed: Mapped[int] = mapped_column(Integer, default=0)
    """Offers the agent did not answer."""
    callback_requested_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    counted: Mapped[str] = mapped_column(Text, default="")
    """The offers, misses and callback attempts counted so far, one '<event>:<reservation>'
    a line: a report delivered again is not counted again."""
