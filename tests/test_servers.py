"""Prove that tests/servers.py starts real, working Redis and PostgreSQL servers."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from servers import (
    PostgresServer,
    RedisServer,
    pg_user_prefix,
    postgres_server,
    redis_server,
)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """One redis-server shared by this module's tests."""
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server shared by this module's tests."""
    with postgres_server() as server:
        yield server


def _resp_command(*args: str) -> bytes:
    """Encode a command as a RESP array of bulk strings."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _redis_call(server: RedisServer, *args: str) -> bytes:
    """Send one RESP command and return the raw reply (simple line or one bulk string)."""
    with (
        socket.create_connection((server.host, server.port), timeout=5) as sock,
        sock.makefile("rb") as reader,
    ):
        sock.sendall(_resp_command(*args))
        reply = reader.readline()
        if reply.startswith(b"$") and int(reply[1:]) >= 0:
            reply += reader.read(int(reply[1:]) + 2)
        return reply


def _psql(server: PostgresServer, sql: str) -> subprocess.CompletedProcess[str]:
    """Run ``sql`` through the psql binary over TCP, authenticating with the password."""
    return subprocess.run(
        [
            *pg_user_prefix(),
            str(server.bin_dir / "psql"),
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            server.host,
            "-p",
            str(server.port),
            "-U",
            server.user,
            "-d",
            server.dbname,
            "-c",
            sql,
        ],
        env={"PGPASSWORD": server.password, "PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_redis_answers_ping(redis: RedisServer) -> None:
    """The redis server answers an inline PING with +PONG."""
    with socket.create_connection((redis.host, redis.port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64).startswith(b"+PONG")
    assert redis.url == f"redis://127.0.0.1:{redis.port}/0"


def test_redis_set_get_roundtrip(redis: RedisServer) -> None:
    """A value SET over RESP comes back unchanged from GET."""
    assert _redis_call(redis, "SET", "flowpbx:test", "hello world") == b"+OK\r\n"
    assert _redis_call(redis, "GET", "flowpbx:test") == b"$11\r\nhello world\r\n"
    assert _redis_call(redis, "GET", "flowpbx:missing") == b"$-1\r\n"


def test_postgres_select_one(postgres: PostgresServer) -> None:
    """psql connects over TCP with the generated password and runs SELECT 1."""
    result = _psql(postgres, "SELECT 1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_postgres_database_and_owner(postgres: PostgresServer) -> None:
    """The test database exists, is UTF8 and is owned by the flowpbx role."""
    result = _psql(
        postgres,
        "SELECT current_database(), current_user, pg_encoding_to_char(encoding) "
        "FROM pg_database WHERE datname = current_database()",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "flowpbx_test|flowpbx|UTF8"
    assert postgres.url == (
        f"postgresql+psycopg://flowpbx:{postgres.password}@127.0.0.1:{postgres.port}/flowpbx_test"
    )


def test_postgres_rejects_wrong_password(postgres: PostgresServer) -> None:
    """TCP logins are password-checked, so the URL's password really matters."""
    wrong = PostgresServer(
        host=postgres.host,
        port=postgres.port,
        user=postgres.user,
        password="not-the-password",
        dbname=postgres.dbname,
        bin_dir=postgres.bin_dir,
        socket_dir=postgres.socket_dir,
    )
    result = _psql(wrong, "SELECT 1")
    assert result.returncode != 0
    assert "password authentication failed" in result.stderr


def _port_closed(port: int) -> bool:
    """Whether nothing accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_redis_is_torn_down() -> None:
    """Leaving redis_server() stops the server and removes its temp directory."""
    with redis_server() as server:
        assert server.workdir.is_dir()
        assert not _port_closed(server.port)
    assert _port_closed(server.port)
    assert not server.workdir.exists()


def test_postgres_is_torn_down() -> None:
    """Leaving postgres_server() stops the server and removes its temp directory."""
    with postgres_server(dbname="teardown_check") as server:
        assert (server.socket_dir / "data" / "PG_VERSION").is_file()
        assert _psql(server, "SELECT 1").stdout.strip() == "1"
    assert _port_closed(server.port)
    assert not server.socket_dir.exists()
