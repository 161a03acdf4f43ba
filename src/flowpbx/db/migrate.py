"""Alembic migrations, run from code: `flowpbx db upgrade`, and at start when configured.

Several processes may start at once: on PostgreSQL the upgrade runs under a transaction-wide
advisory lock (and PostgreSQL's DDL is transactional: all of a migration or none), on SQLite
under a lock on a file beside the database. The second process finds the work done.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select, text

from flowpbx.db.database import Database, sqlite_path
from flowpbx.db.models import Base

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ADVISORY_LOCK = 0x666C6F77706278  # "flowpbx"
LOCK_TIMEOUT_MS = 60_000


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for flowpbx's migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest migration's revision."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _locked(db: Database) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock."""
    path = sqlite_path(db.url)
    lock = (
        _file_lock(path.with_name(path.name + ".migrate-lock"))
        if path is not None
        else contextlib.nullcontext()
    )
    with lock, db.engine.begin() as connection:
        if db.dialect == "postgresql":
            # Another process migrating holds the lock: wait for it, but not forever.
            connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'"))
            connection.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK)))
        yield connection


def current(db: Database) -> str | None:
    """The revision the database is at (None before the first upgrade)."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database to `revision`; returns (before, after)."""
    with _locked(db) as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(alembic_config(connection), revision)
        after = MigrationContext.configure(connection).get_current_revision()
    return before, after


def differences(db: Database) -> list[Any]:
    """What the models have that the database's schema does not, or the other way round (empty
    when the migrations produce exactly the models)."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def new_revision(message: str, scratch: Path) -> Path:
    """Write a migration for what the models have and the migrations do not yet, found by
    autogenerate against a scratch SQLite database at `scratch`; returns its file."""
    db = Database(f"sqlite:///{scratch}")
    try:
        with _locked(db) as connection:
            config = alembic_config(connection)
            command.upgrade(config, "head")
            number = len(list((MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))) + 1
            script = command.revision(
                config, message=message, autogenerate=True, rev_id=f"{number:04d}"
            )
    finally:
        db.dispose()
    assert script is not None
    assert not isinstance(script, list)
    return Path(script.path)
