"""call history

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 09:28:25.861070
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "calls",
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("parent_sid", sa.String(length=64), nullable=True),
        sa.Column("from_number", sa.String(length=160), nullable=False),
        sa.Column("to_number", sa.String(length=160), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_rank", sa.SmallInteger(), nullable=False),
        sa.Column("status_seq", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("price_micros", sa.BigInteger(), nullable=True),
        sa.Column("price_unit", sa.String(length=3), nullable=True),
        sa.Column("flow", sa.String(length=64), nullable=True),
        sa.Column("flow_version", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("end_reason", sa.String(length=20), nullable=True),
        sa.Column("last_node", sa.String(length=64), nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_calls")),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_calls_from_number_started_at", ["from_number", "started_at"], unique=False
        )
        batch_op.create_index("ix_calls_started_at_sid", ["started_at", "sid"], unique=False)
        batch_op.create_index("ix_calls_status_started_at", ["status", "started_at"], unique=False)
        batch_op.create_index(
            "ix_calls_to_number_started_at", ["to_number", "started_at"], unique=False
        )
        batch_op.create_index(
            "ix_calls_unpriced_ended_at",
            ["ended_at"],
            unique=False,
            postgresql_where=sa.text("price_micros IS NULL"),
            sqlite_where=sa.text("price_micros IS NULL"),
        )

    op.create_table(
        "call_parties",
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=121), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_sid"],
            ["calls.sid"],
            name=op.f("fk_call_parties_call_sid_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("call_sid", "identity", name=op.f("pk_call_parties")),
    )
    with op.batch_alter_table("call_parties", schema=None) as batch_op:
        batch_op.create_index(
            "ix_call_parties_identity_started_at",
            ["identity", "started_at", "call_sid"],
            unique=False,
        )

    op.create_table(
        "call_steps",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flow", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=24), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.Column("keys", sa.String(length=64), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_sid"],
            ["calls.sid"],
            name=op.f("fk_call_steps_call_sid_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_steps")),
        sa.UniqueConstraint("record_id", "position", name="uq_call_steps_record_id_position"),
    )
    with op.batch_alter_table("call_steps", schema=None) as batch_op:
        batch_op.create_index("ix_call_steps_call_sid_seq", ["call_sid", "seq"], unique=False)
        batch_op.create_index("ix_call_steps_event_at", ["event", "at"], unique=False)

    op.create_table(
        "recordings",
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("channels", sa.SmallInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_rank", sa.SmallInteger(), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=10), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_sid"],
            ["calls.sid"],
            name=op.f("fk_recordings_call_sid_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_recordings")),
    )
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.create_index("ix_recordings_call_sid", ["call_sid"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.drop_index("ix_recordings_call_sid")

    op.drop_table("recordings")
    with op.batch_alter_table("call_steps", schema=None) as batch_op:
        batch_op.drop_index("ix_call_steps_event_at")
        batch_op.drop_index("ix_call_steps_call_sid_seq")

    op.drop_table("call_steps")
    with op.batch_alter_table("call_parties", schema=None) as batch_op:
        batch_op.drop_index("ix_call_parties_identity_started_at")

    op.drop_table("call_parties")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_unpriced_ended_at")
        batch_op.drop_index("ix_calls_to_number_started_at")
        batch_op.drop_index("ix_calls_status_started_at")
        batch_op.drop_index("ix_calls_started_at_sid")
        batch_op.drop_index("ix_calls_from_number_started_at")

    op.drop_table("calls")
