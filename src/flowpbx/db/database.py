"""The database engine for the configured URL, and sessions on it.

SQLAlchemy's engine is synchronous: the REST API calls it from a worker thread (`run`), so that
the event loop that answers Twilio never waits on the database.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from flowpbx.errors import FlowpbxError

T = TypeVar("T")


class DatabaseError(FlowpbxError):
    """The database cannot be used as configured."""


def normalize_url(url: str) -> URL:
    """`postgres://` and `postgresql://` use psycopg 3; anything but PostgreSQL or SQLite is
    refused."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise DatabaseError(f"DATABASE_URL is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite")
    raise DatabaseError(
        f"database {backend!r} is not supported: expected postgresql://... or sqlite:///..."
    )


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory SQLite)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers do not block the writer; busy_timeout: writers queue instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str | URL) -> Engine:
    """An engine for `url`; the SQLite file's folder is created when missing."""
    parsed = normalize_url(str(url) if isinstance(url, URL) else url)
    if isinstance(url, URL):
        parsed = url.set(drivername=parsed.drivername)
    path = sqlite_path(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # hide_parameters: errors name no values (callers' numbers) in logs.
        engine = create_engine(parsed, connect_args={"timeout": 5}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "sqlite":
        raise DatabaseError("an in-memory SQLite database cannot be shared: name a file")
    return create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": 5},
        hide_parameters=True,
    )


class Database:
    """One engine and its sessions."""

    def __init__(self, url: str | URL) -> None:
        self.engine = make_engine(url)
        self.url = self.engine.url
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed at the end, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in a worker thread. A task cancelled meanwhile (the service stopping)
        does not wait for the thread: the work finishes, or not, on its own (every write is a
        transaction), and nothing can keep the event loop from closing."""
        return await anyio.to_thread.run_sync(
            functools.partial(work, *args), abandon_on_cancel=True
        )

    def describe(self) -> str:
        """The URL without its password, for logs and messages."""
        return self.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()
