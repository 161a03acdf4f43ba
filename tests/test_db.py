"""The database layer on both engines it supports: a real PostgreSQL and a SQLite file.

Migrations produce exactly the models, upgrade from empty works, several processes upgrading
at once are safe; API keys are stored hashed and checked as the REST API checks them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text

from flowpbx.db import apikeys, migrate
from flowpbx.db.database import Database, DatabaseError, normalize_url, sqlite_path
from flowpbx.db.models import ApiKey

NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


def test_upgrade_from_empty_reaches_head_and_matches_the_models(database_url: str) -> None:
    database = Database(database_url)
    try:
        assert migrate.current(database) is None
        before, after = migrate.upgrade(database)
        assert (before, after) == (None, migrate.head())
        assert migrate.current(database) == migrate.head()
        assert "api_keys" in inspect(database.engine).get_table_names()
        # Alembic's autogenerate compares the migrated schema with the models: no difference.
        assert migrate.differences(database) == []
        # A second upgrade changes nothing.
        assert migrate.upgrade(database) == (migrate.head(), migrate.head())
    finally:
        database.dispose()


def test_a_model_change_without_a_migration_is_found(database_url: str) -> None:
    """The check above could fail: a column the migrations lack is reported."""
    database = Database(database_url)
    try:
        migrate.upgrade(database)
        with database.engine.begin() as conn:
            conn.execute(text("ALTER TABLE api_keys DROP COLUMN last_used_at"))
        diffs = migrate.differences(database)
        assert any("last_used_at" in repr(d) for d in diffs), diffs
    finally:
        database.dispose()


def test_several_processes_upgrading_at_once_all_succeed(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "FLOWPBX_DB_UPGRADE": "true"}
    command = [sys.executable, "-m", "flowpbx.cli", "db", "upgrade"]
    # The lock is held while the four start, so that they all reach it together.
    with holding_migration_lock(database_url):
        processes = [
            subprocess.Popen(
                command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for _ in range(4)
        ]
        time.sleep(2.0)
        assert all(p.poll() is None for p in processes)  # all four wait for the lock
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        results.append((process.returncode, out, err))
    for code, out, err in results:
        assert code == 0, (out, err)
    outputs = b"".join(out for _, out, _ in results).decode()
    assert outputs.count("upgraded from empty to") == 1, outputs
    assert outputs.count("up to date") == 3, outputs
    database = Database(database_url)
    try:
        assert migrate.current(database) == migrate.head()
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        database.dispose()


@contextlib.contextmanager
def holding_migration_lock(url: str) -> Iterator[None]:
    """Hold the lock `flowpbx db upgrade` takes, as another process migrating would."""
    database = Database(url)
    path = sqlite_path(database.url)
    try:
        if path is not None:
            with migrate._file_lock(path.with_name(path.name + ".migrate-lock")):
                yield
        else:
            with database.engine.connect() as conn:
                conn.execute(select(func.pg_advisory_lock(migrate.ADVISORY_LOCK)))
                try:
                    yield
                finally:
                    conn.execute(select(func.pg_advisory_unlock(migrate.ADVISORY_LOCK)))
    finally:
        database.dispose()


def test_urls_are_normalized_and_others_refused() -> None:
    assert normalize_url("postgres://u:p@h/d").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql://u:p@h/d").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite+pysqlite"
    with pytest.raises(DatabaseError, match="not supported"):
        normalize_url("mysql://u:p@h/d")
    with pytest.raises(DatabaseError, match="in-memory"):
        Database("sqlite://")


def test_a_sqlite_file_gets_its_folder(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'a' / 'b' / 'flowpbx.sqlite3'}")
    try:
        migrate.upgrade(database)
        assert (tmp_path / "a" / "b" / "flowpbx.sqlite3").is_file()
    finally:
        database.dispose()


# -- API keys --


def test_a_key_is_shown_once_and_stored_only_as_a_hash(db: Database) -> None:
    info, key = apikeys.create(db, "ana softphone", identity="ana", admin=False, now=NOW)
    assert key.startswith(f"fpbx_{info.prefix}_")
    assert len(key) == len("fpbx_") + 8 + 1 + 43
    with db.session() as session:
        row = session.scalars(select(ApiKey)).one()
        stored = [str(v) for v in (row.name, row.prefix, row.secret_hash, row.identity)]
    assert all(key[len("fpbx_12345678_") :] not in value for value in stored)
    assert info.created_at == NOW
    assert info.created_at.tzinfo is not None
    found, why = apikeys.verify(db, key, NOW)
    assert found is not None
    assert (found.id, found.identity, found.admin, why) == (info.id, "ana", False, "")


def test_wrong_malformed_and_revoked_keys_are_refused(db: Database) -> None:
    info, key = apikeys.create(db, "ana", identity="ana", admin=False, now=NOW)
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert apikeys.verify(db, wrong, NOW) == (None, f"wrong secret for key {info.label}")
    assert apikeys.verify(db, "fpbx_00000000_" + "A" * 43, NOW) == (
        None,
        "unknown key fpbx_00000000",
    )
    assert apikeys.verify(db, "Bearer nonsense", NOW) == (None, "malformed key")
    apikeys.revoke(db, f"fpbx_{info.prefix}", now=NOW)
    assert apikeys.verify(db, key, NOW) == (None, f"revoked key {info.label}")


def test_last_used_is_written_at_most_once_a_minute(db: Database) -> None:
    _, key = apikeys.create(db, "ana", identity=None, admin=True, now=NOW)
    first, _ = apikeys.verify(db, key, NOW)
    later, _ = apikeys.verify(db, key, NOW + dt.timedelta(seconds=30))
    much_later, _ = apikeys.verify(db, key, NOW + dt.timedelta(minutes=2))
    assert first is not None
    assert later is not None
    assert much_later is not None
    assert first.last_used_at == NOW
    assert later.last_used_at == NOW
    assert much_later.last_used_at == NOW + dt.timedelta(minutes=2)


def test_names_identities_and_revocation_by_id_prefix_or_name(db: Database) -> None:
    a, _ = apikeys.create(db, "a", identity="ana", admin=False, now=NOW)
    b, _ = apikeys.create(db, "b", identity=None, admin=True, now=NOW)
    c, _ = apikeys.create(db, "c", identity="carla_2", admin=False, now=NOW)
    with pytest.raises(apikeys.ApiKeyError, match="exists already"):
        apikeys.create(db, "a", identity=None, admin=False, now=NOW)
    with pytest.raises(apikeys.ApiKeyError, match="letters, digits and underscores"):
        apikeys.create(db, "d", identity="ana-maria", admin=False, now=NOW)
    with pytest.raises(apikeys.ApiKeyError, match="1 to 100"):
        apikeys.create(db, " ", identity=None, admin=False, now=NOW)
    assert [k.name for k in apikeys.list_keys(db)] == ["a", "b", "c"]
    assert apikeys.revoke(db, str(a.id), now=NOW).revoked_at == NOW
    assert apikeys.revoke(db, b.prefix, now=NOW).revoked_at == NOW
    assert apikeys.revoke(db, "c", now=NOW).revoked_at == NOW
    with pytest.raises(apikeys.ApiKeyError, match="no active key 'zzz'"):
        apikeys.revoke(db, "zzz", now=NOW)
    assert apikeys.list_keys(db) == []
    assert [k.id for k in apikeys.list_keys(db, include_revoked=True)] == [a.id, b.id, c.id]
    # A revoked key's name can be used again.
    apikeys.create(db, "a", identity="ana", admin=False, now=NOW)
    # Paging: from an id on, at most `limit`.
    assert [k.name for k in apikeys.list_keys(db, include_revoked=True, after=a.id, limit=1)] == [
        "b"
    ]
    assert c.may_act_for("carla_2")
    assert not c.may_act_for("ana")
    assert not c.may_act_for(None)
    assert b.may_act_for("anyone")
    assert b.may_act_for(None)


def test_revoking_by_something_that_names_two_keys_is_refused(db: Database) -> None:
    admin, _ = apikeys.create(db, "ops", identity=None, admin=True, now=NOW)
    named_one, _ = apikeys.create(db, str(admin.id), identity=None, admin=False, now=NOW)
    with pytest.raises(apikeys.ApiKeyError, match="could mean several keys"):
        apikeys.revoke(db, str(admin.id), now=NOW)
    assert [k.revoked_at for k in apikeys.list_keys(db)] == [None, None]
    assert apikeys.revoke(db, named_one.prefix, now=NOW).name == str(admin.id)


def test_revoking_twice_says_so_and_a_pasted_key_names_itself(db: Database) -> None:
    info, key = apikeys.create(db, "ana", identity="ana", admin=False, now=NOW)
    assert apikeys.revoke(db, key, now=NOW).id == info.id  # the whole key, pasted
    with pytest.raises(apikeys.ApiKeyError, match="was revoked already") as caught:
        apikeys.revoke(db, key, now=NOW)
    assert key[len("fpbx_12345678_") :] not in str(caught.value)
