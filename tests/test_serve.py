"""`flowpbx serve` as a real process: settings from .env, a real socket, memory or Redis state.

Each server runs as a subprocess in a temporary working directory (with its own .env) and is
stopped by its process id when the test ends, whatever happens.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import redis

from conftest import FLOWS
from flowpbx.engine.hours import business_hours
from flowpbx.engine.state import CallState
from flowpbx.language.catalog import flow_version
from flowpbx.language.flow import HoursNode
from flowpbx.language.loader import load_flow
from flowpbx.store.redis import call_key
from serve_process import (
    FLOWPBX,
    START_TIMEOUT,
    TOKEN,
    Server,
    environment,
    free_port,
    serving,
    stop,
    workdir,
)
from servers import RedisServer, redis_server
from twilio_fake import call_sid, check_reply, inbound_params, signed_headers

CALLER = "+34600111222"
CALLED = "+34910000000"
BIENVENIDA = (
    "Bienvenido a Seguros. Le informamos de que esta llamada puede ser grabada para mejorar "
    "la calidad del servicio."
)
CERRADO = (
    "Gracias por llamar a Seguros. Nuestro horario de atención es de lunes a viernes, "
    "de nueve de la mañana a siete de la tarde."
)


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
        stop(process)
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
    with serving(workdir(tmp_path), environment()) as server:
        health = httpx.get(f"{server.base_url}/health", timeout=5.0).json()
        history = health.pop("history")
        versions = health.pop("versions")
        assert health.pop("pid") == server.process.pid
        assert health == {"status": "ok", "store": "memory", "flows": ["seguros"], "workers": 1}
        assert versions == {"seguros": flow_version((FLOWS / "seguros.yaml").read_bytes())}
        assert history["backlog"] == 0
        assert history["writer"] in ("starting", "writing")
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
    assert "neither REDIS_HOST nor REDIS_CLUSTER_NODES is set" in server.output()


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`docker stop` (SIGTERM) ends the server gracefully: exit status 0, not death by the
    signal, and its pid file is gone so that `flowpbx reload` finds no stale server."""
    cwd = workdir(tmp_path)
    with serving(cwd, environment()) as server:
        pid = cwd / "data" / f"flowpbx-{server.port}.pid"
        assert pid.read_text("utf-8").strip() == str(server.process.pid)
    assert server.process.returncode == 0, server.output()
    assert not pid.exists()
    # Its log says it starts (not that it listens: uvicorn has not yet), then that it stops.
    events = [json.loads(line)["event"] for line in server.output().splitlines()]
    assert any(f"starting on 0.0.0.0:{server.port}" in event for event in events), events
    assert not any("listening on" in event for event in events), events
    assert events[-1] == (
        "flowpbx: stopping; 0 call(s) in progress, whose state ends with this process"
    ), events


def test_serve_redis_keeps_call_state_with_ttl(tmp_path: Path, redis_db: RedisServer) -> None:
    """With REDIS_HOST set, the very first webhook after start works (its Redis connection
    belongs to the server's event loop), then gather, and the call's state key has a TTL."""
    env = environment(
        REDIS_HOST=redis_db.host,
        REDIS_PORT=str(redis_db.port),
        FLOWPBX_HOURS_OVERRIDE="open",
        FLOWPBX_CALL_TTL="900",
    )
    sid = call_sid(2)
    client = redis.Redis(host=redis_db.host, port=redis_db.port, decode_responses=True)
    try:
        client.delete(call_key(sid))
        with serving(workdir(tmp_path), env) as server:
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
            ttl = client.ttl(call_key(sid))
            assert isinstance(ttl, int)
            assert 0 < ttl <= 900
            blob = client.hget(call_key(sid), "state")
            assert isinstance(blob, str)
            state = CallState.from_json(blob)
            assert (state.node, state.seq) == ("llamar_vida", 2)
            health = httpx.get(f"{server.base_url}/health", timeout=5.0)
            assert (health.status_code, health.json()["store"]) == (200, "redis")
        assert "FLOWPBX_HOURS_OVERRIDE=open" in server.output()
    finally:
        client.close()


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    """A port another program listens on: the server stops before it starts anything (no
    line says it listens, uvicorn has nothing to say), with a non-zero exit and one line that
    names the port and what to do."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = _run_failing(workdir(tmp_path), environment(), "--port", str(port))
    assert code != 0
    assert output.splitlines() == [
        f"flowpbx cannot start: cannot listen on 0.0.0.0:{port}: port {port} is already in use "
        "(another flowpbx serve, or another program); stop it, or choose another port "
        "(--port, PORT)"
    ], output


def test_serve_bad_port_setting_exits_naming_port(tmp_path: Path) -> None:
    """PORT=abc stops the start with a non-zero exit and a message that names PORT."""
    code, output = _run_failing(workdir(tmp_path), environment(PORT="abc"))
    assert code != 0
    assert "PORT='abc'" in output


def test_serve_unreachable_redis_exits_naming_redis(tmp_path: Path) -> None:
    """A REDIS_HOST/REDIS_PORT where nothing listens stops the start, naming Redis."""
    closed = free_port()
    env = environment(REDIS_HOST="127.0.0.1", REDIS_PORT=str(closed))
    code, output = _run_failing(workdir(tmp_path), env, "--port", str(free_port()))
    assert code != 0
    assert "Redis" in output
    assert f"127.0.0.1:{closed}" in output


def test_serve_binds_the_address_host_names() -> None:
    """HOST is resolved as the operating system does (localhost), an IPv6 address gets an
    IPv6-only socket as asyncio's servers do, and an unknown name says what to check."""
    from flowpbx.settings import Settings
    from flowpbx.workers import bind, cannot_listen, listeners

    named = bind("localhost", 0)
    try:
        assert named.getsockname()[0] in ("127.0.0.1", "::1")
    finally:
        named.close()
    six = bind("::1", 0)
    try:
        assert six.family == socket.AF_INET6
        assert six.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        six.close()
    for sock in listeners("localhost", free_port(), 2):
        sock.close()
    with pytest.raises(socket.gaierror) as unknown:
        bind("no-such-host.invalid", 0)
    message = cannot_listen(Settings(host="no-such-host.invalid", port=3020), unknown.value)
    assert message.startswith("cannot listen on no-such-host.invalid:3020: ")
    assert message.endswith("check HOST and PORT (--host, --port)")
