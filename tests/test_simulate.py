"""`flowpbx simulate` through its command line: scripted and interactive calls to the Spanish
menu, the clock, bad answers, and the same call events as the same call over signed webhooks."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from click.testing import CliRunner, Result

from conftest import FLOWS
from flowpbx.app import build_service, catalog_from
from flowpbx.cli import main
from flowpbx.engine.call_events import StepRecord, to_dict
from flowpbx.settings import Settings
from flowpbx.store.redis import EVENT_SHARDS, RedisCallStore, stream_key
from flowpbx.web.app import create_app
from servers import RedisServer, redis_server
from twilio_fake import BASE_URL, Reply, TestClient, TwilioDriver, call_sid

SEGUROS = str(FLOWS / "seguros.yaml")
OPEN = "2026-11-24 10:00"
CLOSED = "2026-11-24 21:00"
CHRISTMAS = "2026-12-25 10:00"
MENU = (
    "Para seguros de vida, pulse 1. Para seguros de salud, pulse 2. Para seguros de hogar, "
    "pulse 3. Para seguros de automóvil, pulse 4. Para hablar con un agente, pulse 9."
)


def simulate(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["simulate", *args], input=input)


def test_simulate_scripted_parte_walk_shows_what_is_heard_path_and_events() -> None:
    """4 (automóvil), 1 (parte), the policy number, nobody answers, a message: every step shows
    its nodes, what the caller hears in Lucia's voice, and its call events."""
    result = simulate(SEGUROS, "--at", OPEN, "--digits", "4,1,12345678,no-answer,message")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1] == "call from +34600000000 to +34910000000, Tuesday 2026-11-24 10:00 CET"
    assert "step 1: horario > bienvenida > menu_principal" in lines
    assert (
        "  says (Polly.Lucia, es-ES): Bienvenido a Seguros. Le informamos de que esta llamada "
        "puede ser grabada para mejorar la calidad del servicio."
    ) in lines
    assert f"  says (Polly.Lucia, es-ES): {MENU}" in lines
    assert "keys? (options 1, 2, 3, 4, 9; 5 s; - or Enter = silence) 4" in lines
    assert "  - option_chosen: node=menu_principal, key=4, target=automovil" in lines
    assert "keys? (digits, then #; 5 s; - or Enter = silence) 12345678" in lines
    assert "step 4: parte > llamar_partes" in lines
    assert "  dials: +34912345674 (up to 25 s, recorded)" in lines
    assert (
        "  - input_collected: node=pedir_poliza, variable=numero_poliza, digits=12345678" in lines
    )
    assert "dial ends: answered, busy, no-answer or failed? no-answer" in lines
    assert "  - dial_finished: node=llamar_partes, result=no-answer, duration=0" in lines
    assert "  records a message after a beep (up to 120 s)" in lines
    assert "  says (Polly.Lucia, es-ES): Gracias por llamar a Seguros. Adiós." in lines
    assert lines[-1] == "call ended: the flow said goodbye and hung up (at 'despedida')"


def test_simulate_output_is_the_same_every_run() -> None:
    """The same script and clock print the same text, byte for byte (diffable)."""
    args = (SEGUROS, "--at", OPEN, "--digits", "7,-,2,busy,silence")
    first, second = simulate(*args), simulate(*args)
    assert first.exit_code == second.exit_code == 0
    assert first.output == second.output


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(CLOSED, "step 1: horario > cerrado > buzon_general", id="after-hours"),
        pytest.param(CHRISTMAS, "step 1: horario > cerrado > buzon_general", id="holiday"),
        pytest.param("2026-12-24 13:59", "step 1: horario > bienvenida > menu_principal", id="eve"),
        pytest.param("2026-12-24 14:00", "step 1: horario > cerrado > buzon_general", id="eve-pm"),
    ],
)
def test_simulate_clock_chooses_the_hours_branch(at: str, expected: str) -> None:
    """--at sets the clock in the flow's time zone: closed hours and holidays go to voicemail."""
    result = simulate(SEGUROS, "--at", at, "--digits", "silence", "--no-events")
    assert result.exit_code == 0, result.output
    assert expected in result.output.splitlines()


def test_simulate_closed_hours_voicemail_then_goodbye() -> None:
    """Out of hours the caller hears the hours, leaves a message, and the call ends."""
    result = simulate(SEGUROS, "--at", CLOSED, "--digits", "message")
    assert result.exit_code == 0, result.output
    assert "Nuestro horario de atención es de lunes a viernes" in result.output
    assert "voicemail: message or silence? message" in result.output
    assert "  - recording_made: node=buzon_general" in result.output
    assert result.output.splitlines()[-1] == (
        "call ended: the flow said goodbye and hung up (at 'despedida')"
    )


def test_simulate_at_with_offset_is_taken_as_written() -> None:
    """A clock with an offset is that instant: 09:00 UTC is 10:00 in Madrid, open."""
    result = simulate(SEGUROS, "--at", "2026-11-24T09:00:00+00:00", "--digits", "-", "--no-events")
    assert "step 1: horario > bienvenida > menu_principal" in result.output


def test_simulate_queue_hold_music_then_timeout() -> None:
    """9 queues the caller with hold music; waiting max_wait takes them to the timed_out node
    (espera_agotada), then voicemail. The leave key (0) is offered as an answer."""
    result = simulate(SEGUROS, "--at", OPEN, "--digits", "9,timeout,silence", "--no-events")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    music = "  plays: http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
    assert music in lines
    assert (
        "in the queue: agent, hangup, timeout, 0 (the caller presses the leave key), "
        "1 (asks to be called back); or full, error (refused)? timeout"
    ) in lines
    assert "  (the caller waits 600 s in the queue)" in lines
    assert "step 3: espera_agotada > buzon_general" in lines


@pytest.mark.parametrize(
    ("answer", "then"),
    [
        pytest.param("0", "step 3: buzon_general", id="leave-key"),
        pytest.param("full", "step 3: cola_llena > buzon_general", id="full"),
    ],
)
def test_simulate_queue_leave_key_and_full(answer: str, then: str) -> None:
    """The leave key goes straight to voicemail (the 'left' node); a full queue says so first."""
    result = simulate(SEGUROS, "--at", OPEN, "--digits", f"9,{answer},silence", "--no-events")
    assert result.exit_code == 0, result.output
    assert then in result.output.splitlines()
    assert result.output.splitlines()[-1] == (
        "call ended: the flow said goodbye and hung up (at 'despedida')"
    )


def test_simulate_queue_agent_answers() -> None:
    """An agent taking the call ends the flow, with the queue's exit reason."""
    result = simulate(SEGUROS, "--at", OPEN, "--digits", "9,agent")
    assert result.exit_code == 0, result.output
    assert "  - queue_exited: node=agente, queue=general-queue, reason=agent, waited=0" in (
        result.output.splitlines()
    )
    assert "  (an agent took the call; it ends when they hang up)" in result.output.splitlines()
    assert result.output.splitlines()[-1] == "call ended: an agent took the call (at 'agente')"


def test_simulate_interactive_asks_and_reprompts_on_a_bad_answer() -> None:
    """Without --digits the questions are asked; Enter is silence; a bad answer asks again."""
    result = simulate(SEGUROS, "--at", OPEN, "--no-events", input="\n2\nmaybe\nbusy\nsilence\n")
    assert result.exit_code == 0, result.output
    assert "No hemos recibido ninguna opción." in result.output
    assert "Ha elegido seguros de salud." in result.output
    assert "'maybe' is not an answer here: type answered, busy, no-answer or failed" in (
        result.output
    )
    assert "departamento de salud no puede atenderle" in result.output
    assert result.output.splitlines()[-1] == (
        "call ended: the flow said goodbye and hung up (at 'despedida')"
    )


def test_simulate_script_that_ends_early_says_where_the_call_waits() -> None:
    """A script shorter than the call stops and says where the call waits."""
    result = simulate(SEGUROS, "--at", OPEN, "--digits", "4", "--no-events")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "script ended: the call waits for keys at 'automovil'"
    )


@pytest.mark.parametrize(
    ("script", "message"),
    [
        pytest.param(
            "1,answerd",
            "at step 2: 'answerd' is not an answer here (did you mean 'answered'?): type "
            "answered, busy, no-answer or failed",
            id="dial",
        ),
        pytest.param("abc", "'abc' are not keys", id="keys"),
        pytest.param(
            "9,timeout,mesage",
            "'mesage' is not an answer here (did you mean 'message'?): type message or silence",
            id="voicemail",
        ),
    ],
)
def test_simulate_script_answer_that_does_not_fit_is_a_usage_error(
    script: str, message: str
) -> None:
    """A scripted answer that does not fit the question stops with exit 2, naming the step."""
    result = simulate(SEGUROS, "--at", OPEN, "--digits", script, "--no-events")
    assert result.exit_code == 2
    assert message in result.output


def test_simulate_finds_a_flow_by_name_in_the_flows_folder() -> None:
    """FLOW may be a flow's name, looked up in --flows."""
    result = simulate("seguros", "--flows", str(FLOWS), "--at", OPEN, "--digits", "-")
    assert result.exit_code == 0, result.output
    assert "flow seguros (" in result.output


def test_simulate_unknown_flow_is_a_usage_error(tmp_path: Path) -> None:
    """A name with no flow file says where it looked."""
    result = simulate("ventas", "--flows", str(tmp_path))
    assert result.exit_code == 2
    assert f"no flow 'ventas' in {tmp_path}/" in result.output
    (tmp_path / "seguros.yaml").write_text("name: seguros\n", encoding="utf-8")
    suggested = simulate("seguro", "--flows", str(tmp_path))
    assert suggested.exit_code == 2
    assert "no flow 'seguro' in" in suggested.output
    assert "(did you mean 'seguros'?); the flows there are: seguros" in suggested.output


def test_simulate_invalid_flow_reports_its_problems(tmp_path: Path) -> None:
    """An invalid flow is reported as `flowpbx validate` reports it, exit 1."""
    broken = tmp_path / "roto.yaml"
    broken.write_text(
        (FLOWS / "seguros.yaml").read_text("utf-8").replace("9: agente_aviso", "9: agentes"),
        encoding="utf-8",
    )
    result = simulate(str(broken), "--digits", "-")
    assert result.exit_code == 1
    assert f"{broken}:" in result.output
    assert "'agentes', which does not exist (did you mean 'agente'?)" in result.output


def test_simulate_bad_clock_is_a_usage_error() -> None:
    """--at that is not a date and time says how to write one."""
    result = simulate(SEGUROS, "--at", "tomorrow", "--digits", "-")
    assert result.exit_code == 2
    assert "write it like '2026-12-25 10:00'" in result.output


def test_simulate_json_needs_a_script() -> None:
    """JSON output is for scripted calls."""
    result = simulate(SEGUROS, "--format", "json")
    assert result.exit_code == 2
    assert "--format json plays a scripted call" in result.output


# --- The same call over signed webhooks produces the same events ---------------------------------


@pytest.fixture(scope="module")
def redis_db() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def _parte_walk(call: TwilioDriver) -> None:
    """4, 1, the policy number, no answer, a message."""
    call.press("4")
    call.press("1")
    call.press("12345678#")
    call.dial_result("no-answer")
    call.record("https://simulated.flowpbx.invalid/recordings/RE0001.wav", 15)


def _queue_key(call: TwilioDriver, reply: Reply, typed: str) -> Reply:
    """Keys at a question inside the queue's wait document, posted to its gather's action."""
    gather = reply.one("Gather")
    finished_on = "#" if typed.endswith("#") else ""
    params = call.params(
        Digits=typed.removesuffix("#"), msg="Gather End", FinishedOnKey=finished_on
    )
    return call.check(call.post(gather["action"], params))


def _callback_walk(call: TwilioDriver) -> None:
    """9, then in the queue 1 (callback), 2 (another number), a number, and the queue's leave."""
    joined = call.press("9")
    asked = _queue_key(call, call.wait(0), "1")
    other = _queue_key(call, asked, "2")
    booked = _queue_key(call, other, "612345678#")
    assert booked.names == ("Say", "Leave")
    call.check(call.post(joined.one("Enqueue")["action"], call.params(QueueResult="leave")))


def _webhook_events(
    redis_db: RedisServer,
    when: dt.datetime,
    sid: str,
    walk: Callable[[TwilioDriver], None] = _parte_walk,
    caller: str = "+34600000000",
) -> list[dict[str, Any]]:
    """Walk the call (by default 4, 1, the policy number, no answer, a message) over signed
    webhooks; the call events Redis holds for the call, in order."""
    client = redis.Redis(host=redis_db.host, port=redis_db.port)
    client.flushdb()
    settings = Settings(
        twilio_auth_token="t", flows_dir=FLOWS, redis_host=redis_db.host, redis_port=redis_db.port
    )
    catalog = catalog_from(settings, env_file=None)
    store = RedisCallStore.from_url(redis_db.url, 600)
    app = create_app(settings, build_service(settings, catalog, store, clock=lambda: when))
    with TestClient(app, base_url=BASE_URL) as test_client:
        call = TwilioDriver(test_client, "t")
        call.start(sid, caller, "+34910000000")
        walk(call)
    records: list[StepRecord] = []
    for shard in range(EVENT_SHARDS):
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream_key(shard))  # type: ignore[assignment]
        records.extend(StepRecord.from_json(fields[b"record"]) for _, fields in entries)
    client.close()
    assert {r.call_sid for r in records} == {sid}
    return [to_dict(e) for r in sorted(records, key=lambda r: r.revision) for e in r.events]


def test_simulated_and_webhook_calls_emit_the_same_events(redis_db: RedisServer) -> None:
    """The Spanish menu walked by `flowpbx simulate --digits` and by signed webhooks on a real
    Redis produces the same call events, in the same order."""
    result = simulate(
        SEGUROS, "--at", OPEN, "--digits", "4,1,12345678,no-answer,message", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    simulated = [e for s in json.loads(result.output)["steps"] for e in s["events"]]
    when = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    assert simulated == _webhook_events(redis_db, when, call_sid(7001))
    assert simulated[0]["type"] == "call_started"
    assert simulated[-1] == {"type": "call_ended", "node": "despedida", "how": "hangup"}


def test_simulated_and_webhook_callbacks_emit_the_same_events(redis_db: RedisServer) -> None:
    """A callback asked for in the queue (1, then 2 and another number) emits the same call
    events simulated as over signed webhooks, ending at the enqueue node's callback way."""
    result = simulate(
        SEGUROS,
        "--at",
        OPEN,
        "--from",
        "+34600111222",
        "--digits",
        "9,1,2,612345678#",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    simulated = [e for s in json.loads(result.output)["steps"] for e in s["events"]]
    when = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    sid = call_sid(7002)
    assert simulated == _webhook_events(redis_db, when, sid, _callback_walk, "+34600111222")
    assert {
        "type": "callback_requested",
        "node": "agente",
        "queue": "general-queue",
        "number": "+34612345678",
        "queued_at": int(when.timestamp()),
    } in simulated
    assert simulated[-1] == {"type": "call_ended", "node": "despedida", "how": "hangup"}


def test_simulate_queue_callback_confirmed_reads_back_the_number() -> None:
    """The callback key asks to confirm the caller's own number; 1 books it, the queue lets
    the caller go, and the call takes the enqueue node's callback way (despedida)."""
    result = simulate(
        SEGUROS, "--at", OPEN, "--from", "+34600111222", "--digits", "9,1,1", "--no-events"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "callback: 1 (confirm the number), 2 (another number) or - (nothing)? 1" in lines
    assert (
        "  says (Polly.Lucia, es-ES): Le llamaremos al número terminado en 1 2 2 2. Para "
        "confirmarlo, pulse 1. Para usar otro número, pulse 2."
    ) in lines
    assert (
        "  says (Polly.Lucia, es-ES): Gracias. Le llamaremos al número terminado en 1 2 2 2 "
        "cuando llegue su turno. Ya puede colgar."
    ) in lines
    assert "step 3: despedida" in lines
    assert lines[-1] == "call ended: the flow said goodbye and hung up (at 'despedida')"


@pytest.mark.parametrize(
    ("script", "heard"),
    [
        pytest.param(
            "9,1,-,agent", "(the caller presses nothing: back to the hold music)", id="silence"
        ),
        pytest.param("9,1,7,agent", "No hemos recibido ninguna opción válida.", id="other-key"),
        pytest.param("9,1,2,12#,agent", "Ese número no es válido.", id="short-number"),
        pytest.param("9,5,agent", "(back to the hold music)", id="unknown-key"),
    ],
)
def test_simulate_queue_callback_not_booked_goes_back_to_the_music(script: str, heard: str) -> None:
    """Nothing, another key or a bad number at the callback question sends the caller back to
    the hold music, still in the queue (an agent then takes the call)."""
    result = simulate(SEGUROS, "--at", OPEN, "--digits", script, "--no-events")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert heard in result.output
    music = "  plays: http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
    assert lines.count(music) == 2
    assert lines[-1] == "call ended: an agent took the call (at 'agente')"


def test_simulate_twiml_is_each_turns_own_document() -> None:
    """--twiml shows, under each turn, the TwiML that turn's webhook got: the <Enqueue> when
    the caller joins, the hold music, then <Leave/> when the wait runs out."""
    result = simulate(SEGUROS, "--at", OPEN, "--digits", "9,timeout", "--twiml", "--no-events")
    twiml = [line for line in result.output.splitlines() if line.startswith("  twiml: ")]
    assert [
        ("<Enqueue" in t, "<Play>" in t and "<Enqueue" not in t, "<Leave" in t) for t in twiml[1:4]
    ] == [(True, False, False), (False, True, False), (False, False, True)]
    assert "<Record" in twiml[4]


def test_simulate_json_is_structured_and_carries_twiml_when_asked() -> None:
    """JSON lists what is heard as data, how and where the call ended, and the TwiML with
    --twiml."""
    result = simulate(
        SEGUROS, "--at", CLOSED, "--digits", "silence,extra", "--format", "json", "--twiml"
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    first = document["steps"][0]
    assert first["heard"][0] == {
        "kind": "say",
        "text": "Gracias por llamar a Seguros. Nuestro horario de atención es de lunes a viernes, "
        "de nueve de la mañana a siete de la tarde.",
        "voice": "Polly.Lucia",
        "language": "es-ES",
        "loop": 1,
    }
    assert first["twiml"].startswith("<?xml")
    assert document["ended"] == {"how": "hangup", "node": "despedida"}
    assert document["unused_answers"] == ["extra"]


def test_simulate_holiday_shows_which_rule_decided() -> None:
    """On Christmas Day the hours node's event names the holiday, unlike an ordinary night."""
    christmas = simulate(SEGUROS, "--at", CHRISTMAS, "--digits", "silence")
    assert "  - hours_checked: node=horario, status=holiday, holiday=Navidad, forced=false" in (
        christmas.output.splitlines()
    )
    night = simulate(SEGUROS, "--at", CLOSED, "--digits", "silence")
    assert "  - hours_checked: node=horario, status=closed, forced=false" in (
        night.output.splitlines()
    )


def test_simulate_says_when_a_menu_takes_one_key_and_answers_go_unused() -> None:
    """Typing 12 at a one-key menu says only 1 counts; answers left over are listed."""
    result = simulate(SEGUROS, "--at", OPEN, "--digits", "12,answered,more", "--no-events")
    lines = result.output.splitlines()
    assert "  (a menu takes one key: only 1 counts)" in lines
    assert "  (connected: the call ends when the conversation ends)" in lines
    assert lines[-2] == "call ended: connected to the number dialled (at 'llamar_vida')"
    assert lines[-1] == "script: 1 answer(s) not used: more"


def test_simulate_clock_time_that_does_not_exist_is_refused() -> None:
    """02:30 on the night the clocks go forward in Madrid does not exist: --at says so."""
    result = simulate(SEGUROS, "--at", "2026-03-29 02:30", "--digits", "-")
    assert result.exit_code == 2
    assert "2026-03-29 02:30 does not exist in Europe/Madrid" in result.output


def test_simulate_missing_flow_file_is_a_usage_error(tmp_path: Path) -> None:
    """A flow file that is not there is a usage error (exit 2), named."""
    result = simulate(str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert f"there is no flow file {tmp_path / 'nope.yaml'}" in result.output


def test_simulate_keys_in_a_queue_that_takes_none_are_refused(tmp_path: Path) -> None:
    """Keys while waiting in a queue whose node has no leave or callback key are not sent
    (Twilio gathers none there): the simulation says so and asks again."""
    text = Path(SEGUROS).read_text("utf-8")
    for line in ('    callback_key: "1"\n', '    leave_key: "0"\n'):
        assert line in text
        text = text.replace(line, "", 1)
    flow = tmp_path / "seguros.yaml"
    flow.write_text(text, "utf-8")
    result = simulate(str(flow), "--at", OPEN, "--no-events", input="9\n1\nagent\n")
    assert result.exit_code == 0, result.output
    assert "queue node 'agente' takes no keys (no leave_key, no callback_key)" in result.output
    assert result.output.splitlines()[-1] == "call ended: an agent took the call (at 'agente')"


def test_simulate_callback_with_no_callback_way_ends_the_call_in_words(tmp_path: Path) -> None:
    """A callback booked at an enqueue node with no 'callback' way ends the call, and the
    simulation says so (it used to stop with a KeyError)."""
    text = Path(SEGUROS).read_text("utf-8")
    assert "    callback: despedida\n" in text
    flow = tmp_path / "seguros.yaml"
    flow.write_text(text.replace("    callback: despedida\n", "", 1), "utf-8")
    result = simulate(str(flow), "--at", OPEN, "--digits", "9,1,1", "--no-events")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "call ended: the caller will be called back (at 'agente')"
    )
