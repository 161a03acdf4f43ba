"""Shared test helpers: where the repository's flows and fixtures are."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings

from servers import PostgresServer, RedisClusterServer, postgres_server, redis_cluster

# CI explores the same examples every run, so that a red run is reproducible and not luck;
# locally each run explores new ones (and keeps failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "flows"
FIXTURES = Path(__file__).resolve().parent / "flows"


@pytest.fixture
def seguros_text() -> str:
    """The shipped Spanish insurance flow, as text."""
    return (FLOWS / "seguros.yaml").read_text("utf-8")


@pytest.fixture(scope="session")
def shared_postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (each test gets its own database)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def shared_redis_cluster() -> Iterator[RedisClusterServer]:
    """One real 3-master Redis Cluster for the session, started on first use (about 2 s);
    tests empty it (every master) as single-Redis tests flush their Redis."""
    with redis_cluster() as cluster:
        yield cluster


_databases = itertools.count(1)


def fresh_postgres_url(server: PostgresServer) -> str:
    """A new, empty database on `server`, as a SQLAlchemy URL."""
    name = f"flowpbx_t{next(_databases)}_{os.getpid()}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, and a database on the session's real PostgreSQL
    (every test using this runs on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flowpbx.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("shared_postgres")
    return fresh_postgres_url(server)
