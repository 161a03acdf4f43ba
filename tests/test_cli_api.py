"""`flowpbx db` and `flowpbx apikey`, run as an operator runs them, on both databases."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowpbx.cli import main
from flowpbx.db import apikeys, migrate
from flowpbx.db.database import Database
from test_purge import CALLER, add_call, rows


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
    assert run(database_url, "db", "upgrade")[0] == 0
    code, _, err = run(database_url, "apikey", "revoke", "nobody")
    assert code == 1
    assert "no active key 'nobody': give its id, its prefix or its name" in err


@pytest.mark.parametrize(
    "args", [["db", "purge", "--older-than", "90d", "--dry-run"], ["apikey", "list"]]
)
def test_commands_do_not_answer_from_a_new_empty_database(tmp_path: Path, args: list[str]) -> None:
    """Run from the wrong folder, a command that reads history or keys says there is no
    database there instead of making an empty one and answering from it."""
    missing = tmp_path / "elsewhere" / "flowpbx.sqlite3"
    code, out, err = run(f"sqlite:///{missing}", *args)
    assert code == 1
    assert f"there is no database at {missing}" in err
    assert out == ""
    assert not missing.exists()


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


# -- flowpbx db purge --


def stored(database_url: str, *calls: tuple[str, dt.timedelta, str]) -> None:
    """Calls (sid, how long ago they started, caller) in a migrated database."""
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        now = dt.datetime.now(dt.UTC)
        for sid, age, caller in calls:
            add_call(db, sid, now - age, caller=caller)
    finally:
        db.dispose()


def remaining(database_url: str) -> set[str]:
    db = Database(database_url)
    try:
        return rows(db)["calls"]
    finally:
        db.dispose()


CUTOFF_LINE = re.compile(r"that started before \d{4}-\d\d-\d\d \d\d:\d\d UTC\.$", re.MULTILINE)


def test_db_purge_counts_then_deletes_calls_older_than_the_age(database_url: str) -> None:
    """--dry-run says what would go and deletes nothing; the purge then deletes those calls
    with their rows, says so in one line, and reminds that the audio stays at Twilio."""
    day = dt.timedelta(days=1)
    stored(database_url, ("CAold", 100 * day, CALLER), ("CAnew", 10 * day, CALLER))
    code, out, err = run(database_url, "db", "purge", "--older-than", "90d", "--dry-run")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(
        "Would delete 1 call (3 path rows, 1 participant row, 0 queue rows, 1 recording) "
        "that started before "
    )
    assert CUTOFF_LINE.search(lines[0])
    assert lines[1] == "Dry run: nothing was deleted."
    assert lines[2].startswith("The recordings' audio stays at Twilio")
    assert "/Recordings/{RecordingSid}.json" in lines[2]
    assert remaining(database_url) == {"CAold", "CAnew"}
    code, out, err = run(database_url, "db", "purge", "--older-than", "90d", "--batch", "1")
    assert code == 0, err
    assert out.startswith(
        "Deleted 1 call (3 path rows, 1 participant row, 0 queue rows, 1 recording) "
    )
    assert remaining(database_url) == {"CAnew"}
    code, out, _ = run(database_url, "db", "purge", "--older-than", "2w")
    assert (
        out
        == "Deleted 0 calls (0 path rows, 0 participant rows, 0 queue rows, 0 recordings) "
        + (
            CUTOFF_LINE.search(out)[0] + "\n"  # type: ignore[index]
        )
    )
    assert remaining(database_url) == {"CAnew"}  # 10 days old


def test_db_purge_erases_one_number_and_lists_its_recordings(database_url: str) -> None:
    """--number deletes that number's calls however recent, prints it masked, and names the
    recordings whose audio to delete at Twilio."""
    stored(
        database_url,
        ("CAhers", dt.timedelta(hours=1), CALLER),
        ("CAother", dt.timedelta(hours=1), "+34699000111"),
    )
    code, out, err = run(database_url, "db", "purge", "--number", "0034 612 34 56 78")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == (
        "Deleted 1 call (3 path rows, 1 participant row, 0 queue rows, 1 recording) "
        "from or to +34******678."
    )
    assert lines[-1] == "Their recordings at Twilio: REhers0"
    assert CALLER not in out
    assert remaining(database_url) == {"CAother"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--older-than", "90"], "'90' is not an age: expected a number and", id="unit"
        ),
        pytest.param(["--older-than", "ninety days"], "is not an age", id="words"),
        pytest.param(["--older-than", "1.5d"], "is not an age", id="fraction"),
        pytest.param(["--older-than", "-3d"], "is not an age", id="negative"),
        pytest.param(["--older-than", "3m"], "h (hours), d (days) or w (weeks)", id="months"),
        pytest.param(["--older-than", "0d"], "would delete every call", id="zero"),
        pytest.param(["--older-than", "999999w"], "more than 100 years", id="huge"),
        pytest.param(["--older-than", "12h"], "less than a day would delete calls", id="recent"),
        pytest.param([], "say which calls to delete: --older-than 90d", id="nothing"),
        pytest.param(["--number", "612345678"], "not a phone number in international", id="nat"),
        pytest.param(["--older-than", "90d", "--batch", "0"], "--batch", id="batch"),
    ],
)
def test_db_purge_refuses_unclear_requests(
    database_url: str, args: list[str], message: str
) -> None:
    """Anything but a clear age or number is a usage error (exit 2) that says what is
    expected; the database is not touched."""
    stored(database_url, ("CAold", dt.timedelta(days=400), CALLER))
    code, out, err = run(database_url, "db", "purge", *args)
    assert code == 2
    assert out == ""
    assert message in " ".join(err.split())
    assert remaining(database_url) == {"CAold"}


def test_db_purge_reports_progress_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long purge says how far it got (every 10 s; here after every batch) on stderr."""
    # The module, not the `db` group that flowpbx.cli exports under the same name.
    monkeypatch.setattr(importlib.import_module("flowpbx.cli.db"), "PROGRESS_SECONDS", 0.0)
    url = f"sqlite:///{tmp_path / 'flowpbx.sqlite3'}"
    stored(url, *((f"CA{n}", dt.timedelta(days=100 + n), CALLER) for n in range(3)))
    code, out, err = run(url, "db", "purge", "--older-than", "90d", "--batch", "2")
    assert code == 0
    assert err.splitlines() == ["... 2 calls deleted so far", "... 3 calls deleted so far"]
    assert out.startswith(
        "Deleted 3 calls (9 path rows, 3 participant rows, 0 queue rows, 3 recordings) "
    )


def test_db_purge_of_recent_calls_needs_force(tmp_path: Path) -> None:
    """--older-than under a day is refused, then done with --force."""
    url = f"sqlite:///{tmp_path / 'flowpbx.sqlite3'}"
    stored(url, ("CAhour", dt.timedelta(hours=3), CALLER), ("CAnow", dt.timedelta(0), CALLER))
    assert run(url, "db", "purge", "--older-than", "2h")[0] == 2
    code, out, _ = run(url, "db", "purge", "--older-than", "2h", "--force")
    assert code == 0
    assert out.startswith("Deleted 1 call ")
    assert remaining(url) == {"CAnow"}
