"""`flowpbx serve` as a real process: settings from .env, a real socket, memory or Redis state.

Each server runs as a subprocess in a temporary working directory (with its own .env) and is
stopped by its process id when the test ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from conftest import FLOWS
from flowpbx.engine.interpreter import business_hours
from flowpbx.engine.state import CallState
from flowpbx.language.flow import HoursNode
from flowpbx.language.loader import load_flow
from flowpbx.store.redis import KEY_PREFIX
from servers import RedisServer, redis_server
from twilio_fake import call_sid, check_reply, inbound_params, signed_headers

TOKEN = "test-token"
FLOWPBX = Path(sys.executable).with_name("flowpbx")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CALLER = "+34600111222"
CALLED = "+34910000000"
BIENVENIDA = "Bienvenido a Seguros."
CERRADO = (
    "Gracias por llamar a Seguros. Nuestro horario de atención es de lunes a viernes, "
    "de nueve de la mañana a siete de la tarde."
)
# Variables the service reads: none may leak in from the environment running the tests.
_OWN_PREFIXES = ("TWILIO_", "REDIS_", "DB_", "FLOWPBX_")
_OWN_NAMES = frozenset({"PORT", "HOST", "PUBLIC_BASE_URL", "LOG_LEVEL"})


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _environment(**extra: str) -> dict[str, str]:
    config_names = set(load_flow(FLOWS / "seguros.yaml").config)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_OWN_PREFIXES)
        and name not in _OWN_NAMES
        and name not in config_names
    }
    return env | extra


def _workdir(tmp_path: Path) -> Path:
    """A working directory whose .env holds only the auth token."""
    (tmp_path / ".env").write_text(f"TWILIO_AUTH_TOKEN={TOKEN}\n", encoding="utf-8")
    return tmp_path


@dataclass(frozen=True)
class Server:
    """A running `flowpbx serve` process."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the process we started (by its id), killing it if it does not exit."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def serving(workdir: Path, env: Mapping[str, str]) -> Iterator[Server]:
    """Start `flowpbx serve` on a free port and wait until it accepts connections.

    Readiness is a bare TCP connect, not /health: a health check would use the call store
    first and hide a store that breaks on its first use.
    """
    port = _free_port()
    log = workdir / "server.log"
    command = [str(FLOWPBX), "serve", "--port", str(port), "--flows", str(FLOWS)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"flowpbx serve exited with {process.returncode}:\n{server.output()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"flowpbx serve did not accept connections:\n{server.output()}")
            time.sleep(0.05)
        yield server
    finally:
        _stop(process)


def _run_failing(workdir: Path, env: Mapping[str, str], *args: str) -> tuple[int, str]:
    """Run `flowpbx serve` expecting it to stop by itself; its exit code and output."""
    command = [str(FLOWPBX), "serve", "--flows", str(FLOWS), *args]
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = process.communicate(timeout=START_TIMEOUT)
    finally:
        _stop(process)
    return process.returncode, output.decode("utf-8", errors="replace")


def _post(server: Server, path: str, params: Mapping[str, str], *, sign: bool) -> httpx.Response:
    url = server.base_url + path
    headers = signed_headers(TOKEN, url, params)
    if not sign:
        del headers["X-Twilio-Signature"]
    return httpx.post(url, data=dict(params), headers=headers, timeout=10.0)


@pytest.fixture(scope="module")
def redis_db() -> Iterator[RedisServer]:
    """A real redis-server for the servers that keep state there."""
    with redis_server() as server:
        yield server


def test_serve_memory_answers_signed_incoming(tmp_path: Path) -> None:
    """Without Redis, a signed call gets Spanish TwiML for the Madrid time; unsigned gets 403."""
    horario = load_flow(FLOWS / "seguros.yaml").nodes["horario"]
    assert isinstance(horario, HoursNode)
    expected = {"open": BIENVENIDA, "closed": CERRADO, "holiday": CERRADO}
    with serving(_workdir(tmp_path), _environment()) as server:
        health = httpx.get(f"{server.base_url}/health", timeout=5.0).json()
        assert health == {"status": "ok", "store": "memory", "flows": ["seguros"]}
        params = inbound_params(call_sid(1), CALLER, CALLED)
        before = business_hours(horario, dt.datetime.now(dt.UTC))
        response = _post(server, "/api/calls/incoming", params, sign=True)
        after = business_hours(horario, dt.datetime.now(dt.UTC))
        reply = check_reply(response, public_base=server.base_url, https=False)
        assert reply.says[0] in {expected[before], expected[after]}
        assert reply.seq == 1
        unsigned = _post(server, "/api/calls/incoming", params, sign=False)
        assert unsigned.status_code == 403
        assert unsigned.json()["error"] == "invalid_signature"
    assert "REDIS_HOST is not set" in server.output()


def test_serve_redis_keeps_call_state_with_ttl(tmp_path: Path, redis_db: RedisServer) -> None:
    """With REDIS_HOST set, the very first webhook after start works (its Redis connection
    belongs to the server's event loop), then gather, and the call's state key has a TTL."""
    env = _environment(
        REDIS_HOST=redis_db.host,
        REDIS_PORT=str(redis_db.port),
        FLOWPBX_HOURS_OVERRIDE="open",
        FLOWPBX_CALL_TTL="900",
    )
    sid = call_sid(2)
    client = redis.Redis(host=redis_db.host, port=redis_db.port, decode_responses=True)
    try:
        client.delete(KEY_PREFIX + sid)
        with serving(_workdir(tmp_path), env) as server:
            started = _post(
                server, "/api/calls/incoming", inbound_params(sid, CALLER, CALLED), sign=True
            )
            menu = check_reply(started, public_base=server.base_url, https=False)
            assert menu.says[0] == BIENVENIDA
            gather_path = "/api/calls/gather?seq=1"
            assert menu.one("Gather")["action"] == server.base_url + gather_path
            params = inbound_params(sid, CALLER, CALLED, "in-progress") | {"Digits": "1"}
            pressed = _post(server, gather_path, params, sign=True)
            dial = check_reply(pressed, public_base=server.base_url, https=False)
            assert [n.text for n in dial.one("Dial").named("Number")] == ["+34912345671"]
            ttl = client.ttl(KEY_PREFIX + sid)
            assert isinstance(ttl, int)
            assert 0 < ttl <= 900
            blob = client.hget(KEY_PREFIX + sid, "state")
            assert isinstance(blob, str)
            state = CallState.from_json(blob)
            assert (state.node, state.seq) == ("llamar_vida", 2)
            health = httpx.get(f"{server.base_url}/health", timeout=5.0)
            assert (health.status_code, health.json()["store"]) == (200, "redis")
        assert "FLOWPBX_HOURS_OVERRIDE=open" in server.output()
    finally:
        client.close()


def test_serve_bad_port_setting_exits_naming_port(tmp_path: Path) -> None:
    """PORT=abc stops the start with a non-zero exit and a message that names PORT."""
    code, output = _run_failing(_workdir(tmp_path), _environment(PORT="abc"))
    assert code != 0
    assert "PORT='abc'" in output


def test_serve_unreachable_redis_exits_naming_redis(tmp_path: Path) -> None:
    """A REDIS_HOST/REDIS_PORT where nothing listens stops the start, naming Redis."""
    closed = _free_port()
    env = _environment(REDIS_HOST="127.0.0.1", REDIS_PORT=str(closed))
    code, output = _run_failing(_workdir(tmp_path), env, "--port", str(_free_port()))
    assert code != 0
    assert "Redis" in output
    assert f"127.0.0.1:{closed}" in output
