"""Structured logs (`flowpbx.logs`): one JSON object per line, the CallSid on every line about a
call, phone numbers masked and secrets never written; in a real `flowpbx serve` too."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis

from conftest import FLOWS, fresh_postgres_url
from flowpbx.app import build_service
from flowpbx.db.database import Database
from flowpbx.db.migrate import upgrade
from flowpbx.engine.progress import Report
from flowpbx.language.catalog import FlowCatalog, LoadedFlow
from flowpbx.language.loader import load_flow
from flowpbx.logs import REDACTED, Redactor, about_call, log_formatter, secrets_of
from flowpbx.queues import directory
from flowpbx.queues.directory import AgentDirectory
from flowpbx.queues.engine import QueueEngine
from flowpbx.queues.memory_store import MemoryQueueStore
from flowpbx.queues.model import AgentStatus, Waiter
from flowpbx.settings import Settings, SettingsError
from flowpbx.store.memory import MemoryCallStore
from flowpbx.store.redis import call_key
from flowpbx.twilio.rest import PlacedCall, TwilioFailure
from flowpbx.twilio.signature import SIGNATURE_HEADER
from flowpbx.web.app import create_app
from serve_process import Server, environment, serving, workdir
from servers import PostgresServer, RedisServer, redis_server
from twilio_fake import (
    BASE_URL,
    TestClient,
    TwilioDriver,
    call_sid,
    check_reply,
    inbound_params,
    signed_headers,
)

Line = dict[str, Any]

CALLER = "+34612345678"
MASKED = "+34******678"
CALLED = "+34910000000"
AUTH_TOKEN = "authtoken-0f3c9a7e21d54b68"
API_SECRET = "apisecret-7d2e4b9c1a6f3058"
REDIS_PASSWORD = "redispass-5b8e2c7d"
DB_PASSWORD = "dbpass-9a4c7e1f3b"
URL_PASSWORD = "urlp@ss/w0rd-31ce"
"""DATABASE_URL's password: special characters, so that the URL holds it quoted."""
API_KEY = "fpbx_0123abcd_" + "S3cr3tK3y" * 4 + "S3cr3tK"
SECRETS = (AUTH_TOKEN, API_SECRET, REDIS_PASSWORD, DB_PASSWORD, URL_PASSWORD)
SID = call_sid(901)
OTHER = call_sid(902)
APOLOGY = "Lo sentimos, se ha producido un error. Volvemos al menú principal."
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
ROTO = """\
name: roto
entry: menu
defaults:
  voice: Polly.Lucia
  language: es-ES
config:
  DESTINO: ~
on_error:
  text: Perdone, ha habido un problema. Le atiende un agente.
  next: agente
queues:
  roto-queue: {}
nodes:
  menu:
    type: menu
    prompt: Pulse 1 para llamar.
    options:
      1: llamar
    exhausted: agente
  llamar:
    type: dial
    to: ${DESTINO}
    no_answer: adios
  agente:
    type: enqueue
    queue: roto-queue
    timed_out: adios
    full: adios
  adios:
    type: hangup
    text: Adiós.
"""
"""A flow whose dial fails at runtime (DESTINO has no value): the caller hears the apology."""

log = logging.getLogger("flowpbx.test.logs")


@contextlib.contextmanager
def captured(fmt: str = "json", secrets: Iterable[str] = ()) -> Iterator[io.StringIO]:
    """What flowpbx's formatter writes for the records of this block (INFO and up)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter(fmt, secrets=secrets))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def parsed(text: str) -> list[Line]:
    """Each line of `text` as the JSON object it must be."""
    lines = []
    for line in text.splitlines():
        value = json.loads(line)
        assert isinstance(value, dict), line
        lines.append(value)
    return lines


def one(lines: list[Line], text: str) -> Line:
    found = [line for line in lines if text in line["event"]]
    assert len(found) == 1, (text, lines)
    return found[0]


# --- The formatter -----------------------------------------------------------------------------


def test_a_line_is_one_json_object_with_time_level_logger_and_message() -> None:
    """%-style arguments are rendered into `event`; the time is ISO 8601 in UTC; the usual
    fields come first, then the context."""
    before = dt.datetime.now(dt.UTC)
    with captured() as out, about_call(SID):
        log.warning("call %s: %s for a call with no state", SID, "KeysPressed")
    (line,) = parsed(out.getvalue())
    assert list(line) == ["timestamp", "level", "logger", "event", "pid", "call_sid"]
    assert line["pid"] == os.getpid()
    assert line["level"] == "warning"
    assert line["logger"] == "flowpbx.test.logs"
    assert line["event"] == f"call {SID}: KeysPressed for a call with no state"
    assert line["call_sid"] == SID
    assert line["timestamp"].endswith("Z")
    at = dt.datetime.fromisoformat(line["timestamp"])
    assert at.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= at <= dt.datetime.now(dt.UTC)


def test_configured_secrets_are_redacted_wherever_they_stand() -> None:
    """The auth token, API secret and passwords (raw or URL-quoted) are redacted in the
    message, in extra fields, nested ones too, and in a traceback."""
    url = f"postgresql://flowpbx:{quote(URL_PASSWORD, safe='')}@db:5432/flowpbx"
    with captured(secrets=SECRETS) as out:
        log.error(
            "signing with %s and %s failed; Redis said %s",
            AUTH_TOKEN,
            API_SECRET,
            f"AUTH {REDIS_PASSWORD} refused",
            extra={"context": {"tried": [DB_PASSWORD, f"x{URL_PASSWORD}x"]}, "url": url},
        )
        try:
            raise ConnectionError(f"password {quote(URL_PASSWORD)} refused")
        except ConnectionError:
            log.exception("database down")
    text = out.getvalue()
    for secret in (*SECRETS, quote(URL_PASSWORD, safe=""), quote(URL_PASSWORD)):
        assert secret not in text
    first, second = parsed(text)
    assert first["event"] == (
        f"signing with {REDACTED} and {REDACTED} failed; Redis said AUTH {REDACTED} refused"
    )
    assert first["context"] == {"tried": [REDACTED, f"x{REDACTED}x"]}
    assert first["url"] == f"postgresql://flowpbx:{REDACTED}@db:5432/flowpbx"
    assert second["exception"].endswith(f"ConnectionError: password {REDACTED} refused")


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        pytest.param(
            "database postgresql://flowpbx:hunter2@db:5432/x down",
            f"database postgresql://flowpbx:{REDACTED}@db:5432/x down",
            id="url-password",
        ),
        pytest.param(
            "redis://:hunter2@cache:6379/0", f"redis://:{REDACTED}@cache:6379/0", id="url-no-user"
        ),
        pytest.param(
            f"refused key {API_KEY}", f"refused key fpbx_0123abcd_{REDACTED}", id="api-key"
        ),
        pytest.param(
            "Authorization: Bearer abcdefgh12345678",
            f"Authorization: Bearer {REDACTED}",
            id="bearer",
        ),
        pytest.param(
            "sent Basic QUM5OnNlY3JldA== to Twilio", f"sent Basic {REDACTED} to Twilio", id="basic"
        ),
        pytest.param(
            "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbmEifQ.c2lnbmF0dXJl issued",
            f"token {REDACTED} issued",
            id="jwt",
        ),
        pytest.param(
            "{'X-Twilio-Signature': 'xZ3kQ9+abc/def=', 'Accept': '*/*'}",
            f"{{'X-Twilio-Signature': '{REDACTED}', 'Accept': '*/*'}}",
            id="header-in-a-dict",
        ),
        pytest.param(
            "GET /x?AccessToken=abc123&page=2",
            f"GET /x?AccessToken={REDACTED}&page=2",
            id="query",
        ),
        pytest.param("password: hunter2", f"password: {REDACTED}", id="pair"),
    ],
)
def test_secrets_in_well_known_forms_are_redacted(text: str, clean: str) -> None:
    """Credentials flowpbx was not told about are caught by their form."""
    assert Redactor().text(text) == clean


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("rejected POST 'https://pbx/x': bad X-Twilio-Signature", id="signature-word"),
        pytest.param("TWILIO_AUTH_TOKEN is still the .env.example placeholder", id="setting"),
        pytest.param("FLOWPBX_TOKEN_TTL=3600 seconds", id="token-ttl"),
        pytest.param(f"reservation {'ab' * 16} of agent ana lapsed", id="hex-id"),
        pytest.param(f"call {SID}: flow seguros, now at menu_principal", id="call"),
        pytest.param("refused POST /api/token: no API key", id="no-key"),
    ],
)
def test_ordinary_messages_are_left_alone(text: str) -> None:
    assert Redactor(SECRETS).text(text) == text


def test_a_short_secret_is_not_searched_for_everywhere() -> None:
    """A password like `flowpbx` would blank out every mention of flowpbx; it is still
    redacted in a URL."""
    redactor = Redactor(["flowpbx"])
    assert redactor.text("flowpbx serve: 2 workers") == "flowpbx serve: 2 workers"
    assert redactor.text("postgresql://flowpbx:flowpbx@db/x") == (
        f"postgresql://flowpbx:{REDACTED}@db/x"
    )


def test_fields_named_like_secrets_lose_their_value_and_numbers_are_masked_in_nested_values() -> (
    None
):
    with captured() as out:
        log.info(
            "callback",
            extra={
                "auth": {"user": "ana", "password": "hunter2", "api_key": 12345},
                "signature": "xZ3kQ9+abc/def=",
                "parties": [{"from": CALLER, "note": (f"called {CALLER}",)}],
                "waited": 12.5,
            },
        )
    (line,) = parsed(out.getvalue())
    assert line["auth"] == {"user": "ana", "password": REDACTED, "api_key": REDACTED}
    assert line["signature"] == REDACTED
    assert line["parties"] == [{"from": MASKED, "note": [f"called {MASKED}"]}]
    assert line["waited"] == 12.5
    assert CALLER not in out.getvalue()


def test_an_exception_is_one_masked_string_in_the_line() -> None:
    """A traceback (a chained one too) is the `exception` field of the one JSON line, with
    its numbers masked and its secrets redacted."""
    with captured(secrets=SECRETS) as out, about_call(SID):
        try:
            try:
                raise ConnectionError(f"AUTH {REDIS_PASSWORD} refused while calling {CALLER}")
            except ConnectionError as exc:
                raise RuntimeError("call store down") from exc
        except RuntimeError:
            log.exception("call %s: call store unavailable", SID)
    text = out.getvalue()
    assert text.count("\n") == 1
    (line,) = parsed(text)
    assert (line["level"], line["call_sid"]) == ("error", SID)
    exception = line["exception"]
    assert exception.startswith("Traceback (most recent call last):")
    assert f"ConnectionError: AUTH {REDACTED} refused while calling {MASKED}" in exception
    assert exception.endswith("RuntimeError: call store down")
    assert CALLER not in text
    assert REDIS_PASSWORD not in text


def test_the_console_format_is_one_line_for_people_masked_too() -> None:
    with captured("console") as out, about_call(SID):
        log.warning("softphone ana calls %s", CALLER)
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "\x1b[" not in text  # no colors outside a terminal
    assert "warning" in text
    assert f"softphone ana calls {MASKED}" in text
    assert f"call_sid={SID}" in text
    assert CALLER not in text


def test_uvicorns_colored_copy_of_a_message_is_dropped() -> None:
    with captured() as out:
        logging.getLogger("uvicorn.error").warning("Invalid", extra={"color_message": "\x1b[1m"})
    (line,) = parsed(out.getvalue())
    assert "color_message" not in line


def test_about_call_binds_the_callsid_for_its_block_and_the_tasks_it_starts() -> None:
    async def later() -> None:
        log.info("in a task")

    async def main() -> None:
        with about_call(SID):
            await asyncio.create_task(later())

    with captured() as out:
        with about_call(SID):
            log.info("a")
            with about_call(OTHER):
                log.info("b")
            log.info("c")
            with about_call(None):
                log.info("d")
        log.info("e")
        asyncio.run(main())
    lines = parsed(out.getvalue())
    assert [(line["event"], line.get("call_sid")) for line in lines] == [
        ("a", SID),
        ("b", OTHER),
        ("c", SID),
        ("d", SID),
        ("e", None),
        ("in a task", SID),
    ]


# --- Settings and configure_logging ------------------------------------------------------------


def test_log_format_setting() -> None:
    base = {"TWILIO_AUTH_TOKEN": "x"}
    assert Settings.from_env(base, env_file=None).log_format == "json"
    console = Settings.from_env(base | {"LOG_FORMAT": "Console"}, env_file=None)
    assert console.log_format == "console"
    with pytest.raises(SettingsError, match="LOG_FORMAT='XML' is not valid"):
        Settings.from_env(base | {"LOG_FORMAT": "xml"}, env_file=None)


def test_secrets_of_the_settings() -> None:
    """The values to redact: every configured secret, DATABASE_URL's password raw and quoted."""
    settings = Settings(
        twilio_auth_token=AUTH_TOKEN,
        twilio_api_secret=API_SECRET,
        redis_password=REDIS_PASSWORD,
        db_password=DB_PASSWORD,
        database_url_override=f"postgresql://u:{quote(URL_PASSWORD, safe='')}@db/x",
    )
    assert set(secrets_of(settings)) == {*SECRETS, quote(URL_PASSWORD, safe="")}
    assert secrets_of(Settings()) == ()


def test_secrets_of_the_read_replica_and_the_metrics_token() -> None:
    """DATABASE_READ_URL's password (as written in the URL and decoded) and
    FLOWPBX_METRICS_TOKEN are redacted like the others."""
    read_password = "readp@ss/w0rd-77ab"
    metrics_token = "metrics-token-4f1e9c2d"
    settings = Settings.from_env(
        {
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "DATABASE_READ_URL": f"postgresql://r:{quote(read_password, safe='')}@replica/x",
            "FLOWPBX_METRICS_TOKEN": metrics_token,
        },
        env_file=None,
    )
    assert {read_password, quote(read_password, safe=""), metrics_token} <= set(
        secrets_of(settings)
    )
    with captured(secrets=secrets_of(settings)) as out:
        log.info("scrape with %s; replica said %s", metrics_token, read_password)
        log.info("replica at host replica, password %s", quote(read_password, safe=""))
    text = out.getvalue()
    for secret in (read_password, quote(read_password, safe=""), metrics_token):
        assert secret not in text, secret
    assert text.count(REDACTED) == 3


CONFIGURE = """
import logging, sys
import structlog
from flowpbx.logs import configure_logging

configure_logging("INFO", "console")  # replaced by the next call: one line per record
configure_logging("INFO", "json", secrets=[sys.argv[1]])
logging.getLogger("flowpbx.calls").info("call %s from %s", "CA" + "0" * 32, "+34612345678")
logging.getLogger("flowpbx.calls").debug("not at INFO")
logging.getLogger("twilio.http_client").info("-- BEGIN Twilio API Request --")
logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
structlog.get_logger("flowpbx.native").info("native", to="+34612345678", password=sys.argv[1])
try:
    raise ValueError("refused " + sys.argv[1])
except ValueError:
    logging.getLogger("flowpbx.web").exception("webhook failed")
"""


def test_configure_logging_sends_every_logger_through_one_json_handler() -> None:
    """flowpbx's loggers, uvicorn's and structlog's own end as JSON lines on standard error, at
    LOG_LEVEL, a traceback inside its line; twilio's chatter stays out; configuring again
    replaces the handler."""
    done = subprocess.run(
        [sys.executable, "-c", CONFIGURE, AUTH_TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == ""
    lines = parsed(done.stderr)
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("flowpbx.calls", "info"),
        ("uvicorn.error", "warning"),
        ("flowpbx.native", "info"),
        ("flowpbx.web", "error"),
    ]
    assert lines[0]["event"] == f"call {'CA' + '0' * 32} from {MASKED}"
    assert lines[2] == lines[2] | {"event": "native", "to": MASKED, "password": REDACTED}
    assert lines[3]["exception"].endswith(f"ValueError: refused {REDACTED}")
    assert AUTH_TOKEN not in done.stderr


def test_configure_logging_leaves_logging_someone_else_set_up() -> None:
    script = (
        "import logging\n"
        "from flowpbx.logs import configure_logging\n"
        "logging.basicConfig(format='plain %(message)s')\n"
        "configure_logging('INFO', 'json')\n"
        "logging.getLogger('flowpbx').warning('hello')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr == "plain hello\n"


# --- The CallSid on lines from deep inside ------------------------------------------------------


def test_lines_from_deep_inside_the_engine_carry_the_webhooks_callsid(tmp_path: Path) -> None:
    """A step that fails (its dial has no number) is logged by the engine's service with the
    traceback and the CallSid of the webhook; so is a call whose state is lost; a line logged
    after the webhooks carries none."""
    path = tmp_path / "roto.yaml"
    path.write_text(ROTO, encoding="utf-8")
    catalog = FlowCatalog({"roto": LoadedFlow(load_flow(path), "v-test", {})}, {}, "roto")
    settings = Settings(twilio_auth_token=AUTH_TOKEN, flows_dir=tmp_path)
    service = build_service(settings, catalog, MemoryCallStore(3600), clock=lambda: OPEN)
    app = create_app(settings, service)
    with captured() as out, TestClient(app, base_url=BASE_URL) as client:
        call = TwilioDriver(client, AUTH_TOKEN)
        call.start(SID)
        assert call.press("1").says == ("Perdone, ha habido un problema. Le atiende un agente.",)
        lost = TwilioDriver(client, AUTH_TOKEN)
        lost.call_sid, lost.from_, lost.to = OTHER, CALLER, CALLED
        lost.check(lost.post(lost.url("/api/calls/gather?seq=1"), lost.params(Digits="1")))
        log.info("after the webhooks")
    lines = parsed(out.getvalue())
    failed = one(lines, "failed at node")
    assert (failed["logger"], failed["level"], failed["call_sid"]) == (
        "flowpbx.calls",
        "error",
        SID,
    )
    assert "DESTINO" in failed["exception"]
    recovered = one(lines, "recovered (state_lost)")
    assert (recovered["logger"], recovered["call_sid"]) == ("flowpbx.calls", OTHER)
    for sid in (SID, OTHER):
        about = [line for line in lines if sid in line["event"]]
        assert about, sid
        assert all(line["call_sid"] == sid for line in about), about
    assert "call_sid" not in one(lines, "after the webhooks")


def test_only_a_well_formed_callsid_is_bound(tmp_path: Path) -> None:
    """A request's CallSid is bound even when its signature is refused (to find the refusals
    of a call), but only if it is one: a caller-chosen string never becomes `call_sid`."""
    settings = Settings(twilio_auth_token=AUTH_TOKEN, flows_dir=FLOWS)
    catalog = FlowCatalog(
        {"seguros": LoadedFlow(load_flow(FLOWS / "seguros.yaml"), "v-test", {})}, {}, "seguros"
    )
    service = build_service(settings, catalog, MemoryCallStore(3600), clock=lambda: OPEN)
    with captured() as out, TestClient(create_app(settings, service), base_url=BASE_URL) as client:
        for sid in (SID, f"{CALLER} or anything"):
            params = inbound_params(sid, CALLER, CALLED)
            response = client.post("/api/calls/incoming", data=params)
            assert response.status_code == 403
    good, forged = (line for line in parsed(out.getvalue()) if line["logger"] == "flowpbx.web")
    assert good["call_sid"] == SID
    assert "call_sid" not in forged
    assert f"CallSid '{MASKED} or anything'" in forged["event"]


PIDS = """
import logging, multiprocessing, os, sys
from flowpbx.logs import configure_logging

def spawned() -> None:
    configure_logging("INFO", "json")  # as a worker of flowpbx serve --workers does
    logging.getLogger("flowpbx").info("spawned %d", os.getpid())

def forked() -> None:
    logging.getLogger("flowpbx").info("forked %d", os.getpid())

if __name__ == "__main__":
    configure_logging("INFO", "json")
    logging.getLogger("flowpbx").info("parent %d", os.getpid())
    for method, target in (("spawn", spawned), ("fork", forked)):
        child = multiprocessing.get_context(method).Process(target=target)
        child.start()
        child.join()
"""


def test_every_line_names_the_process_that_wrote_it(tmp_path: Path) -> None:
    """`pid` on every line: the parent's, a spawned child's (which sets up its own logging, as
    the workers of `flowpbx serve --workers N` do) and a forked child's (which inherits the
    parent's) each carry their own process id."""
    script = tmp_path / "pids.py"
    script.write_text(PIDS, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    lines = parsed(done.stderr)
    assert [line["event"].split()[0] for line in lines] == ["parent", "spawned", "forked"]
    for line in lines:
        assert line["pid"] == int(line["event"].split()[1]), line
    assert len({line["pid"] for line in lines}) == 3


def test_a_status_callback_is_logged_as_fields_and_the_app_says_when_it_stops() -> None:
    """A status callback's line: a short message and its facts as fields (status, duration,
    sequence number), the CallSid bound; no dict in the message, no number unmasked, no
    signature. When the app's lifespan ends, flowpbx says so with the calls in progress."""
    settings = Settings(twilio_auth_token=AUTH_TOKEN, flows_dir=FLOWS)
    catalog = FlowCatalog(
        {"seguros": LoadedFlow(load_flow(FLOWS / "seguros.yaml"), "v-test", {})}, {}, "seguros"
    )
    service = build_service(settings, catalog, MemoryCallStore(3600), clock=lambda: OPEN)
    with captured() as out, TestClient(create_app(settings, service), base_url=BASE_URL) as client:
        for sid, status in ((SID, "ringing"), (OTHER, "ringing")):
            params = inbound_params(sid, CALLER, CALLED, status)
            headers = signed_headers(AUTH_TOKEN, f"{BASE_URL}/api/calls/incoming", params)
            assert client.post("/api/calls/incoming", data=params, headers=headers).is_success
        ended = inbound_params(SID, CALLER, CALLED, "completed") | {
            "CallDuration": "73",
            "SequenceNumber": "2",
        }
        headers = signed_headers(AUTH_TOKEN, f"{BASE_URL}/api/webhooks/call-status", ended)
        signature = headers[SIGNATURE_HEADER]
        answer = client.post("/api/webhooks/call-status", data=ended, headers=headers)
        assert answer.status_code == 204
    text = out.getvalue()
    lines = parsed(text)
    callback = one(lines, "call-status callback")
    assert callback == callback | {
        "logger": "flowpbx.web",
        "level": "info",
        "event": "call-status callback: completed",
        "call_sid": SID,
        "call_status": "completed",
        "call_duration": "73",
        "sequence_number": "2",
    }
    assert CALLER not in text
    assert CALLED not in text
    assert signature not in text
    stopping = one(lines, "stopping")
    assert stopping == stopping | {
        "logger": "flowpbx",
        "level": "info",
        "event": "flowpbx: stopping; 1 call(s) in progress, whose state ends with this process",
        "calls_in_progress": 1,
        "pid": os.getpid(),
    }


class Unreachable:
    """Twilio, as the queue engine sees it, unreachable (its error quotes the caller)."""

    async def dequeue(self, queue_sid: str, call_sid: str, url: str) -> None:
        raise TwilioFailure(f"cannot reach the call of {CALLER}")

    async def redirect(self, call_sid: str, url: str) -> None:
        raise TwilioFailure(f"cannot reach the call of {CALLER}")

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        timeout: int = 30,
        events: tuple[str, ...] = (),
    ) -> PlacedCall:
        raise AssertionError("no callback here")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_queue_schedulers_offer_is_logged_with_the_callers_callsid(
    tmp_path: Path,
) -> None:
    """The scheduler's work on a queued caller (here: an offer Twilio could not take) is
    logged with that caller's CallSid, outside any webhook."""
    queues = load_flow(FLOWS / "seguros.yaml").queues
    database = Database(f"sqlite:///{tmp_path / 'agents.sqlite3'}")
    upgrade(database)
    directory.create_agent(database, "ana", "Ana", "client:ana", {"general-queue": 5})

    async def keep(report: Report) -> None:
        return None

    now = 1_790_000_000.0
    engine = QueueEngine(
        store=MemoryQueueStore(),
        directory=AgentDirectory(database, ttl=0),
        queues=lambda: queues,
        report=keep,
        twilio=Unreachable(),
        base_url=BASE_URL,
        clock=lambda: now,
    )
    try:
        await engine.store.set_status("ana", AgentStatus.AVAILABLE, now)
        waiter = Waiter(member=SID, call_sid=SID, caller=CALLER, queued_at=now - 30)
        await engine.store.join("general-queue", waiter, 100)
        with captured() as out:
            assert await engine.match(queues["general-queue"]) == 0
            log.info("after the round")
    finally:
        database.dispose()
    lines = parsed(out.getvalue())
    offer = one(lines, "could not offer")
    assert offer["call_sid"] == SID
    assert offer["event"].endswith(f"cannot reach the call of {MASKED}")
    assert "call_sid" not in one(lines, "after the round")


# --- A real `flowpbx serve` ---------------------------------------------------------------------


class Caller:
    """Signed webhooks to a server, remembering every signature sent."""

    def __init__(self, server: Server, token: str = AUTH_TOKEN) -> None:
        self.server = server
        self.token = token
        self.signatures: list[str] = []

    def post(
        self, path: str, params: Mapping[str, str], token: str | None = None
    ) -> httpx.Response:
        url = self.server.base_url + path
        headers = signed_headers(token or self.token, url, params)
        self.signatures.append(headers[SIGNATURE_HEADER])
        return httpx.post(url, data=dict(params), headers=headers, timeout=10.0)

    def says(self, path: str, params: Mapping[str, str]) -> tuple[str, ...]:
        reply = check_reply(self.post(path, params), public_base=self.server.base_url, https=False)
        return reply.says


@pytest.fixture
def locked_redis() -> Iterator[RedisServer]:
    """A redis-server that wants REDIS_PASSWORD."""
    with redis_server() as server:
        client = redis.Redis(host=server.host, port=server.port)
        client.config_set("requirepass", REDIS_PASSWORD)
        client.close()
        yield server


def test_a_real_server_logs_json_lines_with_callsids_masked_numbers_and_no_secret(
    tmp_path: Path, locked_redis: RedisServer, shared_postgres: PostgresServer
) -> None:
    """`flowpbx serve` on a Redis and a PostgreSQL that want passwords, with recognizable
    secrets: a walk of seguros (incoming, a key, the call's end), a webhook with a bad
    signature, a call whose state is corrupt and one whose state is lost (the fallback is
    logged), a softphone calling the caller's number, a REST request with an unknown API key,
    and a request that is not HTTP (uvicorn's own warning). Every line it wrote is a JSON
    object; every line naming a call carries its CallSid; the caller's number appears only
    masked; no secret, API key or signature appears at all."""
    cwd = tmp_path / "run"
    cwd.mkdir()
    database_url = fresh_postgres_url(shared_postgres)
    env = environment(
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_SECRET=API_SECRET,
        TWILIO_PHONE_NUMBER=CALLED,
        REDIS_HOST=locked_redis.host,
        REDIS_PORT=str(locked_redis.port),
        REDIS_PASSWORD=REDIS_PASSWORD,
        DB_PASSWORD=DB_PASSWORD,
        DATABASE_URL=database_url,
        FLOWPBX_HOURS_OVERRIDE="open",
        FLOWPBX_FLOWS_RELOAD="0",
        LOG_FORMAT="json",
    )
    walk, bad, corrupt, lost, softphone = (call_sid(910 + n) for n in range(5))
    store = redis.Redis(host=locked_redis.host, port=locked_redis.port, password=REDIS_PASSWORD)
    try:
        with serving(workdir(cwd), env) as server:
            twilio = Caller(server)
            assert twilio.says("/api/calls/incoming", inbound_params(walk, CALLER, CALLED))
            pressed = inbound_params(walk, CALLER, CALLED, "in-progress") | {"Digits": "1"}
            assert twilio.says("/api/calls/gather?seq=1", pressed)
            ended = inbound_params(walk, CALLER, CALLED, "completed") | {
                "CallDuration": "73",
                "SequenceNumber": "2",
            }
            assert twilio.post("/api/webhooks/call-status", ended).status_code == 204
            spoofed = inbound_params(bad, CALLER, CALLED)
            refused = twilio.post("/api/calls/incoming", spoofed, token="not-the-auth-token")
            assert refused.status_code == 403
            # Written by another process: this one has not seen the call.
            store.hset(call_key(corrupt), mapping={"rev": "1", "state": '{"call_sid": 7}'})
            pressed = inbound_params(corrupt, CALLER, CALLED, "in-progress") | {"Digits": "1"}
            assert twilio.says("/api/calls/gather?seq=1", pressed)[0] == APOLOGY
            pressed = inbound_params(lost, CALLER, CALLED, "in-progress") | {"Digits": "1"}
            assert twilio.says("/api/calls/gather?seq=1", pressed)[0] == APOLOGY
            twilio.post("/api/calls/incoming", inbound_params(softphone, "client:ana", CALLER))
            api = httpx.get(
                server.base_url + "/api/calls/history",
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=10.0,
            )
            assert api.status_code == 401
            with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as raw:
                raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                raw.recv(1024)
    finally:
        store.close()
    output = server.output()
    lines = parsed(output)
    for line in lines:
        assert {"timestamp", "level", "logger", "event"} <= set(line), line
        assert line["level"] in ("debug", "info", "warning", "error", "critical"), line
        assert dt.datetime.fromisoformat(line["timestamp"]).utcoffset() == dt.timedelta(0)
    assert any(line["logger"] == "uvicorn.error" for line in lines), output
    for sid in (walk, bad, corrupt, lost, softphone):
        about = [line for line in lines if sid in json.dumps(line)]
        assert about, f"nothing logged about {sid}:\n{output}"
        assert all(line.get("call_sid") == sid for line in about), about
    assert one(lines, "corrupt call state")["call_sid"] == corrupt
    assert one(lines, "recovered (state_corrupt)")["call_sid"] == corrupt
    assert one(lines, "recovered (state_lost)")["call_sid"] == lost
    rejected = one(lines, "X-Twilio-Signature")
    assert (rejected["call_sid"], rejected["level"]) == (bad, "warning")
    assert "fpbx_0123abcd" in one(lines, "refused GET /api/calls/history")["event"]
    # One process: every line carries its pid. Start-up says where calls live; the status
    # callback's facts are fields; the SIGTERM that ended the test is logged by flowpbx.
    assert {line["pid"] for line in lines} == {server.process.pid}
    redis_at = f"Redis at {locked_redis.host}:{locked_redis.port}"
    started = one(lines, "call state and queues in")["event"]
    assert started == f"call state and queues in {redis_at} (db 0)"
    ended_line = one(lines, "call-status callback")
    assert ended_line == ended_line | {
        "event": "call-status callback: completed",
        "call_sid": walk,
        "call_status": "completed",
        "sequence_number": "2",
        "call_duration": "73",
    }
    stopping = one(lines, "flowpbx: stopping")
    assert (stopping["logger"], stopping["level"]) == ("flowpbx", "info")
    assert stopping["event"].endswith(f"call(s) in progress, their state kept in {redis_at}")
    assert isinstance(stopping["calls_in_progress"], int)
    assert CALLER not in output
    assert MASKED in output
    secrets = (*SECRETS, shared_postgres.password, API_KEY, *twilio.signatures)
    for secret in secrets:
        assert secret not in output, secret
