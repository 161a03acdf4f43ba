"""`flowpbx db`: bring the database's schema up to date, and see where it is."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from flowpbx.db.database import Database

from flowpbx.cli.common import EXIT_PROBLEMS, EXIT_USAGE, fail


def open_database() -> Database:
    """The configured database (DATABASE_URL, DB_*, else the SQLite file); exits on a bad
    configuration."""
    from flowpbx.db.database import Database, DatabaseError
    from flowpbx.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(webhooks=False)
        return Database(settings.database_url)
    except (SettingsError, DatabaseError) as exc:
        fail(str(exc), EXIT_USAGE)


@contextlib.contextmanager
def database_for_command(*, upgraded: bool = False) -> Iterator[Database]:
    """The configured database for one command, disposed at its end. A database that does not
    answer ends the command with one clear line. With `upgraded`, migrations the database lacks
    are applied first when FLOWPBX_DB_UPGRADE allows (as `serve` does)."""
    from sqlalchemy.exc import OperationalError

    from flowpbx.db import migrate
    from flowpbx.settings import Settings

    database = open_database()
    try:
        if upgraded:
            if Settings.from_env(webhooks=False).db_upgrade_on_start:
                migrate.upgrade(database)
            elif migrate.current(database) != migrate.head():
                fail(
                    "the database is not up to date: run `flowpbx db upgrade` first", EXIT_PROBLEMS
                )
        yield database
    except OperationalError as exc:
        fail(f"cannot reach the database {database.describe()}: {exc.orig}", EXIT_PROBLEMS)
    finally:
        database.dispose()


@click.group(short_help="Database schema: upgrade, current, check.")
def db() -> None:
    """The database's schema (DATABASE_URL, or DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME for
    PostgreSQL, else the SQLite file FLOWPBX_DB_PATH, data/flowpbx.sqlite3 by default)."""


@db.command(short_help="Apply every migration not yet applied.")
def upgrade() -> None:
    """Apply the migrations the database lacks. Safe to run from several processes at once:
    one applies them, the others wait and find the work done."""
    from flowpbx.db import migrate

    with database_for_command() as database:
        before, after = migrate.upgrade(database)
    if before == after:
        click.echo(f"{database.describe()}: up to date (revision {after})")
    else:
        click.echo(f"{database.describe()}: upgraded from {before or 'empty'} to {after}")


@db.command(short_help="Show the revision the database is at.")
def current() -> None:
    """Show the database's revision and the newest one flowpbx has."""
    from flowpbx.db import migrate

    with database_for_command() as database:
        at = migrate.current(database)
    head = migrate.head()
    state = "up to date" if at == head else f"behind: run `flowpbx db upgrade` to reach {head}"
    click.echo(f"{database.describe()}: revision {at or 'none (empty)'}, {state}")


@db.command(short_help="For developers: write a migration for changed models.")
@click.option("--message", "-m", required=True, help="What the migration does, in a few words.")
def revision(message: str) -> None:
    """Write a new migration under src/flowpbx/db/migrations/versions/ for what the models in
    flowpbx/db/models.py have and the migrations do not (found against a scratch SQLite
    database). Read it before committing; a test checks migrations and models agree on
    PostgreSQL and SQLite."""
    import tempfile

    from flowpbx.db import migrate

    with tempfile.TemporaryDirectory() as scratch:
        path = migrate.new_revision(message, Path(scratch) / "scratch.sqlite3")
    click.echo(f"wrote {path}")
