"""The interpreter: real flows driven event by event, at chosen instants, with no I/O."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowpbx.engine.actions import (
    Action,
    Dial,
    Enqueue,
    Gather,
    Hangup,
    Leave,
    Pause,
    Play,
    Record,
    Redirect,
    Route,
    Say,
)
from flowpbx.engine.interpreter import (
    MAX_STEPS_PER_CALL,
    CallStarted,
    Context,
    DialEnded,
    Event,
    IllegalEvent,
    KeysPressed,
    QueueLeft,
    RecordingEnded,
    StepError,
    business_hours,
    queue_key,
    queue_wait,
    recover,
    start,
    step,
)
from flowpbx.engine.state import CallState, StateError, Waiting
from flowpbx.language.flow import Flow, HoursNode
from flowpbx.language.loader import check_file, load_flow

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "flows"
MADRID = ZoneInfo("Europe/Madrid")
UTC = dt.UTC

SID = "CA0123456789abcdef0123456789abcdef"
CALLER = "+34600111222"
CALLED = "+34910000000"
VERSION = "v1"
MUSICA_URL = "https://example.com/musica.mp3"
FILLED = {"MUSICA": MUSICA_URL}
"""Values for config names a flow leaves empty (~), as an operator's environment would."""

Actions = tuple[Action, ...]
Result = tuple[CallState, Actions]
Input = str | Event
"""A step of a walk: a string is the keys pressed, anything else is the event itself."""


# --- Flows, contexts and walks -------------------------------------------------------------------


@cache
def flow(name: str) -> Flow:
    """The named flow: the shipped seguros, the every-kind fixture, or an engine fixture."""
    if name == "seguros":
        return load_flow(ROOT / "flows" / "seguros.yaml")
    if name == "every_kind":
        return load_flow(FIXTURES / "valid" / "every_kind.yaml")
    return load_flow(FIXTURES / "engine" / f"{name}.yaml")


def config(name: str) -> dict[str, str]:
    """The flow's config defaults, with the empty ones filled in."""
    return {k: v if v is not None else FILLED[k] for k, v in flow(name).config.items()}


def madrid(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    """An aware UTC instant for a wall-clock time in Madrid."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=MADRID).astimezone(UTC)


OPEN = madrid(2026, 11, 24, 10)  # a Tuesday, 09:00 UTC
SATURDAY = madrid(2026, 11, 28, 12)


def context(
    name: str,
    now: dt.datetime = OPEN,
    *,
    values: Mapping[str, str] | None = None,
    override: str = "",
) -> Context:
    """A context for the named flow at `now`, with its config (or `values`)."""
    return Context(flow(name), now, config(name) if values is None else values, override)


def begin(name: str = "seguros", now: dt.datetime = OPEN, caller: str = CALLER) -> Result:
    """A new call to the named flow."""
    return start(flow(name), CallStarted(SID, caller, CALLED), context(name, now), VERSION)


def event_of(item: Input) -> Event:
    return KeysPressed(item) if isinstance(item, str) else item


def walk(
    name: str, inputs: Sequence[Input], now: dt.datetime = OPEN, caller: str = CALLER
) -> Result:
    """A new call, then one step per input; the last state and actions."""
    state, actions = begin(name, now, caller)
    ctx = context(name, now)
    for item in inputs:
        state, actions = step(state, event_of(item), ctx)
    return state, actions


def lucia(text: str) -> Say:
    return Say(text, "Polly.Lucia", "es-ES")


def conchita(text: str) -> Say:
    return Say(text, "Polly.Conchita", "es-ES")


def enrique(text: str) -> Say:
    return Say(text, "Polly.Enrique", "es-ES")


# --- What seguros says ---------------------------------------------------------------------------

WELCOME = lucia("Bienvenido a Seguros.")
MENU = Gather(
    (
        lucia(
            "Para seguros de vida, pulse 1. Para seguros de salud, pulse 2. "
            "Para seguros de hogar, pulse 3. Para seguros de automóvil, pulse 4. "
            "Para hablar con un agente, pulse 9."
        ),
    ),
    5,
    1,
    "",
)
AUTOMOVIL = Gather(
    (
        lucia(
            "Seguros de automóvil. Para dar un parte, pulse 1. Para pedir un presupuesto, "
            "pulse 2. Para volver al menú principal, pulse asterisco."
        ),
    ),
    5,
    1,
    "",
)
POLIZA = Gather(
    (lucia("Para dar un parte, marque su número de póliza de ocho cifras."),), 5, 8, "#"
)
NO_OPTION = lucia("No hemos recibido ninguna opción.")
INVALID = lucia("Opción no válida.")
NO_NUMBER = lucia("No hemos recibido ningún número.")
SHORT_NUMBER = lucia("El número de póliza tiene ocho cifras.")
AGENT: Actions = (lucia("Le pasamos con un agente. Por favor, espere."), Enqueue("general-queue"))
GOODBYE: Actions = (lucia("Gracias por llamar a Seguros. Adiós."), Hangup())
VOICEMAIL = Record(120, 5, True, "#", False)
CLOSED: Actions = (
    lucia(
        "Gracias por llamar a Seguros. Nuestro horario de atención es de lunes a viernes, "
        "de nueve de la mañana a siete de la tarde."
    ),
    lucia(
        "Si lo desea, deje su nombre, su teléfono y su mensaje después de la señal, "
        "y le llamaremos."
    ),
    VOICEMAIL,
)
GENERAL_VOICEMAIL: Actions = CLOSED[1:]
APOLOGY = lucia("Lo sentimos, se ha producido un error. Le pasamos con un agente.")
PLAIN_APOLOGY = lucia("Lo sentimos, se ha producido un error. Disculpe las molestias.")
HOLD_MUSIC = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
POLICY = "12345678"


@dataclass(frozen=True)
class Department:
    """A seguros department: the keys that reach its dial, and what the caller hears."""

    keys: tuple[str, ...]
    dial: str
    setting: str
    number: str
    confirmation: str
    voicemail: str
    voicemail_prompt: str


DEPARTMENTS = [
    pytest.param(
        Department(
            ("1",),
            "llamar_vida",
            "VIDA_NUMBER",
            "+34912345671",
            "Ha elegido seguros de vida. Le pasamos con el departamento.",
            "buzon_vida",
            "En este momento el departamento de vida no puede atenderle. "
            "Deje su mensaje después de la señal.",
        ),
        id="vida",
    ),
    pytest.param(
        Department(
            ("2",),
            "llamar_salud",
            "SALUD_NUMBER",
            "+34912345672",
            "Ha elegido seguros de salud. Le pasamos con el departamento.",
            "buzon_salud",
            "En este momento el departamento de salud no puede atenderle. "
            "Deje su mensaje después de la señal.",
        ),
        id="salud",
    ),
    pytest.param(
        Department(
            ("3",),
            "llamar_hogar",
            "HOGAR_NUMBER",
            "+34912345673",
            "Ha elegido seguros de hogar. Le pasamos con el departamento.",
            "buzon_hogar",
            "En este momento el departamento de hogar no puede atenderle. "
            "Deje su mensaje después de la señal.",
        ),
        id="hogar",
    ),
    pytest.param(
        Department(
            ("4", "1", POLICY),
            "llamar_partes",
            "PARTES_NUMBER",
            "+34912345674",
            "Gracias. Le pasamos con el departamento de partes.",
            "buzon_partes",
            "En este momento no podemos atenderle. "
            "Deje su mensaje con su número de póliza después de la señal.",
        ),
        id="partes",
    ),
    pytest.param(
        Department(
            ("4", "2"),
            "llamar_presupuestos",
            "PRESUPUESTOS_NUMBER",
            "+34912345675",
            "Ha elegido pedir un presupuesto. Le pasamos con el departamento comercial.",
            "buzon_presupuestos",
            "En este momento no podemos atenderle. "
            "Deje su mensaje después de la señal y le enviaremos su presupuesto.",
        ),
        id="presupuestos",
    ),
]

# --- What every_kind says ------------------------------------------------------------------------

EK_MENU = Gather((Play("https://example.com/menu.mp3"),), 7, 1, "")
EK_POLIZA = Gather((conchita("Marque su póliza y pulse almohadilla."),), 10, 10, "#")
EK_GOODBYE: Actions = (conchita("Adiós."), Hangup())
EK_VOICEMAIL: Actions = (conchita("Deje su mensaje."), Record(60, 3, False, "#*", False))
EK_DIAL = Dial(
    ("+34911111111", "client:agente_ana", "sip:soporte@example.com"), "+34912345678", 20, True
)
EK_HOLD = Gather((Play("https://example.com/espera.mp3"),), 1, 1, "", Route.QUEUE_KEY)


# --- start ---------------------------------------------------------------------------------------


def test_start_seguros_open_welcomes_and_asks_menu() -> None:
    """On a Tuesday at 10:00 in Madrid the caller is welcomed and asked to pick an option."""
    state, actions = begin()
    assert actions == (WELCOME, MENU)
    gather = actions[1]
    assert isinstance(gather, Gather)
    assert (gather.num_digits, gather.finish_on_key, gather.timeout) == (1, "", 5)
    assert gather.route is Route.GATHER
    assert state.node == "menu_principal"
    assert state.waiting is Waiting.KEYS
    assert state.seq == 1
    assert state.attempts == 0
    assert state.steps == 3  # horario, bienvenida, menu_principal
    assert (state.call_sid, state.flow, state.version) == (SID, "seguros", VERSION)
    assert dict(state.variables) == {"caller": CALLER, "called": CALLED}
    assert dict(state.visits) == {}
    assert state.leave_reason == ""


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(SATURDAY, id="saturday"),
        pytest.param(madrid(2026, 11, 24, 8, 59), id="before-opening"),
        pytest.param(madrid(2026, 11, 24, 19, 0), id="at-closing"),
        pytest.param(madrid(2026, 12, 25, 10), id="christmas-holiday"),
    ],
)
def test_start_seguros_closed_offers_general_voicemail(now: dt.datetime) -> None:
    """Outside opening hours (holidays too) the caller hears the hours, then may leave a message."""
    state, actions = begin(now=now)
    assert actions == CLOSED
    assert (state.node, state.waiting, state.seq) == ("buzon_general", Waiting.RECORDING, 1)


@pytest.mark.parametrize(
    ("override", "now", "expected"),
    [
        pytest.param("closed", OPEN, CLOSED, id="closed-during-hours"),
        pytest.param("open", SATURDAY, (WELCOME, MENU), id="open-on-saturday"),
        pytest.param("open", madrid(2026, 12, 25, 10), (WELCOME, MENU), id="open-on-holiday"),
    ],
)
def test_start_hours_override_beats_the_clock(
    override: str, now: dt.datetime, expected: Actions
) -> None:
    """The operator's day/night switch decides every hours node, whatever the time."""
    ctx = context("seguros", now, override=override)
    _, actions = start(flow("seguros"), CallStarted(SID, CALLER, CALLED), ctx, VERSION)
    assert actions == expected


def test_start_every_kind_holiday_goes_to_holiday_node() -> None:
    """every_kind's holiday outcome is its own node (pausa: a pause, then goodbye)."""
    state, actions = begin("every_kind", madrid(2026, 12, 31, 10))
    assert actions == (Pause(2), *EK_GOODBYE)
    assert (state.node, state.waiting, state.steps) == ("adios", Waiting.ENDED, 3)


def test_start_every_kind_closed_says_goodbye() -> None:
    """every_kind outside hours goes straight to its goodbye and ends the call."""
    state, actions = begin("every_kind", SATURDAY)
    assert actions == EK_GOODBYE
    assert (state.node, state.waiting, state.seq) == ("adios", Waiting.ENDED, 1)


# --- seguros: main menu --------------------------------------------------------------------------


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_menu_department_confirms_and_dials_config_number(department: Department) -> None:
    """Each department's keys lead to its confirmation and a recorded 25 s dial to its number."""
    state, actions = walk("seguros", department.keys)
    assert actions == (
        lucia(department.confirmation),
        Dial((department.number,), None, 25, True),
    )
    assert (state.node, state.waiting) == (department.dial, Waiting.DIAL)
    assert state.variables["digits"] == department.keys[-1]
    assert state.attempts == 0


def test_menu_key_4_opens_automovil_submenu() -> None:
    """Key 4 asks the car-insurance submenu, with no welcome before it."""
    state, actions = walk("seguros", ["4"])
    assert actions == (AUTOMOVIL,)
    assert (state.node, state.waiting, state.seq) == ("automovil", Waiting.KEYS, 2)
    assert state.variables["digits"] == "4"


def test_menu_key_9_puts_caller_in_agent_queue() -> None:
    """Key 9 warns the caller and enqueues them in general-queue."""
    state, actions = walk("seguros", ["9"])
    assert actions == AGENT
    assert (state.node, state.waiting, state.leave_reason) == ("agente", Waiting.QUEUE, "")


@pytest.mark.parametrize("key", ["0", "5", "6", "7", "8", "*", "#"])
def test_menu_invalid_key_says_so_and_asks_again(key: str) -> None:
    """A key that is not an option is answered with 'Opción no válida.' and the menu again."""
    state, actions = walk("seguros", [key])
    assert actions == (INVALID, MENU)
    assert (state.node, state.waiting, state.attempts, state.seq) == (
        "menu_principal",
        Waiting.KEYS,
        1,
        2,
    )


def test_menu_no_input_says_so_and_asks_again() -> None:
    """Silence is answered with 'No hemos recibido ninguna opción.' and the menu again."""
    state, actions = walk("seguros", [""])
    assert actions == (NO_OPTION, MENU)
    assert (state.node, state.attempts) == ("menu_principal", 1)


def test_menu_only_first_key_counts() -> None:
    """Of several keys only the first chooses the option."""
    state, actions = walk("seguros", ["92"])
    assert actions == AGENT
    assert state.variables["digits"] == "9"


def test_menu_fourth_silence_goes_to_queue_and_not_before() -> None:
    """With retries 3, the first three silences repeat the menu; the fourth goes to the agent."""
    state, _ = begin()
    ctx = context("seguros")
    for attempt in (1, 2, 3):
        state, actions = step(state, KeysPressed(""), ctx)
        assert actions == (NO_OPTION, MENU), f"silence {attempt}"
        assert (state.node, state.attempts) == ("menu_principal", attempt)
    state, actions = step(state, KeysPressed(""), ctx)
    assert actions == AGENT
    assert (state.node, state.waiting, state.attempts) == ("agente", Waiting.QUEUE, 0)


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(["7", "", "#", ""], id="invalid-first"),
        pytest.param(["", "", "", "0"], id="invalid-last"),
        pytest.param(["5", "6", "7", "8"], id="all-invalid"),
    ],
)
def test_menu_invalid_and_silence_share_retries(keys: list[str]) -> None:
    """Wrong keys and silences count together: the fourth failure of any kind goes to the agent."""
    state, actions = walk("seguros", keys[:3])
    assert (state.node, state.attempts) == ("menu_principal", 3)
    state, actions = step(state, KeysPressed(keys[3]), context("seguros"))
    assert actions == AGENT
    assert state.node == "agente"


def test_menu_valid_key_after_failures_resets_attempts() -> None:
    """A valid key after failures clears the count; the submenu has its own retries (2)."""
    state, actions = walk("seguros", ["", "5", "4"])
    assert actions == (AUTOMOVIL,)
    assert (state.node, state.attempts) == ("automovil", 0)
    state, actions = walk("seguros", ["", "5", "4", "", "0"])
    assert actions == (INVALID, AUTOMOVIL)
    assert state.attempts == 2
    state, actions = step(state, KeysPressed(""), context("seguros"))
    assert actions == AGENT


# --- seguros: automóvil submenu and policy number ------------------------------------------------


def test_automovil_star_goes_back_to_main_menu() -> None:
    """'*' in the submenu asks the main menu again, without the welcome."""
    state, actions = walk("seguros", ["4", "*"])
    assert actions == (MENU,)
    assert (state.node, state.waiting, state.attempts) == ("menu_principal", Waiting.KEYS, 0)


def test_automovil_back_and_forth_counts_each_step() -> None:
    """Going 4, *, 4 reaches the submenu again with seq 4."""
    state, actions = walk("seguros", ["4", "*", "4"])
    assert actions == (AUTOMOVIL,)
    assert (state.node, state.seq) == ("automovil", 4)


@pytest.mark.parametrize(
    ("key", "message"),
    [pytest.param("", NO_OPTION, id="silence"), pytest.param("3", INVALID, id="invalid")],
)
def test_automovil_failure_repeats_submenu(key: str, message: Say) -> None:
    """A failure in the submenu repeats the submenu, not the main menu."""
    state, actions = walk("seguros", ["4", key])
    assert actions == (message, AUTOMOVIL)
    assert (state.node, state.attempts) == ("automovil", 1)


def test_automovil_key_1_asks_policy_number() -> None:
    """'1' asks for an 8-digit policy number ended by '#'."""
    state, actions = walk("seguros", ["4", "1"])
    assert actions == (POLIZA,)
    assert (state.node, state.waiting) == ("pedir_poliza", Waiting.KEYS)


def test_poliza_eight_digits_are_kept_and_dial_partes() -> None:
    """Eight digits are kept as numero_poliza and digits, then the claims line is dialled."""
    state, actions = walk("seguros", ["4", "1", POLICY])
    assert actions == (
        lucia("Gracias. Le pasamos con el departamento de partes."),
        Dial(("+34912345674",), None, 25, True),
    )
    assert state.variables["numero_poliza"] == POLICY
    assert state.variables["digits"] == POLICY
    assert (state.node, state.waiting) == ("llamar_partes", Waiting.DIAL)


@pytest.mark.parametrize(
    ("digits", "message"),
    [
        pytest.param("1234567", SHORT_NUMBER, id="seven-digits"),
        pytest.param("1", SHORT_NUMBER, id="one-digit"),
        pytest.param("", NO_NUMBER, id="nothing"),
    ],
)
def test_poliza_short_or_missing_number_asks_again(digits: str, message: Say) -> None:
    """Too few digits or none are answered with the matching message and the question again."""
    state, actions = walk("seguros", ["4", "1", digits])
    assert actions == (message, POLIZA)
    assert (state.node, state.attempts) == ("pedir_poliza", 1)
    assert "numero_poliza" not in state.variables


def test_poliza_retries_exhausted_goes_to_parte_without_number() -> None:
    """After retries (2) the third failure still passes the call to the claims line."""
    state, actions = walk("seguros", ["4", "1", "123", ""])
    assert actions == (NO_NUMBER, POLIZA)
    assert state.attempts == 2
    state, actions = step(state, KeysPressed("1"), context("seguros"))
    assert actions == (
        lucia("Gracias. Le pasamos con el departamento de partes."),
        Dial(("+34912345674",), None, 25, True),
    )
    assert state.node == "llamar_partes"
    assert "numero_poliza" not in state.variables


def test_poliza_valid_after_failure_is_accepted() -> None:
    """A good number after a short one is accepted and resets the attempts."""
    state, _ = walk("seguros", ["4", "1", "123", POLICY])
    assert (state.node, state.attempts) == ("llamar_partes", 0)
    assert state.variables["numero_poliza"] == POLICY


# --- seguros: dial outcomes ----------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "answered"])
@pytest.mark.parametrize("department", DEPARTMENTS)
def test_dial_answered_hangs_up(department: Department, status: str) -> None:
    """An answered call ends the flow with a hangup: seguros has no 'answered' node."""
    state, actions = walk("seguros", [*department.keys, DialEnded(status)])
    assert actions == (Hangup(),)
    assert (state.node, state.waiting) == (department.dial, Waiting.ENDED)
    assert state.variables["dial_status"] == status


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed", "canceled"])
@pytest.mark.parametrize("department", DEPARTMENTS)
def test_dial_unanswered_goes_to_department_voicemail(department: Department, status: str) -> None:
    """Unanswered, busy, failed or canceled dials go to the department's voicemail."""
    state, actions = walk("seguros", [*department.keys, DialEnded(status)])
    assert actions == (lucia(department.voicemail_prompt), VOICEMAIL)
    assert (state.node, state.waiting) == (department.voicemail, Waiting.RECORDING)
    assert state.variables["dial_status"] == status


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1", id="url"),
        pytest.param("", id="no-url"),
    ],
)
@pytest.mark.parametrize("department", DEPARTMENTS)
def test_record_ended_says_goodbye(department: Department, url: str) -> None:
    """After a voicemail, recorded or not, the caller hears goodbye and the call ends."""
    inputs: list[Input] = [
        *department.keys,
        DialEnded("no-answer"),
        RecordingEnded(url, 12 if url else 0),
    ]
    state, actions = walk("seguros", inputs)
    assert actions == GOODBYE
    assert (state.node, state.waiting) == ("despedida", Waiting.ENDED)
    assert state.variables["recording_url"] == url


@pytest.mark.parametrize(
    ("status", "expected", "node", "waiting"),
    [
        pytest.param("completed", EK_GOODBYE, "adios", Waiting.ENDED, id="completed"),
        pytest.param("answered", EK_GOODBYE, "adios", Waiting.ENDED, id="answered"),
        pytest.param("busy", (Enqueue("soporte"),), "cola", Waiting.QUEUE, id="busy"),
        pytest.param("no-answer", EK_VOICEMAIL, "buzon", Waiting.RECORDING, id="no-answer"),
        pytest.param("failed", EK_VOICEMAIL, "buzon", Waiting.RECORDING, id="failed"),
        pytest.param("canceled", EK_VOICEMAIL, "buzon", Waiting.RECORDING, id="canceled"),
    ],
)
def test_dial_every_kind_outcomes(
    status: str, expected: Actions, node: str, waiting: Waiting
) -> None:
    """every_kind's dial has its own answered and busy nodes; failed defaults to no_answer."""
    state, actions = walk("every_kind", ["2"])
    assert actions == (EK_DIAL,)
    state, actions = step(state, DialEnded(status), context("every_kind"))
    assert actions == expected
    assert (state.node, state.waiting) == (node, waiting)


# --- Queues --------------------------------------------------------------------------------------


def test_enqueue_full_goes_to_full_node() -> None:
    """A full queue sends the caller to its 'full' node (the general voicemail)."""
    state, actions = walk("seguros", ["9", QueueLeft("queue-full")])
    assert actions == GENERAL_VOICEMAIL
    assert (state.node, state.waiting) == ("buzon_general", Waiting.RECORDING)


@pytest.mark.parametrize("queue_time", [0, 1, 300, 599])
def test_queue_wait_before_max_wait_plays_hold_music(queue_time: int) -> None:
    """Before max_wait (600 s) the caller hears the config's hold music; the state is unchanged."""
    state, _ = walk("seguros", ["9"])
    new_state, actions = queue_wait(state, queue_time, context("seguros"))
    assert actions == (Play(HOLD_MUSIC),)
    assert new_state == state


@pytest.mark.parametrize("queue_time", [600, 601, 86400])
def test_queue_wait_at_max_wait_leaves_as_timed_out(queue_time: int) -> None:
    """At max_wait the caller leaves the queue, marked timed_out, and then goes to voicemail."""
    state, _ = walk("seguros", ["9"])
    ctx = context("seguros")
    waited, actions = queue_wait(state, queue_time, ctx)
    assert actions == (Leave(),)
    assert waited == state.evolve(leave_reason="timed_out")
    assert waited.seq == state.seq
    state, actions = step(waited, QueueLeft("leave"), ctx)
    assert actions == GENERAL_VOICEMAIL
    assert (state.node, state.waiting, state.seq) == ("buzon_general", Waiting.RECORDING, 3)


def test_queue_wait_outside_a_queue_leaves() -> None:
    """A queue wait request for a call not in a queue only says Leave."""
    state, _ = begin()
    new_state, actions = queue_wait(state, 0, context("seguros"))
    assert (new_state, actions) == (state, (Leave(),))


def test_queue_leave_without_reason_is_a_step_error() -> None:
    """'leave' when the flow never asked to leave (no leave key in seguros) cannot be placed."""
    state, _ = walk("seguros", ["9"])
    with pytest.raises(StepError, match="general-queue"):
        step(state, QueueLeft("leave"), context("seguros"))


def test_queue_key_leave_key_gathers_during_hold() -> None:
    """With a leave key the hold music plays inside a one-key gather answered on QUEUE_KEY."""
    state, actions = walk("every_kind", ["#"])
    assert actions == (Enqueue("soporte"),)
    new_state, actions = queue_wait(state, 10, context("every_kind"))
    assert actions == (EK_HOLD,)
    assert new_state == state


def test_queue_key_leave_key_leaves_and_goes_to_left() -> None:
    """The leave key marks the caller 'left'; the following leave goes to the 'left' node."""
    state, _ = walk("every_kind", ["#"])
    ctx = context("every_kind")
    left, actions = queue_key(state, "*", ctx)
    assert actions == (Leave(),)
    assert left == state.evolve(leave_reason="left")
    state, actions = step(left, QueueLeft("leave"), ctx)
    assert actions == EK_VOICEMAIL
    assert (state.node, state.waiting) == ("buzon", Waiting.RECORDING)


@pytest.mark.parametrize("digits", ["1", "#", "0", "", "9*"])
def test_queue_key_other_key_returns_to_hold(digits: str) -> None:
    """Any other key sends the caller back to the hold music without changing the state."""
    state, _ = walk("every_kind", ["#"])
    new_state, actions = queue_key(state, digits, context("every_kind"))
    assert actions == (Redirect(Route.QUEUE_WAIT),)
    assert new_state == state


def test_queue_key_outside_a_queue_returns_to_hold() -> None:
    """A queue key for a call not in a queue changes nothing."""
    state, _ = begin("every_kind")
    new_state, actions = queue_key(state, "*", context("every_kind"))
    assert (new_state, actions) == (state, (Redirect(Route.QUEUE_WAIT),))


def test_queue_every_kind_timed_out_goes_to_voicemail() -> None:
    """every_kind's queue times out after 120 s and goes to its timed_out node."""
    state, _ = walk("every_kind", ["#"])
    ctx = context("every_kind")
    state, actions = queue_wait(state, 120, ctx)
    assert (actions, state.leave_reason) == ((Leave(),), "timed_out")
    state, actions = step(state, QueueLeft("leave"), ctx)
    assert actions == EK_VOICEMAIL


def test_enqueue_clears_an_old_leave_reason() -> None:
    """Entering a queue forgets why the caller left an earlier one."""
    state, _ = begin()
    state, _ = step(state.evolve(leave_reason="left"), KeysPressed("9"), context("seguros"))
    assert (state.node, state.leave_reason) == ("agente", "")


@pytest.mark.parametrize(
    ("queue_time", "pause"),
    [
        pytest.param(0, 20, id="start"),
        pytest.param(10, 20, id="long-left"),
        pytest.param(15, 15, id="fifteen-left"),
        pytest.param(29, 1, id="one-left"),
    ],
)
def test_queue_wait_without_music_pauses_until_max_wait(queue_time: int, pause: int) -> None:
    """Without hold music the caller waits in pauses of at most 20 s, none past max_wait."""
    state, _ = walk("plain_queue", ["1"])
    new_state, actions = queue_wait(state, queue_time, context("plain_queue"))
    assert (new_state, actions) == (state, (Pause(pause),))


@pytest.mark.parametrize("queue_time", [0, 30, 100_000])
def test_queue_wait_without_max_wait_never_times_out(queue_time: int) -> None:
    """Without max_wait the caller waits in 20 s pauses, inside a gather for the leave key."""
    state, _ = walk("plain_queue", ["2"])
    new_state, actions = queue_wait(state, queue_time, context("plain_queue"))
    assert actions == (Gather((Pause(20),), 1, 1, "", Route.QUEUE_KEY),)
    assert new_state == state


def test_queue_bridged_hangs_up() -> None:
    """After talking with an agent the call ends with a hangup."""
    state, actions = walk("seguros", ["9", QueueLeft("bridged")])
    assert actions == (Hangup(),)
    assert (state.node, state.waiting, state.seq) == ("agente", Waiting.ENDED, 3)


@pytest.mark.parametrize(
    "result", ["hangup", "bridging-in-process", "redirected", "redirected-from-bridged"]
)
def test_queue_hangup_or_redirect_ends_silently(result: str) -> None:
    """A caller who hung up or was moved elsewhere ends the flow with no actions."""
    state, actions = walk("seguros", ["9", QueueLeft(result)])
    assert actions == ()
    assert state.waiting is Waiting.ENDED


@pytest.mark.parametrize("result", ["system-error", "error", "", "bridgd"])
def test_queue_unknown_result_is_a_step_error(result: str) -> None:
    """A queue result the flow has no outcome for raises StepError naming the queue."""
    state, _ = walk("seguros", ["9"])
    with pytest.raises(StepError, match=r"queue 'general-queue' answered"):
        step(state, QueueLeft(result), context("seguros"))


# --- Business hours ------------------------------------------------------------------------------


def hours(name: str) -> HoursNode:
    node = flow(name).nodes["horario"]
    assert isinstance(node, HoursNode)
    return node


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    """An aware UTC instant."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(madrid(2026, 11, 23, 9, 0), "open", id="monday-09:00"),
        pytest.param(madrid(2026, 11, 24, 10, 0), "open", id="tuesday-10:00"),
        pytest.param(madrid(2026, 11, 27, 18, 59), "open", id="friday-18:59"),
        pytest.param(madrid(2026, 11, 23, 8, 59), "closed", id="monday-08:59"),
        pytest.param(madrid(2026, 11, 23, 19, 0), "closed", id="monday-19:00"),
        pytest.param(madrid(2026, 11, 25, 0, 0), "closed", id="wednesday-midnight"),
        pytest.param(madrid(2026, 11, 28, 12, 0), "closed", id="saturday-noon"),
        pytest.param(madrid(2026, 11, 29, 10, 0), "closed", id="sunday-10:00"),
        # Spring forward, Sunday 2026-03-29: CET (UTC+1) before, CEST (UTC+2) after.
        pytest.param(at(2026, 3, 27, 7, 30), "closed", id="cet-friday-07:30utc-is-08:30"),
        pytest.param(at(2026, 3, 27, 8, 0), "open", id="cet-friday-08:00utc-is-09:00"),
        pytest.param(at(2026, 3, 27, 17, 59), "open", id="cet-friday-17:59utc-is-18:59"),
        pytest.param(at(2026, 3, 29, 1, 30), "closed", id="change-sunday-03:30"),
        pytest.param(at(2026, 3, 30, 6, 59), "closed", id="cest-monday-06:59utc-is-08:59"),
        pytest.param(at(2026, 3, 30, 7, 0), "open", id="cest-monday-07:00utc-is-09:00"),
        pytest.param(at(2026, 3, 30, 7, 30), "open", id="cest-monday-07:30utc-is-09:30"),
        pytest.param(at(2026, 3, 30, 17, 0), "closed", id="cest-monday-17:00utc-is-19:00"),
        # Fall back, Sunday 2026-10-25: CEST before, CET after.
        pytest.param(at(2026, 10, 23, 7, 30), "open", id="cest-friday-07:30utc-is-09:30"),
        pytest.param(at(2026, 10, 23, 17, 0), "closed", id="cest-friday-17:00utc-is-19:00"),
        pytest.param(at(2026, 10, 26, 7, 30), "closed", id="cet-monday-07:30utc-is-08:30"),
        pytest.param(at(2026, 10, 26, 8, 30), "open", id="cet-monday-08:30utc-is-09:30"),
        pytest.param(at(2026, 10, 26, 17, 59), "open", id="cet-monday-17:59utc-is-18:59"),
        pytest.param(at(2026, 10, 26, 18, 0), "closed", id="cet-monday-18:00utc-is-19:00"),
        # Holidays.
        pytest.param(madrid(2026, 12, 25, 10), "holiday", id="christmas-2026-friday"),
        pytest.param(madrid(2027, 12, 25, 10), "holiday", id="christmas-2027-saturday"),
        pytest.param(madrid(2026, 1, 6, 12), "holiday", id="reyes-2026-tuesday"),
        pytest.param(madrid(2027, 1, 1, 10), "holiday", id="new-year-2027-friday"),
        pytest.param(madrid(2026, 12, 8, 9), "holiday", id="inmaculada-at-opening"),
        pytest.param(madrid(2026, 12, 24, 8, 59), "holiday", id="nochebuena-08:59"),
        pytest.param(madrid(2026, 12, 24, 9, 0), "open", id="nochebuena-09:00"),
        pytest.param(madrid(2026, 12, 24, 13, 59), "open", id="nochebuena-13:59"),
        pytest.param(madrid(2026, 12, 24, 14, 0), "holiday", id="nochebuena-14:00"),
        pytest.param(madrid(2027, 12, 24, 13, 59), "open", id="nochebuena-2027-13:59"),
        pytest.param(madrid(2027, 12, 24, 14, 0), "holiday", id="nochebuena-2027-14:00"),
        pytest.param(at(2026, 12, 24, 23, 30), "holiday", id="utc-24th-is-madrid-25th"),
        pytest.param(at(2026, 12, 7, 23, 30), "holiday", id="utc-7th-is-madrid-8th"),
        pytest.param(at(2026, 12, 9, 8, 30), "open", id="day-after-inmaculada"),
    ],
)
def test_business_hours_seguros(now: dt.datetime, expected: str) -> None:
    """Seguros opens Monday to Friday 09:00-19:00 Madrid time, with summer time and holidays."""
    assert business_hours(hours("seguros"), now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(madrid(2026, 11, 23, 13, 59), "open", id="monday-13:59"),
        pytest.param(madrid(2026, 11, 23, 14, 0), "closed", id="monday-14:00-lunch"),
        pytest.param(madrid(2026, 11, 23, 15, 59), "closed", id="monday-15:59-lunch"),
        pytest.param(madrid(2026, 11, 23, 16, 0), "open", id="monday-16:00"),
        pytest.param(madrid(2026, 11, 27, 14, 59), "open", id="friday-14:59"),
        pytest.param(madrid(2026, 11, 27, 15, 0), "closed", id="friday-15:00"),
        pytest.param(madrid(2026, 12, 31, 10), "holiday", id="2026-12-31-only-that-year"),
        pytest.param(madrid(2027, 12, 31, 10), "open", id="2027-12-31-normal-friday"),
        pytest.param(madrid(2026, 12, 24, 12, 59), "open", id="nochebuena-12:59"),
        pytest.param(madrid(2026, 12, 24, 13, 0), "holiday", id="nochebuena-13:00"),
        pytest.param(madrid(2026, 12, 24, 16, 30), "holiday", id="nochebuena-afternoon"),
    ],
)
def test_business_hours_every_kind(now: dt.datetime, expected: str) -> None:
    """every_kind's split hours, its year-specific 2026-12-31 and its short Nochebuena."""
    assert business_hours(hours("every_kind"), now) == expected


def test_business_hours_holiday_defaults_to_closed_node() -> None:
    """Seguros names no holiday node, so holidays use its closed node; every_kind has its own."""
    assert (hours("seguros").holiday, hours("seguros").closed) == ("cerrado", "cerrado")
    assert hours("every_kind").holiday == "pausa"


def test_business_hours_every_year_holiday_hours_apply_other_years() -> None:
    """An every-year holiday with hours applies in years with no closure of their own."""
    assert business_hours(hours("holiday_order"), madrid(2027, 12, 24, 10)) == "open"
    assert business_hours(hours("holiday_order"), madrid(2027, 12, 24, 15)) == "holiday"


def test_business_hours_year_specific_holiday_beats_every_year_one() -> None:
    """A closure for one year's date wins over the every-year hours of that date."""
    assert business_hours(hours("holiday_order"), madrid(2026, 12, 24, 10)) == "holiday"


# --- goto, set, switch, variables ----------------------------------------------------------------


def test_goto_limit_counts_jumps_then_goes_to_exhausted() -> None:
    """every_kind's 'volver' jumps back to the menu twice; the third time it says goodbye."""
    state, _ = begin("every_kind")
    ctx = context("every_kind")
    for visit in (1, 2):
        state, actions = step(state, KeysPressed("0"), ctx)
        assert actions == (EK_MENU,)
        assert state.node == "menu"
        assert dict(state.visits) == {"volver": visit}
    state, actions = step(state, KeysPressed("0"), ctx)
    assert actions == EK_GOODBYE
    assert (state.node, state.waiting) == ("adios", Waiting.ENDED)
    assert dict(state.visits) == {"volver": 3}


def test_goto_visits_are_per_call() -> None:
    """A new call starts with no visits, whatever an earlier call did."""
    walk("every_kind", ["0", "0"])
    state, _ = walk("every_kind", ["0"])
    assert dict(state.visits) == {"volver": 1}


def test_goto_loop_within_one_step_repeats_then_exhausts() -> None:
    """A bounded loop without waiting runs limit + 1 times, then takes 'exhausted'."""
    state, actions = begin("short_loop")
    assert actions == (
        *[Say("Hola.", "Polly.Lucia", "es-ES")] * 4,
        Say("Adiós.", "Polly.Lucia", "es-ES"),
        Hangup(),
    )
    assert dict(state.visits) == {"otra_vez": 4}
    assert state.steps == 9


def test_set_renders_variables() -> None:
    """every_kind's set copies the caller and turns numbers and booleans into text."""
    state, _ = begin("every_kind")
    assert dict(state.variables) == {
        "caller": CALLER,
        "called": CALLED,
        "origen": CALLER,
        "intentos": "3",
        "vip": "true",
    }


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        pytest.param("+34600111222", (EK_MENU,), id="starts-with-mobile"),
        pytest.param("+346", (EK_MENU,), id="starts-with-exactly-prefix"),
        pytest.param("+34910000000", (Play(MUSICA_URL, 2), EK_MENU), id="equals"),
        pytest.param("+34910000001", (Play(MUSICA_URL, 2), EK_MENU), id="one-of-text"),
        pytest.param("34910000002", (Play(MUSICA_URL, 2), EK_MENU), id="one-of-number"),
        pytest.param("+34910000002", (EK_MENU,), id="default-near-miss"),
        pytest.param("+349100000001", (EK_MENU,), id="equals-is-not-prefix"),
        pytest.param("anonymous", (EK_MENU,), id="default-anonymous"),
        pytest.param("", (EK_MENU,), id="default-empty"),
    ],
)
def test_switch_matches_cases_in_order(caller: str, expected: Actions) -> None:
    """The switch on origen: starts_with, equals and one_of cases, else the default."""
    state, actions = begin("every_kind", caller=caller)
    assert actions == expected
    assert (state.node, state.waiting) == ("menu", Waiting.KEYS)


def test_input_digits_saved_and_spelled() -> None:
    """Typed digits go into the input's variable and 'digits', and ':digits' spells them."""
    state, actions = walk("every_kind", ["1"])
    assert actions == (EK_POLIZA,)
    state, actions = step(state, KeysPressed("123456"), context("every_kind"))
    assert actions == (
        conchita(f"Ha marcado 1 2 3 4 5 6; llamamos desde {CALLED}. {{no es una variable}}"),
        EK_DIAL,
    )
    assert state.variables["numero"] == "123456"
    assert state.variables["digits"] == "123456"
    assert (state.node, state.waiting) == ("soporte", Waiting.DIAL)


@pytest.mark.parametrize("digits", ["", "12345"])
def test_input_retry_without_message_only_asks_again(digits: str) -> None:
    """An input with no no_input/invalid message just asks again."""
    state, actions = walk("every_kind", ["1", digits])
    assert actions == (EK_POLIZA,)
    assert (state.node, state.attempts) == ("poliza", 1)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        pytest.param("", enrique("No le oigo."), id="silence"),
        pytest.param("9", enrique("Esa tecla no vale."), id="invalid"),
    ],
)
def test_menu_messages_use_the_menu_voice(key: str, message: Say) -> None:
    """every_kind's menu speaks its retry messages in its own voice (Polly.Enrique)."""
    state, actions = walk("every_kind", [key])
    assert actions == (message, EK_MENU)
    state, actions = step(state, KeysPressed(key), context("every_kind"))
    assert actions == EK_GOODBYE  # retries: 1


# --- Illegal events ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "event", "node", "waiting"),
    [
        pytest.param(["1"], KeysPressed("1"), "llamar_vida", "dial", id="keys-at-dial"),
        pytest.param([], DialEnded("completed"), "menu_principal", "keys", id="dial-at-menu"),
        pytest.param([], QueueLeft("bridged"), "menu_principal", "keys", id="queue-at-menu"),
        pytest.param([], RecordingEnded("", 0), "menu_principal", "keys", id="record-at-menu"),
        pytest.param(["9"], KeysPressed("1"), "agente", "queue", id="keys-at-queue"),
        pytest.param(["9"], DialEnded("busy"), "agente", "queue", id="dial-at-queue"),
        pytest.param(
            ["1", DialEnded("busy")], QueueLeft("leave"), "buzon_vida", "recording", id="q-at-rec"
        ),
        pytest.param(["1"], RecordingEnded("", 0), "llamar_vida", "dial", id="record-at-dial"),
    ],
)
def test_step_wrong_event_is_illegal(
    inputs: list[Input], event: Event, node: str, waiting: str
) -> None:
    """An event the waiting node does not expect raises IllegalEvent naming event, node and wait."""
    state, _ = walk("seguros", inputs)
    with pytest.raises(IllegalEvent) as caught:
        step(state, event, context("seguros"))
    assert str(caught.value) == (
        f"{type(event).__name__} cannot happen to call {SID} at node '{node}' waiting for {waiting}"
    )
    assert caught.value.event is event
    assert caught.value.state is state


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(KeysPressed("1"), id="keys"),
        pytest.param(DialEnded("completed"), id="dial"),
        pytest.param(QueueLeft("bridged"), id="queue"),
        pytest.param(RecordingEnded("", 0), id="recording"),
        pytest.param(CallStarted(SID, CALLER, CALLED), id="call-started"),
    ],
)
def test_step_any_event_after_end_is_illegal(event: Event) -> None:
    """Once the call has ended no event is accepted."""
    state, _ = walk("seguros", ["1", DialEnded("completed")])
    assert state.waiting is Waiting.ENDED
    with pytest.raises(IllegalEvent, match=r"at node 'llamar_vida' waiting for ended$"):
        step(state, event, context("seguros"))


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param([], id="at-menu"),
        pytest.param(["1"], id="at-dial"),
        pytest.param(["9"], id="at-queue"),
        pytest.param(["1", DialEnded("busy")], id="at-record"),
    ],
)
def test_step_call_started_is_illegal(inputs: list[Input]) -> None:
    """CallStarted only starts a call: step refuses it wherever the call waits."""
    state, _ = walk("seguros", inputs)
    with pytest.raises(IllegalEvent, match=r"^CallStarted cannot happen to call "):
        step(state, CallStarted(SID, CALLER, CALLED), context("seguros"))


def test_step_unknown_node_is_a_step_error() -> None:
    """A stored node the flow no longer has raises StepError naming node and flow."""
    state, _ = begin()
    with pytest.raises(StepError, match=r"node 'gone' is not in flow 'seguros'"):
        step(state.evolve(node="gone"), KeysPressed("1"), context("seguros"))


# --- recover -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param([], id="at-menu"),
        pytest.param(["1"], id="at-dial"),
        pytest.param(["4", "1"], id="at-input"),
        pytest.param(["1", DialEnded("busy")], id="at-record"),
    ],
)
def test_recover_apologises_and_goes_to_agent(inputs: list[Input]) -> None:
    """After a failure the caller hears the flow's apology, then goes to on_error.next (agente)."""
    before, _ = walk("seguros", inputs)
    state, actions = recover(before.evolve(attempts=2), context("seguros"))
    assert actions == (APOLOGY, Enqueue("general-queue"))
    assert (state.node, state.waiting, state.attempts) == ("agente", Waiting.QUEUE, 0)
    assert state.seq == before.seq + 1


def test_recover_at_fallback_node_hangs_up() -> None:
    """A failure at the fallback node itself gets a plain apology and a hangup, no promise."""
    before, _ = walk("seguros", ["9"])
    state, actions = recover(before, context("seguros"))
    assert actions == (PLAIN_APOLOGY, Hangup())
    assert (state.node, state.waiting, state.seq) == ("agente", Waiting.ENDED, before.seq + 1)


def test_recover_after_unknown_queue_result() -> None:
    """The queue's StepError then recover: apology and hangup, since the queue is the fallback."""
    before, _ = walk("seguros", ["9"])
    ctx = context("seguros")
    with pytest.raises(StepError):
        step(before, QueueLeft("system-error"), ctx)
    _, actions = recover(before, ctx)
    assert actions == (PLAIN_APOLOGY, Hangup())


def test_recover_when_fallback_fails_too_hangs_up() -> None:
    """If going to the fallback fails (here: out of steps) the apology and a hangup remain."""
    before, _ = begin()
    state, actions = recover(before.evolve(steps=MAX_STEPS_PER_CALL), context("seguros"))
    assert actions == (PLAIN_APOLOGY, Hangup())
    assert state.waiting is Waiting.ENDED


def test_recover_every_kind_goes_to_goodbye_node() -> None:
    """every_kind's on_error.next is its hangup node: its own apology, then its goodbye."""
    before, _ = begin("every_kind")
    state, actions = recover(before, context("every_kind"))
    assert actions == (conchita("Perdone, ha habido un error."), *EK_GOODBYE)
    assert (state.node, state.waiting) == ("adios", Waiting.ENDED)


def test_recover_without_fallback_node_hangs_up() -> None:
    """A flow with no on_error: the default Spanish apology, then a hangup."""
    before, _ = begin("no_fallback")
    state, actions = recover(before, context("no_fallback"))
    assert actions == (
        lucia("Lo sentimos, se ha producido un error. Disculpe las molestias."),
        Hangup(),
    )
    assert (state.node, state.waiting, state.seq) == ("menu", Waiting.ENDED, 2)


# --- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_config_missing_number_is_a_step_error(department: Department) -> None:
    """A dial whose config value is missing raises StepError naming the value."""
    values = {k: v for k, v in config("seguros").items() if k != department.setting}
    ctx = context("seguros", values=values)
    state, _ = start(flow("seguros"), CallStarted(SID, CALLER, CALLED), ctx, VERSION)
    for keys in department.keys[:-1]:
        state, _ = step(state, KeysPressed(keys), ctx)
    with pytest.raises(StepError, match=department.setting):
        step(state, KeysPressed(department.keys[-1]), ctx)


def test_config_missing_number_then_recover_reaches_agent() -> None:
    """The failed step's stored state recovers to the agent queue."""
    values = {k: v for k, v in config("seguros").items() if k != "VIDA_NUMBER"}
    ctx = context("seguros", values=values)
    state, _ = start(flow("seguros"), CallStarted(SID, CALLER, CALLED), ctx, VERSION)
    with pytest.raises(StepError, match="VIDA_NUMBER"):
        step(state, KeysPressed("1"), ctx)
    state, actions = recover(state, ctx)
    assert actions == (APOLOGY, Enqueue("general-queue"))


def test_config_missing_hold_music_is_a_step_error() -> None:
    """Hold music from a missing config value raises StepError naming it."""
    state, _ = walk("seguros", ["9"])
    values = {k: v for k, v in config("seguros").items() if k != "HOLD_MUSIC_URL"}
    with pytest.raises(StepError, match="HOLD_MUSIC_URL"):
        queue_wait(state, 0, context("seguros", values=values))


def test_config_empty_value_left_unfilled_is_a_step_error() -> None:
    """every_kind's MUSICA (~ in the flow) must come from outside; without it the play fails."""
    values = {k: v for k, v in flow("every_kind").config.items() if v is not None}
    ctx = context("every_kind", values=values)
    with pytest.raises(StepError, match="MUSICA"):
        start(flow("every_kind"), CallStarted(SID, "+34910000000", CALLED), ctx, VERSION)


def test_config_values_come_from_context_not_flow() -> None:
    """The context's config (the operator's environment) replaces the flow's default."""
    values = {**config("seguros"), "VIDA_NUMBER": "+34999999999"}
    ctx = context("seguros", values=values)
    state, _ = start(flow("seguros"), CallStarted(SID, CALLER, CALLED), ctx, VERSION)
    _, actions = step(state, KeysPressed("1"), ctx)
    assert actions[-1] == Dial(("+34999999999",), None, 25, True)


def test_config_reference_inside_url_is_checked_before_calls() -> None:
    """A ${NAME} inside a longer URL is checked by the validator, so calls cannot trip on it."""
    report = check_file(FIXTURES / "invalid" / "config_in_longer_url.yaml")
    assert [p.code for p in report.errors] == ["unknown-config"]


# --- seq and steps -------------------------------------------------------------------------------


def test_seq_and_steps_advance_through_a_call() -> None:
    """seq moves on by exactly one per step; steps counts every node entered."""
    state, _ = begin()
    ctx = context("seguros")
    assert (state.seq, state.steps) == (1, 3)
    walk_steps: list[tuple[Input, int]] = [
        ("4", 4),  # automovil
        ("1", 5),  # pedir_poliza
        (POLICY, 7),  # parte, llamar_partes
        (DialEnded("no-answer"), 8),  # buzon_partes
        (RecordingEnded("", 0), 9),  # despedida
    ]
    for seq, (item, steps) in enumerate(walk_steps, start=2):
        state, _ = step(state, event_of(item), ctx)
        assert (state.seq, state.steps) == (seq, steps)
    assert state.waiting is Waiting.ENDED


@pytest.mark.parametrize("seq", [1, 7, 41])
def test_seq_continues_from_stored_state(seq: int) -> None:
    """step adds one to whatever seq the stored state carries."""
    state, _ = begin()
    new_state, _ = step(state.evolve(seq=seq), KeysPressed(""), context("seguros"))
    assert new_state.seq == seq + 1


def test_steps_just_under_limit_still_run() -> None:
    """A call two nodes short of the limit can still enter vida and llamar_vida."""
    state, _ = begin()
    state = state.evolve(steps=MAX_STEPS_PER_CALL - 2)
    new_state, actions = step(state, KeysPressed("1"), context("seguros"))
    assert new_state.steps == MAX_STEPS_PER_CALL
    assert isinstance(actions[-1], Dial)


def test_steps_over_limit_is_a_step_error() -> None:
    """A call that would pass MAX_STEPS_PER_CALL nodes raises StepError."""
    state, _ = begin()
    state = state.evolve(steps=MAX_STEPS_PER_CALL - 1)
    with pytest.raises(StepError, match=f"passed {MAX_STEPS_PER_CALL} steps"):
        step(state, KeysPressed("1"), context("seguros"))


def test_long_bounded_loop_runs_in_one_webhook() -> None:
    """A valid loop of 123 nodes that never waits (a goto with limit 60) completes."""
    state, actions = begin("long_loop")
    assert actions == (*(Say("Hola.", "Polly.Lucia", "es-ES"),) * 61, Hangup())
    assert (state.node, state.waiting, dict(state.visits)) == (
        "fin",
        Waiting.ENDED,
        {"otra_vez": 61},
    )
    assert state.steps <= MAX_STEPS_PER_CALL


# --- State JSON ----------------------------------------------------------------------------------


def rich_state() -> CallState:
    """A state with every field away from its default, non-ASCII text included."""
    state, _ = walk("every_kind", ["0", "1", "123456", DialEnded("busy")])
    return state.evolve(
        variables={**state.variables, "nota": 'Nochebuena: ñandú €, "comillas" y \\'},
        attempts=1,
        leave_reason="left",
        queued_at=1_790_000_000,
        reply='<?xml version="1.0"?><Response><Say>Adiós</Say></Response>',
    )


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: CallState("CA1", "f", "v", "n", Waiting.KEYS), id="defaults"),
        pytest.param(lambda: begin()[0], id="seguros-start"),
        pytest.param(lambda: walk("seguros", ["4", "1", POLICY])[0], id="seguros-dial"),
        pytest.param(lambda: walk("seguros", ["9", QueueLeft("bridged")])[0], id="ended"),
        pytest.param(rich_state, id="rich"),
    ],
)
def test_state_json_round_trip_preserves_everything(make: Callable[[], CallState]) -> None:
    """to_json then from_json (text or bytes) gives back an equal state."""
    state = make()
    text = state.to_json()
    assert CallState.from_json(text) == state
    assert CallState.from_json(text.encode("utf-8")) == state
    again = CallState.from_json(text)
    assert isinstance(again.waiting, Waiting)
    assert again.to_json() == text


def test_state_json_is_compact_utf8() -> None:
    """The JSON keeps non-ASCII text as is and stores waiting by value."""
    text = rich_state().to_json()
    assert "ñandú" in text
    data = json.loads(text)
    assert data["waiting"] == "queue"
    assert data["visits"] == {"volver": 1}


def test_state_json_round_trip_state_still_steps() -> None:
    """A state read back from JSON takes the next event like the original."""
    state, _ = walk("seguros", ["4"])
    again = CallState.from_json(state.to_json())
    ctx = context("seguros")
    assert step(again, KeysPressed("2"), ctx) == step(state, KeysPressed("2"), ctx)


def _good() -> dict[str, object]:
    data = json.loads(CallState("CA1", "f", "v", "n", Waiting.KEYS).to_json())
    assert isinstance(data, dict)
    return data


def _with(**changes: object) -> str:
    return json.dumps({**_good(), **changes})


def _without(key: str) -> str:
    data = _good()
    del data[key]
    return json.dumps(data)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("not json", id="not-json"),
        pytest.param("{", id="truncated"),
        pytest.param("null", id="null"),
        pytest.param("[]", id="list"),
        pytest.param("1", id="number"),
        pytest.param('"CA1"', id="string"),
        pytest.param("{}", id="empty-object"),
        pytest.param(b"\xff\xfe\x00", id="bad-bytes"),
        pytest.param(_without("node"), id="no-node"),
        pytest.param(_without("reply"), id="no-reply"),
        pytest.param(_with(waiting="sleeping"), id="bad-waiting"),
        pytest.param(_with(waiting=None), id="null-waiting"),
        pytest.param(_with(seq="abc"), id="text-seq"),
        pytest.param(_with(seq=None), id="null-seq"),
        pytest.param(_with(steps=[1]), id="list-steps"),
        pytest.param(_with(variables=["a"]), id="list-variables"),
        pytest.param(_with(variables="x"), id="text-variables"),
        pytest.param(_with(visits={"volver": "dos"}), id="text-visit"),
        pytest.param(_with(visits=None), id="null-visits"),
        pytest.param('{"seq": NaN}', id="nan"),
    ],
)
def test_state_from_json_garbage_is_state_error(text: str | bytes) -> None:
    """Unreadable stored state raises StateError, never anything else."""
    with pytest.raises(StateError, match="unreadable"):
        CallState.from_json(text)


@pytest.mark.parametrize("number", ["1e400", "Infinity", "-Infinity"])
def test_state_from_json_infinite_number_is_state_error(number: str) -> None:
    """A seq that JSON reads as an infinite float is unreadable state too."""
    text = _with(seq=0).replace('"seq": 0', f'"seq": {number}')
    assert f'"seq": {number}' in text
    with pytest.raises(StateError):
        CallState.from_json(text)


def test_state_from_json_deep_nesting_is_state_error() -> None:
    """Deeply nested garbage is unreadable state, not a RecursionError."""
    with pytest.raises(StateError):
        CallState.from_json("[" * 100_000)


def test_input_rejects_keys_that_are_not_digits() -> None:
    """A policy number typed as stars is a wrong answer, not a number."""
    state, actions = walk("seguros", ["4", "1", "********"])
    assert state.node == "pedir_poliza"
    assert state.attempts == 1
    assert actions[0] == lucia("El número de póliza tiene ocho cifras.")


def test_queue_wait_counts_from_entering_the_queue() -> None:
    """Without QueueTime (a redirected wait request sends none) the wait is counted from when
    the call entered the queue, so max_wait still ends it."""
    state, _ = walk("seguros", ["9"])
    assert state.queued_at == int(OPEN.timestamp())
    later = context("seguros", OPEN + dt.timedelta(seconds=599))
    assert queue_wait(state, 0, later)[1] == (Play(HOLD_MUSIC),)
    timed_out = context("seguros", OPEN + dt.timedelta(seconds=600))
    waited, actions = queue_wait(state, 0, timed_out)
    assert (actions, waited.leave_reason) == ((Leave(),), "timed_out")
