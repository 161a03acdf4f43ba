"""`flowpbx db` and `flowpbx apikey`, run as an operator runs them, on both databases."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowpbx.cli import main
from flowpbx.db import apikeys, migrate
from flowpbx.db.database import Database


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder: no .env of the repository's is read."""
    monkeypatch.chdir(tmp_path)


def run(database_url: str, *args: str) -> tuple[int, str, str]:
    # Everything the commands read is set here: a developer's .env or environment must not
    # change what is tested.
    env = {"DATABASE_URL": database_url, "TWILIO_AUTH_TOKEN": "", "FLOWPBX_DB_UPGRADE": "true"}
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_db_upgrade_and_current(database_url: str) -> None:
    code, out, _ = run(database_url, "db", "current")
    assert code == 0
    assert "revision none (empty), behind: run `flowpbx db upgrade`" in out
    code, out, _ = run(database_url, "db", "upgrade")
    assert code == 0
    assert f"upgraded from empty to {migrate.head()}" in out
    assert "password" not in out
    code, out, _ = run(database_url, "db", "upgrade")
    assert (code, out.split(": ", 1)[1]) == (0, f"up to date (revision {migrate.head()})\n")
    code, out, _ = run(database_url, "db", "current")
    assert out.endswith(f"revision {migrate.head()}, up to date\n")


def test_apikey_create_prints_the_key_alone_and_it_works(database_url: str) -> None:
    code, out, err = run(database_url, "apikey", "create", "--name", "ana", "--identity", "ana")
    assert code == 0, err
    key = out.strip()
    assert out.count("\n") == 1  # the key alone on stdout: KEY=$(flowpbx apikey create ...)
    assert key.startswith("fpbx_")
    assert "acts for ana" in err
    assert "not shown again" in err
    db = Database(database_url)
    try:
        info, why = apikeys.verify(db, key, dt.datetime.now(dt.UTC))
    finally:
        db.dispose()
    assert info is not None, why
    assert (info.name, info.identity, info.admin) == ("ana", "ana", False)


def test_apikey_list_and_revoke(database_url: str) -> None:
    run(database_url, "apikey", "create", "--name", "ana", "--identity", "ana")
    _, admin_key, _ = run(database_url, "apikey", "create", "--name", "ops", "--admin")
    code, out, _ = run(database_url, "apikey", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "NAME",
        "PREFIX",
        "IDENTITY",
        "RIGHTS",
        "CREATED",
        "LAST",
        "USED",
    ]
    assert lines[1].split()[:5] == ["1", "ana", lines[1].split()[2], "ana", "own"]
    assert lines[2].split()[:5] == ["2", "ops", admin_key.strip()[:13], "-", "admin"]
    assert admin_key.strip() not in out  # never the key itself
    code, out, _ = run(database_url, "apikey", "revoke", "ana")
    assert code == 0
    assert out.startswith("revoked key 'ana'")
    code, out, _ = run(database_url, "apikey", "list", "--format", "json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["ops"]
    code, out, _ = run(database_url, "apikey", "list", "--all", "--format", "json")
    assert [(r["name"], r["revokedAt"] is not None) for r in json.loads(out)] == [
        ("ana", True),
        ("ops", False),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "x", "--identity", "ana.maria"], "identity 'ana.maria': expected letters"),
        (["--name", ""], "key name '': expected 1 to 100 printable characters"),
    ],
)
def test_apikey_create_refuses_bad_values(database_url: str, args: list[str], message: str) -> None:
    code, out, err = run(database_url, "apikey", "create", *args)
    assert code == 1
    assert out == ""
    assert message in err


def test_apikey_revoke_unknown(database_url: str) -> None:
    code, _, err = run(database_url, "apikey", "revoke", "nobody")
    assert code == 1
    assert "no active key 'nobody': give its id, its prefix or its name" in err


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    url = "postgresql://flowpbx:x@127.0.0.1:9/flowpbx"  # nothing listens on port 9
    code, _, err = run(url, "db", "upgrade")
    assert code == 1
    assert err.startswith(
        "cannot reach the database postgresql+psycopg://flowpbx:***@127.0.0.1:9/flowpbx"
    )


def test_apikey_with_an_unreachable_database_is_a_clear_error() -> None:
    url = "postgresql://flowpbx:x@127.0.0.1:9/flowpbx"
    code, _, err = run(url, "apikey", "create", "--name", "ana")
    assert code == 1
    assert err.startswith("cannot reach the database postgresql+psycopg://flowpbx:***@")
    assert "Traceback" not in err
