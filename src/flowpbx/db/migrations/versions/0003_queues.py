"""queues: agents, the queues they serve, and queue history (queue_calls)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 11:35:07.102921
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=160), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("target", name=op.f("uq_agents_target")),
    )
    op.create_table(
        "agent_queues",
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("skill", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_queues_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", "queue", name=op.f("pk_agent_queues")),
    )
    with op.batch_alter_table("agent_queues", schema=None) as batch_op:
        batch_op.create_index("ix_agent_queues_queue", ["queue"], unique=False)

    op.create_table(
        "queue_calls",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("member", sa.String(length=80), nullable=False),
        sa.Column("caller", sa.String(length=160), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("talk_seconds", sa.Integer(), nullable=True),
        sa.Column("offers", sa.Integer(), nullable=False),
        sa.Column("missed", sa.Integer(), nullable=False),
        sa.Column("callback_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("callback_attempts", sa.Integer(), nullable=False),
        sa.Column("counted", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_sid"],
            ["calls.sid"],
            name=op.f("fk_queue_calls_call_sid_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_calls")),
        sa.UniqueConstraint("call_sid", "queue", name="uq_queue_calls_call_sid_queue"),
    )
    with op.batch_alter_table("queue_calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_queue_calls_agent_joined_at", ["agent", "joined_at"], unique=False
        )
        batch_op.create_index(
            "ix_queue_calls_queue_joined_at", ["queue", "joined_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("queue_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_calls_queue_joined_at")
        batch_op.drop_index("ix_queue_calls_agent_joined_at")

    op.drop_table("queue_calls")
    with op.batch_alter_table("agent_queues", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_queues_queue")

    op.drop_table("agent_queues")
    op.drop_table("agents")
