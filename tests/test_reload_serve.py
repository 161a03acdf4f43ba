"""Live reload in real `flowpbx serve` processes: two servers on one Redis pick up an edited
flow without a restart, a call in progress finishes on its version whichever server takes its
webhooks, and `flowpbx reload` refuses a broken edit or makes a server reload at once."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from authoring_recipe import VIAJE, with_option_5
from conftest import FLOWS
from flowpbx.language.catalog import flow_version
from serve_process import FLOWPBX, TOKEN, Server, environment, serving, workdir
from servers import RedisServer, redis_server
from test_reload import INVALID
from twilio_fake import call_sid, check_reply, inbound_params, signed_headers

CALLER, CALLED = "+34600111222", "+34910000000"


@pytest.fixture(scope="module")
def redis_db() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def _post(server: Server, path: str, params: Mapping[str, str]) -> httpx.Response:
    url = server.base_url + path
    headers = signed_headers(TOKEN, url, params)
    return httpx.post(url, data=dict(params), headers=headers, timeout=10.0)


def _start(server: Server, sid: str) -> str:
    """A new call to the menu; the gather path its keys go to."""
    reply = check_reply(
        _post(server, "/api/calls/incoming", inbound_params(sid, CALLER, CALLED)),
        public_base=server.base_url,
        https=False,
    )
    return reply.one("Gather")["action"].removeprefix(server.base_url)


def _press(server: Server, sid: str, path: str, keys: str) -> tuple[str, ...]:
    params = inbound_params(sid, CALLER, CALLED, "in-progress") | {"Digits": keys}
    reply = check_reply(_post(server, path, params), public_base=server.base_url, https=False)
    return reply.says


def _version(server: Server) -> str:
    version: str = httpx.get(f"{server.base_url}/health", timeout=5.0).json()["versions"]["seguros"]
    return version


def _wait_for_version(servers: tuple[Server, ...], version: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while any(_version(server) != version for server in servers):
        if time.monotonic() > deadline:
            logs = "\n".join(server.output() for server in servers)
            pytest.fail(f"the servers did not load version {version}:\n{logs}")
        time.sleep(0.1)


def _reload(cwd: Path, env: Mapping[str, str], flows: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLOWPBX), "reload", "--flows", str(flows)],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _flows(tmp_path: Path) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(FLOWS / "seguros.yaml", flows / "seguros.yaml")
    return flows


def test_two_servers_reload_an_edit_and_calls_keep_their_version(
    tmp_path: Path, redis_db: RedisServer
) -> None:
    """Option 5 added while a caller is at the menu: both servers serve it within seconds;
    that caller's 5 is still not an option (on the other server too); a new caller's 5 works;
    a broken edit afterwards is refused by `flowpbx reload` and by the servers."""
    flows = _flows(tmp_path)
    env = environment(
        REDIS_HOST=redis_db.host,
        REDIS_PORT=str(redis_db.port),
        FLOWPBX_HOURS_OVERRIDE="open",
        FLOWPBX_FLOWS_RELOAD="0.2",
    )
    cwd = workdir(tmp_path)
    with serving(cwd, env, flows) as first, serving(cwd, env, flows) as second:
        old_call = call_sid(501)
        old_path = _start(first, old_call)
        path = flows / "seguros.yaml"
        path.write_text(with_option_5(path.read_text("utf-8")), "utf-8")
        _wait_for_version((first, second), flow_version(path.read_bytes()))
        new_call = call_sid(502)
        new_path = _start(second, new_call)
        assert INVALID in _press(second, old_call, old_path, "5")
        assert _press(first, new_call, new_path, "5")[0] == VIAJE

        good = path.read_bytes()
        path.write_text(
            path.read_text("utf-8").replace("      5: viaje\n", "      5: viajes\n"), "utf-8"
        )
        refused = _reload(cwd, env, flows)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "'viajes', which does not exist (did you mean 'viaje'?)" in refused.stderr
        assert "not reloaded" in refused.stderr
        time.sleep(1.0)  # the servers see the file too, and refuse it
        assert _version(first) == _version(second) == flow_version(good)
        assert "flows NOT reloaded" in first.output()
        third = call_sid(503)
        assert _press(first, third, _start(first, third), "5")[0] == VIAJE


def test_flowpbx_reload_signals_a_server_that_does_not_watch(tmp_path: Path) -> None:
    """With watching off (FLOWPBX_FLOWS_RELOAD=0) the edit waits for `flowpbx reload`, which
    checks the flows, names the server it asked, and the server then serves the new version."""
    flows = _flows(tmp_path)
    env = environment(FLOWPBX_HOURS_OVERRIDE="open", FLOWPBX_FLOWS_RELOAD="0")
    cwd = workdir(tmp_path)
    with serving(cwd, env, flows) as server:
        before = _version(server)
        path = flows / "seguros.yaml"
        path.write_text(with_option_5(path.read_text("utf-8")), "utf-8")
        time.sleep(0.5)
        assert _version(server) == before
        done = _reload(cwd, env, flows)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"flows valid: seguros (version {flow_version(path.read_bytes())})" in done.stdout
        assert f"asked flowpbx serve on port {server.port}" in done.stdout
        version = flow_version(path.read_bytes())
        assert f"port {server.port} now serves seguros (version {version})" in done.stdout
        assert _version(server) == version
    # The server removed its pid file when it stopped: nothing is left to signal.
    after = _reload(cwd, env, flows)
    assert after.returncode == 0
    assert "no flowpbx serve is running from here" in after.stdout
