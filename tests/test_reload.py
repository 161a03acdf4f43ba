"""Live reload of the flows: a changed file is swapped in whole, a broken edit is refused while
the last good version serves, and each call stays on the version it started with, in one
process or across processes sharing Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from authoring_recipe import VIAJE, with_option_5
from conftest import FLOWS
from flowpbx.app import catalog_from
from flowpbx.engine.events import KeysPressed, NewCall
from flowpbx.engine.service import CallService
from flowpbx.language.catalog import FlowCatalog, flow_version
from flowpbx.language.library import FlowLibrary
from flowpbx.reloading import (
    FlowReloader,
    Outcome,
    catch_early_hangup,
    fingerprint,
    listen_for_hangup,
    pid_file,
    remove_pid,
    running_servers,
    write_pid,
)
from flowpbx.settings import Settings
from flowpbx.store.memory import MemoryCallStore
from flowpbx.store.redis import RedisCallStore
from flowpbx.twilio.twiml import TwimlRenderer, Urls
from flowpbx.web.queues import QueueHooks
from servers import RedisServer, redis_server

OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
RENDER = TwimlRenderer(Urls("https://pbx.example.com"))
CALLER, CALLED = "+34600111222", "+34910000000"
INVALID = "Lo sentimos, esa opción no es válida."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A flows folder holding a copy of seguros.yaml."""
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(FLOWS / "seguros.yaml", flows / "seguros.yaml")
    return flows


def load(folder: Path) -> FlowCatalog:
    return catalog_from(Settings(twilio_auth_token="t", flows_dir=folder), env_file=None)


def service_on(library: FlowLibrary, store: MemoryCallStore | RedisCallStore) -> CallService:
    return CallService(catalog=library, store=store, renderer=RENDER, clock=lambda: OPEN)


async def walk_to_menu(service: CallService, sid: str) -> int:
    """Start a call and get it to the main menu; the step its keys answer."""
    answer = await service.start(NewCall(call_sid=sid, caller=CALLER, called=CALLED))
    assert answer.step is not None
    assert answer.step.state.node == "menu_principal"
    return answer.step.state.seq


async def press(service: CallService, sid: str, seq: int, keys: str) -> str:
    call = NewCall(call_sid=sid, caller=CALLER, called=CALLED)
    return (await service.handle(call, seq, KeysPressed(digits=keys))).reply


def version(library: FlowLibrary) -> str:
    loaded = library.get("seguros")
    assert loaded is not None
    return loaded.version


async def served(library: FlowLibrary, path: Path, seconds: float = 5.0) -> str:
    """The version of seguros the library serves once it serves `path`'s text (or when
    `seconds` have passed)."""
    wanted = flow_version(path.read_bytes())
    for _ in range(int(seconds / 0.05)):
        if version(library) == wanted:
            break
        await asyncio.sleep(0.05)
    return version(library)


# --- the library ----------------------------------------------------------------------------------


def test_library_swap_keeps_replaced_versions_for_their_calls(folder: Path) -> None:
    """After a swap the library reads as the new catalog, and still finds the old version."""
    first = load(folder)
    library = FlowLibrary(first)
    old = first.flows["seguros"].version
    (folder / "seguros.yaml").write_text(with_option_5((folder / "seguros.yaml").read_text()))
    second = load(folder)
    new = second.flows["seguros"].version
    changes = library.swap(second)
    assert [str(change) for change in changes] == [f"seguros {old} -> {new}"]
    assert library.get("seguros") is second.flows["seguros"]
    assert library.find("seguros", old) is first.flows["seguros"]
    assert library.find("seguros", new) is second.flows["seguros"]
    assert library.find("seguros", "0" * 12) is None
    assert library.swap(second) == []


def test_library_keeps_at_most_keep_versions(folder: Path) -> None:
    """Past `keep` versions, the least recently used one is let go (the store still has it)."""
    library = FlowLibrary(load(folder), keep=2)
    versions = [version(library)]
    for n in range(2):
        path = folder / "seguros.yaml"
        path.write_text(path.read_text() + f"# edit {n}\n")
        library.swap(load(folder))
        versions.append(version(library))
    assert library.versions == 2
    assert library.find("seguros", versions[0]) is None
    assert library.find("seguros", versions[1]) is not None


def test_library_revive_refuses_a_text_of_another_version(folder: Path) -> None:
    """A kept text is only taken for the version it hashes to."""
    library = FlowLibrary(load(folder))
    text = (folder / "seguros.yaml").read_bytes()
    assert library.revive("seguros", "0" * 12, text, "seguros.yaml") is None
    assert library.revive("otro", flow_version(text), text, "seguros.yaml") is None
    revived = library.revive("seguros", flow_version(text), text, "seguros.yaml")
    assert revived is not None
    assert revived.version == flow_version(text)


# --- calls stay on their version ------------------------------------------------------------------


@pytest.mark.anyio
async def test_call_in_progress_finishes_on_its_version_new_calls_get_the_new_one(
    folder: Path,
) -> None:
    """Option 5 added while a caller is at the menu: that caller's 5 is still not an option;
    the next caller's 5 is seguros de viaje."""
    library = FlowLibrary(load(folder))
    service = service_on(library, MemoryCallStore(600))
    old_seq = await walk_to_menu(service, "CA" + "01" * 16)
    (folder / "seguros.yaml").write_text(with_option_5((folder / "seguros.yaml").read_text()))
    reloader = FlowReloader(library, load=lambda: load(folder), folder=folder)
    assert (await reloader.reload()).outcome is Outcome.RELOADED
    new_seq = await walk_to_menu(service, "CA" + "02" * 16)
    assert INVALID in await press(service, "CA" + "01" * 16, old_seq, "5")
    assert VIAJE in await press(service, "CA" + "02" * 16, new_seq, "5")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def stores(redis: RedisServer) -> AsyncIterator[tuple[RedisCallStore, RedisCallStore]]:
    """Two processes' clients of one Redis."""
    first = RedisCallStore.from_url(redis.url, 600)
    second = RedisCallStore.from_url(redis.url, 600)
    await first.client.flushdb()
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.mark.anyio
async def test_process_started_after_the_edit_runs_old_calls_on_their_version(
    folder: Path, stores: tuple[RedisCallStore, RedisCallStore]
) -> None:
    """A process that only ever loaded the new version takes a call started on the old one
    elsewhere, and runs it on the old version from the text the store kept."""
    first_store, second_store = stores
    before = FlowLibrary(load(folder))
    await FlowReloader(
        before, load=lambda: load(folder), folder=folder, store=first_store
    ).keep_texts()
    sid = "CA" + "03" * 16
    seq = await walk_to_menu(service_on(before, first_store), sid)
    (folder / "seguros.yaml").write_text(with_option_5((folder / "seguros.yaml").read_text()))
    after = FlowLibrary(load(folder))
    assert after.find("seguros", version(before)) is None
    assert INVALID in await press(service_on(after, second_store), sid, seq, "5")


@pytest.mark.anyio
async def test_version_nobody_kept_goes_on_with_the_current_one(
    folder: Path, stores: tuple[RedisCallStore, RedisCallStore], caplog: pytest.LogCaptureFixture
) -> None:
    """With the old text lost too, the call is not dropped: it goes on with the current
    version, and the log says so."""
    first_store, second_store = stores
    before = FlowLibrary(load(folder))
    sid = "CA" + "04" * 16
    seq = await walk_to_menu(service_on(before, first_store), sid)
    (folder / "seguros.yaml").write_text(with_option_5((folder / "seguros.yaml").read_text()))
    after = FlowLibrary(load(folder))
    with caplog.at_level(logging.WARNING, logger="flowpbx.calls"):
        assert VIAJE in await press(service_on(after, second_store), sid, seq, "5")
    assert "is no longer known; going on with version" in caplog.text


# --- the reloader ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_broken_edit_is_refused_and_the_last_good_version_serves(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A flow with an error is not swapped in: the problems are logged with file:line."""
    library = FlowLibrary(load(folder))
    good = library.get("seguros")
    path = folder / "seguros.yaml"
    path.write_text(path.read_text().replace("      9: agente_aviso\n", "      9: agente_avisoo\n"))
    reloader = FlowReloader(library, load=lambda: load(folder), folder=folder)
    with caplog.at_level(logging.ERROR, logger="flowpbx.flows"):
        result = await reloader.reload()
    assert result.outcome is Outcome.REFUSED
    assert any("seguros.yaml:" in p and "agente_avisoo" in p for p in result.problems)
    assert library.get("seguros") is good
    assert "flows NOT reloaded" in caplog.text
    assert "still serving the last good version" in caplog.text


@pytest.mark.anyio
async def test_saved_file_is_noticed_and_swapped_in(folder: Path) -> None:
    """The watcher sees a saved file within a few polls and serves the new version."""
    library = FlowLibrary(load(folder))
    reloader = FlowReloader(library, load=lambda: load(folder), folder=folder, poll_seconds=0.05)
    task = asyncio.create_task(reloader.run_forever())
    try:
        await asyncio.sleep(0.2)
        path = folder / "seguros.yaml"
        path.write_text(with_option_5(path.read_text()))
        assert await served(library, path) == flow_version(path.read_bytes())
    finally:
        task.cancel()


@pytest.mark.anyio
async def test_sighup_reloads_when_watching_is_off(folder: Path) -> None:
    """With polling off, SIGHUP to the process makes it reload."""
    library = FlowLibrary(load(folder))
    reloader = FlowReloader(library, load=lambda: load(folder), folder=folder, poll_seconds=0)
    task = asyncio.create_task(reloader.run_forever())
    stop = listen_for_hangup(reloader)
    try:
        path = folder / "seguros.yaml"
        path.write_text(with_option_5(path.read_text()))
        await asyncio.sleep(0.3)
        assert version(library) != flow_version(path.read_bytes())
        os.kill(os.getpid(), signal.SIGHUP)
        assert await served(library, path) == flow_version(path.read_bytes())
    finally:
        stop()
        task.cancel()


@pytest.fixture
def flowpbx_like() -> Iterator[int]:
    """A live process whose command line names flowpbx, as `flowpbx serve`'s does."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "flowpbx"])
    command = Path(f"/proc/{process.pid}/cmdline")
    for _ in range(200):  # until the child has run its own program (not the fork's copy)
        if b"flowpbx" in command.read_bytes():
            break
        time.sleep(0.01)
    yield process.pid
    process.kill()
    process.wait()


def test_running_servers_leaves_out_stale_and_foreign_pid_files(
    tmp_path: Path, flowpbx_like: int
) -> None:
    """Only pid files of live flowpbx processes count: a dead process's, a garbled file, and
    a live process that is not flowpbx (a stale id given to another program) are left out."""
    (tmp_path / "flowpbx-3020.pid").write_text(f"{flowpbx_like}\n")
    (tmp_path / "flowpbx-3021.pid").write_text("999999999\n")
    (tmp_path / "flowpbx-3022.pid").write_text("not a pid\n")
    (tmp_path / "flowpbx-3023.pid").write_text(f"{os.getppid()}\n")
    assert running_servers(tmp_path) == [(tmp_path / "flowpbx-3020.pid", flowpbx_like)]


def test_second_server_on_a_port_leaves_the_first_ones_pid_file(
    tmp_path: Path, flowpbx_like: int
) -> None:
    """A server that will not get the port does not take over (nor later remove) the pid
    file of the live server on it."""
    path = pid_file(tmp_path, 3020)
    path.write_text(f"{flowpbx_like}\n")
    assert write_pid(path) is False
    remove_pid(path)
    assert path.read_text() == f"{flowpbx_like}\n"
    stale = pid_file(tmp_path, 3021)
    stale.write_text("999999999\n")
    assert write_pid(stale) is True
    assert stale.read_text() == f"{os.getpid()}\n"


@pytest.mark.anyio
async def test_reload_failing_unexpectedly_keeps_the_last_good_flows_and_watching(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A load that fails for a reason nobody foresaw (a file gone while reading) is refused
    like a broken edit, and the watcher goes on to serve the next good edit."""
    library = FlowLibrary(load(folder))
    good = library.get("seguros")
    failures = [FileNotFoundError("flows/seguros.yaml")]

    def flaky() -> FlowCatalog:
        if failures:
            raise failures.pop()
        return load(folder)

    reloader = FlowReloader(library, load=flaky, folder=folder, poll_seconds=0.05)
    with caplog.at_level(logging.ERROR, logger="flowpbx.flows"):
        refused = await reloader.reload()
    assert refused.outcome is Outcome.REFUSED
    assert library.get("seguros") is good
    task = asyncio.create_task(reloader.run_forever())
    try:
        path = folder / "seguros.yaml"
        path.write_text(with_option_5(path.read_text()))
        assert await served(library, path) == flow_version(path.read_bytes())
    finally:
        task.cancel()


@pytest.mark.anyio
async def test_edit_saved_while_the_service_starts_is_noticed(folder: Path) -> None:
    """The folder is fingerprinted before the first load: an edit saved between that load
    and the start of watching is still served."""
    seen = fingerprint(folder)
    library = FlowLibrary(load(folder))
    path = folder / "seguros.yaml"
    path.write_text(with_option_5(path.read_text()))
    reloader = FlowReloader(
        library, load=lambda: load(folder), folder=folder, poll_seconds=0.05, seen=seen
    )
    task = asyncio.create_task(reloader.run_forever())
    try:
        assert await served(library, path) == flow_version(path.read_bytes())
    finally:
        task.cancel()


@pytest.mark.anyio
async def test_sighup_during_start_is_kept_for_when_the_service_listens(folder: Path) -> None:
    """A SIGHUP before the service listens does not end the process; it reloads once the
    service listens."""
    catch_early_hangup()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        library = FlowLibrary(load(folder))
        path = folder / "seguros.yaml"
        path.write_text(with_option_5(path.read_text()))
        reloader = FlowReloader(library, load=lambda: load(folder), folder=folder, poll_seconds=0)
        stop = listen_for_hangup(reloader)
        task = asyncio.create_task(reloader.run_forever())
        try:
            assert await served(library, path) == flow_version(path.read_bytes())
        finally:
            stop()
            task.cancel()
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


def test_queue_removed_by_a_reload_is_still_served_to_its_callers(folder: Path) -> None:
    """A reload that renames a queue: new calls see only the new name, but the queue engine
    keeps serving the old one, where callers on the old version may still wait."""
    library = FlowLibrary(load(folder))
    path = folder / "seguros.yaml"
    path.write_text(path.read_text().replace("general-queue", "cola-general"))
    library.swap(load(folder))
    assert set(library.queues) == {"cola-general"}
    assert set(library.serving_queues) == {"cola-general", "general-queue"}
    assert load(folder).serving_queues == load(folder).queues


@pytest.mark.anyio
async def test_caller_waiting_at_a_node_a_reload_renamed_is_still_placed(folder: Path) -> None:
    """The enqueue node a caller waits at is found in the call's own version when a reload
    renamed it, so the caller keeps being placed in the queue and offered to agents."""
    library = FlowLibrary(load(folder))
    service = service_on(library, MemoryCallStore(600))
    sid = "CA" + "05" * 16
    seq = await walk_to_menu(service, sid)
    await press(service, sid, seq, "9")
    path = folder / "seguros.yaml"
    text = path.read_text().replace("  agente:\n", "  cola_agentes:\n")
    path.write_text(text.replace("next: agente\n", "next: cola_agentes\n"))
    library.swap(load(folder))
    hooks = QueueHooks(service=service, engine=None)  # type: ignore[arg-type]
    call = NewCall(call_sid=sid, caller=CALLER, called=CALLED)
    found = await hooks._node(call, "seguros", "agente")
    assert found is not None
    assert (found[1].id, found[1].queue) == ("agente", "general-queue")
    assert await hooks._node(call, "seguros", "no_such_node") is None
