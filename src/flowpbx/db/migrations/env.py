"""Alembic's environment: flowpbx always passes the connection (see flowpbx.db.migrate)."""

from __future__ import annotations

from alembic import context

from flowpbx.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a bare `alembic` command
    raise SystemExit("run migrations with `flowpbx db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
