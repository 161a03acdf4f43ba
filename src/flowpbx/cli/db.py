"""`flowpbx db`: bring the database's schema up to date, see where it is, and purge old
call history."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from flowpbx.db.database import Database

from flowpbx.cli.common import EXIT_PROBLEMS, EXIT_USAGE, fail
from flowpbx.dialing.rules import is_e164

T = TypeVar("T")


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
def database_for_command(*, upgraded: bool = False, existing: bool = False) -> Iterator[Database]:
    """The configured database for one command, disposed at its end. A database that does not
    answer ends the command with one clear line. With `upgraded`, migrations the database lacks
    are applied first when FLOWPBX_DB_UPGRADE allows (as `serve` does). With `existing`, a
    SQLite file that is not there is an error, not a new empty database (a command run from
    the wrong folder must not answer from one)."""
    from sqlalchemy.exc import OperationalError

    from flowpbx.db import migrate
    from flowpbx.db.database import sqlite_path
    from flowpbx.settings import Settings

    database = open_database()
    path = sqlite_path(database.url)
    if existing and path is not None and not path.exists():
        database.dispose()
        fail(
            f"there is no database at {path.resolve()}: run this from the project folder (the "
            "service keeps data/flowpbx.sqlite3 there), or set FLOWPBX_DB_PATH or DATABASE_URL "
            "as the service has them",
            EXIT_PROBLEMS,
        )
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


@click.group(short_help="Database: schema upgrades, purging old call history.")
def db() -> None:
    """The database's schema and call history (DATABASE_URL, or DB_HOST, DB_PORT, DB_USER,
    DB_PASSWORD and DB_NAME for PostgreSQL, else the SQLite file FLOWPBX_DB_PATH,
    data/flowpbx.sqlite3 by default)."""


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


# flowpbx.history.purge's DEFAULT_BATCH and MAX_BATCH, not imported: it loads SQLAlchemy,
# which every other command would then pay for at start.
PURGE_BATCH = 5000
MAX_PURGE_BATCH = 10_000
PROGRESS_SECONDS = 10.0
_AGE = re.compile(r"([0-9]{1,6})\s*([hdw])")
_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}
MAX_AGE = dt.timedelta(days=100 * 366)
TWILIO_AUDIO = (
    "The recordings' audio stays at Twilio: flowpbx deletes only its own rows, which link to "
    "it. Delete the audio in the Twilio Console (its list of call recordings) or with Twilio's "
    "REST API: DELETE /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.json (see "
    "docs/privacy.md)."
)


def parse_age(value: str) -> dt.timedelta:
    """How old: a number and a unit, h (hours), d (days) or w (weeks): 90d, 12h, 2w."""
    found = _AGE.fullmatch(value.strip().lower())
    if found is None:
        raise click.BadParameter(
            f"{value[:32]!r} is not an age: expected a number and a unit, h (hours), d (days) "
            "or w (weeks), like 90d, 12h or 2w"
        )
    age = int(found[1]) * _UNITS[found[2]]
    if not age:
        raise click.BadParameter(f"{value!r} would delete every call: give 1h or more")
    if age > MAX_AGE:
        raise click.BadParameter(f"{value!r} is more than 100 years")
    return age


def parse_number(value: str) -> str:
    """A phone number in international form; spaces, dashes and a leading 00 are accepted."""
    number = re.sub(r"[\s().-]", "", value)
    if number.startswith("00"):
        number = "+" + number[2:]
    if not is_e164(number):
        raise click.BadParameter(
            f"{value[:32]!r} is not a phone number in international form: expected + and the "
            "country code, like +34612345678"
        )
    return number


def _parsed(parse: Callable[[str], T]) -> Callable[[click.Context, click.Parameter, Any], T | None]:
    """A click callback that parses an option's text with `parse` (None stays None)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> T | None:
        return None if value is None else parse(str(value))

    return callback


@db.command(short_help="Delete old calls (or one number's) from call history.")
@click.option(
    "--older-than",
    "age",
    metavar="AGE",
    callback=_parsed(parse_age),
    help="Delete calls that started longer ago than this: a number and h (hours), d (days) or "
    "w (weeks), like 90d. Less than a day needs --force.",
)
@click.option(
    "--number",
    metavar="NUMBER",
    callback=_parsed(parse_number),
    help="Delete every call from or to this number (like +34612345678), whenever it was: to "
    "erase one person's data. With --older-than, only their calls older than that.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option(
    "--batch",
    type=click.IntRange(1, MAX_PURGE_BATCH),
    default=PURGE_BATCH,
    show_default=True,
    help="Calls deleted per transaction: each batch is short, so calls and the history "
    "writer go on during a long purge.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Allow --older-than less than a day (calls that recent may still be going on, and "
    "their history still arriving).",
)
def purge(
    age: dt.timedelta | None, number: str | None, dry_run: bool, batch: int, force: bool
) -> None:
    """Delete calls from call history, with their path (steps and keys pressed), the
    softphones that took part and their recording rows.

    \b
      flowpbx db purge --older-than 90d --dry-run   count what a 90-day retention deletes
      flowpbx db purge --older-than 90d             keep 90 days of call history
      flowpbx db purge --number +34612345678        erase one caller's calls

    Run it every day (cron or a systemd timer) to keep call history for a fixed time; see
    docs/privacy.md.

    Recordings' audio stays at Twilio: only flowpbx's rows, which link to it, are deleted.
    Delete the audio in the Twilio Console (its list of call recordings) or with Twilio's REST
    API (DELETE /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.json). With
    --number, the recordings to delete there are listed.
    """
    from flowpbx.history.purge import Purged, Selection, recording_sids
    from flowpbx.history.purge import purge as purge_calls

    if age is None and number is None:
        raise click.UsageError(
            "say which calls to delete: --older-than 90d (calls older than 90 days), "
            "--number +34612345678 (one caller's), or both"
        )
    if age is not None and age < dt.timedelta(days=1) and not force:
        raise click.UsageError(
            "--older-than less than a day would delete calls that may still be going on (their "
            "history still arriving); add --force if that is really meant"
        )
    before = None
    if age is not None:
        # Whole minutes, so that the time printed is exactly the one used.
        before = (dt.datetime.now(dt.UTC) - age).replace(second=0, microsecond=0)
    selection = Selection(before=before, number=number)
    last_report = time.monotonic()

    def report(total: Purged) -> None:
        nonlocal last_report
        if time.monotonic() - last_report >= PROGRESS_SECONDS:
            last_report = time.monotonic()
            click.echo(f"... {_count(total.calls, 'call')} deleted so far", err=True)

    with database_for_command(upgraded=True, existing=True) as database:
        recordings = recording_sids(database, selection) if number is not None else []
        purged = purge_calls(database, selection, batch=batch, dry_run=dry_run, progress=report)
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(
        f"{verb} {_count(purged.calls, 'call')} ({_count(purged.steps, 'path row')}, "
        f"{_count(purged.parties, 'participant row')}, "
        f"{_count(purged.queue_rows, 'queue row')}, "
        f"{_count(purged.recordings, 'recording')}) {selection.describe()}."
    )
    if dry_run:
        click.echo("Dry run: nothing was deleted.")
    if purged.recordings:
        click.echo(TWILIO_AUDIO)
    if recordings:
        click.echo("Their recordings at Twilio: " + ", ".join(recordings))


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
