"""Alembic's environment: flowpbx always passes the connection (see flowpbx.db.migrate)."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from flowpbx.db.models import Base, UtcDateTime

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a bare `alembic` command
    raise SystemExit("run migrations with `flowpbx db upgrade`, not the alembic command")


def render_item(kind: str, obj: Any, _context: Any) -> str | Literal[False]:
    """Migrations name plain SQLAlchemy types, never flowpbx's code: a later change to
    `UtcDateTime` must not change what an old migration does."""
    if kind == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


context.configure(
    render_item=render_item,
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
