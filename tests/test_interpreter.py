"""The interpreter: real flows driven event by event, at chosen instants, with no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import get_args
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
from flowpbx.engine.call_events import (
    EVENT_TYPES,
    BadCallEvent,
    CallbackRequested,
    CallEnded,
    CallEvent,
    CallRecovered,
    CallStarted,
    CaseMatched,
    DialFinished,
    DialStarted,
    EndReason,
    FallbackTaken,
    HoursChecked,
    InputCollected,
    InvalidInput,
    NodeEntered,
    NoInput,
    OptionChosen,
    QueueExit,
    QueueExited,
    QueueJoined,
    RecordingMade,
    StepRecord,
    from_dict,
    to_dict,
)
from flowpbx.engine.core import HOLD_ON, CallEngine, goodbye
from flowpbx.engine.events import (
    DialEnded,
    DialResult,
    Direction,
    Event,
    KeysPressed,
    NewCall,
    QueueKeysPressed,
    QueueLeft,
    QueueResult,
    QueueView,
    QueueWaitTick,
    RecordingEnded,
)
from flowpbx.engine.hours import HoursStatus, business_hours
from flowpbx.engine.interpreter import (
    MAX_STEPS_PER_CALL,
    Context,
    IllegalEvent,
    Step,
    StepError,
    start,
    step,
)
from flowpbx.engine.state import CallState, StateError, Waiting
from flowpbx.language.flow import Flow, HoursNode, easter_sunday
from flowpbx.language.loader import check_file, check_text, load_flow
from flowpbx.twilio.params import DIAL_RESULTS, QUEUE_RESULTS

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
RECORDING_URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"

Actions = tuple[Action, ...]
Input = str | Event
"""A step of a walk: a string is the keys pressed, anything else is the event itself."""

ENGINE = CallEngine()


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
    override: HoursStatus | None = None,
    of: Flow | None = None,
) -> Context:
    """A context for the named flow (or `of`, a variant of it) at `now`, with its config (or
    `values`)."""
    return Context(
        flow=flow(name) if of is None else of,
        version=VERSION,
        config=config(name) if values is None else values,
        now=now,
        hours_override=override,
    )


def new_call(caller: str = CALLER, direction: Direction = Direction.INBOUND) -> NewCall:
    return NewCall(call_sid=SID, caller=caller, called=CALLED, direction=direction)


def begin(name: str = "seguros", now: dt.datetime = OPEN, caller: str = CALLER) -> Step:
    """A new call to the named flow."""
    return start(new_call(caller), context(name, now))


def event_of(item: Input) -> Event:
    return KeysPressed(digits=item) if isinstance(item, str) else item


def steps_of(
    name: str, inputs: Sequence[Input], now: dt.datetime = OPEN, caller: str = CALLER
) -> list[Step]:
    """A new call, then one step per input; every step, the start first."""
    taken = [begin(name, now, caller)]
    ctx = context(name, now)
    for item in inputs:
        taken.append(step(taken[-1].state, event_of(item), ctx))
    return taken


def walk(name: str, inputs: Sequence[Input], now: dt.datetime = OPEN, caller: str = CALLER) -> Step:
    """A new call, then one step per input; the last step."""
    return steps_of(name, inputs, now, caller)[-1]


def keys(digits: str) -> KeysPressed:
    return KeysPressed(digits=digits)


def dialled(status: str) -> DialEnded:
    """The dial's end as Twilio reports it (its DialCallStatus)."""
    return DialEnded(result=DIAL_RESULTS[status])


def queue_left(result: str, waited: int = 0) -> QueueLeft:
    """The queue's end as Twilio reports it (its QueueResult); unknown results are errors."""
    return QueueLeft(result=QUEUE_RESULTS.get(result, QueueResult.ERROR), waited=waited)


def lucia(text: str) -> Say:
    return Say(text, "Polly.Lucia", "es-ES")


def conchita(text: str) -> Say:
    return Say(text, "Polly.Conchita", "es-ES")


def enrique(text: str) -> Say:
    return Say(text, "Polly.Enrique", "es-ES")


DIAL_ANSWERED = DialEnded(result=DialResult.ANSWERED)
DIAL_BUSY = DialEnded(result=DialResult.BUSY)
DIAL_NO_ANSWER = DialEnded(result=DialResult.NO_ANSWER)
QUEUE_BRIDGED = QueueLeft(result=QueueResult.BRIDGED)
QUEUE_LEAVE = QueueLeft(result=QueueResult.LEAVE)
NO_RECORDING = RecordingEnded(url="")


# --- What seguros says ---------------------------------------------------------------------------

WELCOME = lucia(
    "Bienvenido a Seguros. Le informamos de que esta llamada puede ser grabada para mejorar "
    "la calidad del servicio."
)
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
INVALID = lucia("Lo sentimos, esa opción no es válida.")
NO_NUMBER = lucia("No hemos recibido ningún número.")
SHORT_NUMBER = lucia("El número de póliza tiene ocho cifras.")
GENERAL_QUEUE = Enqueue("general-queue", "seguros", "agente")
AGENT: Actions = (lucia("Le pasamos con un agente. Por favor, espere."), GENERAL_QUEUE)
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
QUEUE_FULL: Actions = (
    lucia(
        "Lo sentimos, en este momento hay demasiadas personas esperando y no podemos "
        "atenderle. Puede dejarnos un mensaje y le llamaremos lo antes posible."
    ),
    *GENERAL_VOICEMAIL,
)
"""The queue had no room (or failed): cola_llena, then the general voicemail."""
WAIT_OVER: Actions = (
    lucia(
        "Lamentamos la espera. Todos nuestros agentes siguen ocupados. "
        "Puede dejarnos un mensaje y le llamaremos lo antes posible."
    ),
    *GENERAL_VOICEMAIL,
)
"""The caller waited the queue's max_wait: espera_agotada, then the general voicemail."""
APOLOGY = lucia("Lo sentimos, se ha producido un error. Volvemos al menú principal.")
RECOVERED: Actions = (APOLOGY, WELCOME, MENU)
"""After a failure: the apology, then on_error.next (bienvenida, the recording notice), then
the main menu."""
PLAIN_APOLOGY = lucia("Lo sentimos, se ha producido un error. Disculpe las molestias.")
HOLD_MUSIC = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
HOLD = Gather((Play(HOLD_MUSIC),), 1, 1, "", Route.QUEUE_KEY)
"""seguros' hold music with no announcement, inside a one-key gather for its leave and
callback keys."""
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
            "Ha elegido seguros de vida. Le pasamos con el departamento de seguros de vida.",
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
            "Ha elegido seguros de salud. Le pasamos con el departamento de seguros de salud.",
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
            "Ha elegido seguros de hogar. Le pasamos con el departamento de seguros de hogar.",
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
EK_QUEUE = Enqueue("soporte", "every-kind", "cola")
EK_HOLD = Gather((Play("https://example.com/espera.mp3"),), 1, 1, "", Route.QUEUE_KEY)

# --- What sensitive says -------------------------------------------------------------------------

PIN = Gather((lucia("Marque su PIN de cuatro cifras."),), 5, 4, "#")
REFERENCIA = Gather((lucia("Marque su referencia y pulse almohadilla."),), 5, None, "#")


# --- start ---------------------------------------------------------------------------------------


def test_start_seguros_open_welcomes_and_asks_menu() -> None:
    """On a Tuesday at 10:00 in Madrid the caller is welcomed and asked to pick an option."""
    result = begin()
    assert result.actions == (WELCOME, MENU)
    assert result.failure is None
    gather = result.actions[1]
    assert isinstance(gather, Gather)
    assert (gather.num_digits, gather.finish_on_key, gather.timeout) == (1, "", 5)
    assert gather.route is Route.GATHER
    state = result.state
    assert state.node == "menu_principal"
    assert state.waiting is Waiting.KEYS
    assert state.seq == 1
    assert state.attempts == 0
    assert state.steps == 3  # horario, bienvenida, menu_principal
    assert (state.call_sid, state.flow, state.version) == (SID, "seguros", VERSION)
    assert state.direction is Direction.INBOUND
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
    result = begin(now=now)
    assert result.actions == CLOSED
    state = result.state
    assert (state.node, state.waiting, state.seq) == ("buzon_general", Waiting.RECORDING, 1)


@pytest.mark.parametrize(
    ("override", "now", "expected"),
    [
        pytest.param(HoursStatus.CLOSED, OPEN, CLOSED, id="closed-during-hours"),
        pytest.param(HoursStatus.HOLIDAY, OPEN, CLOSED, id="holiday-during-hours"),
        pytest.param(HoursStatus.OPEN, SATURDAY, (WELCOME, MENU), id="open-on-saturday"),
        pytest.param(
            HoursStatus.OPEN, madrid(2026, 12, 25, 10), (WELCOME, MENU), id="open-on-holiday"
        ),
    ],
)
def test_start_hours_override_beats_the_clock(
    override: HoursStatus, now: dt.datetime, expected: Actions
) -> None:
    """The operator's day/night switch decides every hours node, whatever the time."""
    ctx = context("seguros", now, override=override)
    assert start(new_call(), ctx).actions == expected


def test_start_every_kind_holiday_goes_to_holiday_node() -> None:
    """every_kind's holiday outcome is its own node (pausa: a pause, then goodbye)."""
    result = begin("every_kind", madrid(2026, 12, 31, 10))
    assert result.actions == (Pause(2), *EK_GOODBYE)
    state = result.state
    assert (state.node, state.waiting, state.steps) == ("adios", Waiting.ENDED, 3)


def test_start_every_kind_closed_says_goodbye() -> None:
    """every_kind outside hours goes straight to its goodbye and ends the call."""
    result = begin("every_kind", SATURDAY)
    assert result.actions == EK_GOODBYE
    assert (result.state.node, result.state.waiting, result.state.seq) == (
        "adios",
        Waiting.ENDED,
        1,
    )


def test_start_keeps_the_calls_direction() -> None:
    """A call flowpbx placed is marked outbound in its state and its CallStarted event."""
    result = start(new_call(direction=Direction.OUTBOUND), context("seguros"))
    assert result.state.direction is Direction.OUTBOUND
    assert result.events[0] == CallStarted(
        flow="seguros",
        version=VERSION,
        caller=CALLER,
        called=CALLED,
        direction=Direction.OUTBOUND,
    )


# --- seguros: main menu --------------------------------------------------------------------------


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_menu_department_confirms_and_dials_config_number(department: Department) -> None:
    """Each department's keys lead to its confirmation and a recorded 25 s dial to its number."""
    result = walk("seguros", department.keys)
    assert result.actions == (
        lucia(department.confirmation),
        Dial((department.number,), None, 25, True),
    )
    state = result.state
    assert (state.node, state.waiting) == (department.dial, Waiting.DIAL)
    assert state.variables["digits"] == department.keys[-1]
    assert state.attempts == 0


def test_menu_key_4_opens_automovil_submenu() -> None:
    """Key 4 asks the car-insurance submenu, with no welcome before it."""
    result = walk("seguros", ["4"])
    assert result.actions == (AUTOMOVIL,)
    state = result.state
    assert (state.node, state.waiting, state.seq) == ("automovil", Waiting.KEYS, 2)
    assert state.variables["digits"] == "4"


def test_menu_key_9_puts_caller_in_agent_queue() -> None:
    """Key 9 warns the caller and enqueues them in general-queue, naming the enqueue node."""
    result = walk("seguros", ["9"])
    assert result.actions == AGENT
    state = result.state
    assert (state.node, state.waiting, state.leave_reason) == ("agente", Waiting.QUEUE, "")


@pytest.mark.parametrize("key", ["0", "5", "6", "7", "8", "*", "#"])
def test_menu_invalid_key_says_so_and_asks_again(key: str) -> None:
    """A key that is not an option is answered with 'Opción no válida.' and the menu again."""
    result = walk("seguros", [key])
    assert result.actions == (INVALID, MENU)
    state = result.state
    assert (state.node, state.waiting, state.attempts, state.seq) == (
        "menu_principal",
        Waiting.KEYS,
        1,
        2,
    )


def test_menu_no_input_says_so_and_asks_again() -> None:
    """Silence is answered with 'No hemos recibido ninguna opción.' and the menu again."""
    result = walk("seguros", [""])
    assert result.actions == (NO_OPTION, MENU)
    assert (result.state.node, result.state.attempts) == ("menu_principal", 1)


def test_menu_only_first_key_counts() -> None:
    """Of several keys only the first chooses the option."""
    result = walk("seguros", ["92"])
    assert result.actions == AGENT
    assert result.state.variables["digits"] == "9"


def test_menu_fourth_silence_goes_to_queue_and_not_before() -> None:
    """With retries 3, the first three silences repeat the menu; the fourth goes to the agent."""
    state = begin().state
    ctx = context("seguros")
    for attempt in (1, 2, 3):
        result = step(state, keys(""), ctx)
        assert result.actions == (NO_OPTION, MENU), f"silence {attempt}"
        state = result.state
        assert (state.node, state.attempts) == ("menu_principal", attempt)
    result = step(state, keys(""), ctx)
    assert result.actions == AGENT
    state = result.state
    assert (state.node, state.waiting, state.attempts) == ("agente", Waiting.QUEUE, 0)


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param(["7", "", "#", ""], id="invalid-first"),
        pytest.param(["", "", "", "0"], id="invalid-last"),
        pytest.param(["5", "6", "7", "8"], id="all-invalid"),
    ],
)
def test_menu_invalid_and_silence_share_retries(inputs: list[str]) -> None:
    """Wrong keys and silences count together: the fourth failure of any kind goes to the agent."""
    state = walk("seguros", inputs[:3]).state
    assert (state.node, state.attempts) == ("menu_principal", 3)
    result = step(state, keys(inputs[3]), context("seguros"))
    assert result.actions == AGENT
    assert result.state.node == "agente"


def test_menu_valid_key_after_failures_resets_attempts() -> None:
    """A valid key after failures clears the count; the submenu has its own retries (2)."""
    result = walk("seguros", ["", "5", "4"])
    assert result.actions == (AUTOMOVIL,)
    assert (result.state.node, result.state.attempts) == ("automovil", 0)
    result = walk("seguros", ["", "5", "4", "", "0"])
    assert result.actions == (INVALID, AUTOMOVIL)
    assert result.state.attempts == 2
    result = step(result.state, keys(""), context("seguros"))
    assert result.actions == AGENT


# --- seguros: automóvil submenu and policy number ------------------------------------------------


def test_automovil_star_goes_back_to_main_menu() -> None:
    """'*' in the submenu asks the main menu again, without the welcome."""
    result = walk("seguros", ["4", "*"])
    assert result.actions == (MENU,)
    state = result.state
    assert (state.node, state.waiting, state.attempts) == ("menu_principal", Waiting.KEYS, 0)


def test_automovil_back_and_forth_counts_each_step() -> None:
    """Going 4, *, 4 reaches the submenu again with seq 4."""
    result = walk("seguros", ["4", "*", "4"])
    assert result.actions == (AUTOMOVIL,)
    assert (result.state.node, result.state.seq) == ("automovil", 4)


@pytest.mark.parametrize(
    ("key", "message"),
    [pytest.param("", NO_OPTION, id="silence"), pytest.param("3", INVALID, id="invalid")],
)
def test_automovil_failure_repeats_submenu(key: str, message: Say) -> None:
    """A failure in the submenu repeats the submenu, not the main menu."""
    result = walk("seguros", ["4", key])
    assert result.actions == (message, AUTOMOVIL)
    assert (result.state.node, result.state.attempts) == ("automovil", 1)


def test_automovil_key_1_asks_policy_number() -> None:
    """'1' asks for an 8-digit policy number ended by '#'."""
    result = walk("seguros", ["4", "1"])
    assert result.actions == (POLIZA,)
    assert (result.state.node, result.state.waiting) == ("pedir_poliza", Waiting.KEYS)


def test_poliza_eight_digits_are_kept_and_dial_partes() -> None:
    """Eight digits are kept as numero_poliza and digits, then the claims line is dialled."""
    result = walk("seguros", ["4", "1", POLICY])
    assert result.actions == (
        lucia("Gracias. Le pasamos con el departamento de partes."),
        Dial(("+34912345674",), None, 25, True),
    )
    state = result.state
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
    result = walk("seguros", ["4", "1", digits])
    assert result.actions == (message, POLIZA)
    assert (result.state.node, result.state.attempts) == ("pedir_poliza", 1)
    assert "numero_poliza" not in result.state.variables


@pytest.mark.parametrize("digits", ["123456789", "1234567812345678"])
def test_poliza_longer_than_max_digits_is_invalid(digits: str) -> None:
    """More digits than the input's max_digits (8) is a wrong answer, not a policy number."""
    result = walk("seguros", ["4", "1", digits])
    assert result.actions == (SHORT_NUMBER, POLIZA)
    assert (result.state.node, result.state.attempts) == ("pedir_poliza", 1)
    assert "numero_poliza" not in result.state.variables
    assert result.events == (InvalidInput(node="pedir_poliza", attempt=1, digits=digits),)


def test_input_rejects_keys_that_are_not_digits() -> None:
    """A policy number typed as stars is a wrong answer, not a number."""
    result = walk("seguros", ["4", "1", "********"])
    assert result.state.node == "pedir_poliza"
    assert result.state.attempts == 1
    assert result.actions[0] == SHORT_NUMBER


def test_poliza_retries_exhausted_goes_to_parte_without_number() -> None:
    """After retries (2) the third failure still passes the call to the claims line, without
    thanking a caller who could not give a policy number."""
    result = walk("seguros", ["4", "1", "123", ""])
    assert result.actions == (NO_NUMBER, POLIZA)
    assert result.state.attempts == 2
    result = step(result.state, keys("1"), context("seguros"))
    assert result.actions == (
        lucia(
            "No hemos podido recoger su número de póliza; se lo pedirán al atenderle. "
            "Le pasamos con el departamento de partes."
        ),
        Dial(("+34912345674",), None, 25, True),
    )
    assert result.state.node == "llamar_partes"
    assert "numero_poliza" not in result.state.variables


def test_poliza_valid_after_failure_is_accepted() -> None:
    """A good number after a short one is accepted and resets the attempts."""
    state = walk("seguros", ["4", "1", "123", POLICY]).state
    assert (state.node, state.attempts) == ("llamar_partes", 0)
    assert state.variables["numero_poliza"] == POLICY


# --- seguros: dial outcomes ----------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "answered"])
@pytest.mark.parametrize("department", DEPARTMENTS)
def test_dial_answered_hangs_up(department: Department, status: str) -> None:
    """An answered call ends the flow with a hangup: seguros has no 'answered' node."""
    result = walk("seguros", [*department.keys, dialled(status)])
    assert result.actions == (Hangup(),)
    assert (result.state.node, result.state.waiting) == (department.dial, Waiting.ENDED)
    assert result.state.variables["dial_status"] == "completed"


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed", "canceled"])
@pytest.mark.parametrize("department", DEPARTMENTS)
def test_dial_unanswered_goes_to_department_voicemail(department: Department, status: str) -> None:
    """Unanswered, busy, failed or canceled dials go to the department's voicemail."""
    result = walk("seguros", [*department.keys, dialled(status)])
    assert result.actions == (lucia(department.voicemail_prompt), VOICEMAIL)
    state = result.state
    assert (state.node, state.waiting) == (department.voicemail, Waiting.RECORDING)
    assert state.variables["dial_status"] == status


@pytest.mark.parametrize(
    ("status", "word"),
    [
        ("completed", "completed"),
        ("answered", "completed"),
        ("no-answer", "no-answer"),
        ("busy", "busy"),
        ("failed", "failed"),
        ("canceled", "canceled"),
    ],
)
def test_dial_status_variable_uses_the_documented_words(status: str, word: str) -> None:
    """{dial_status} holds the words docs/flows.md documents; a joined conference is completed."""
    state = walk("seguros", ["1", dialled(status)]).state
    assert state.variables["dial_status"] == word


@pytest.mark.parametrize(
    "url", [pytest.param(RECORDING_URL, id="url"), pytest.param("", id="no-url")]
)
@pytest.mark.parametrize("department", DEPARTMENTS)
def test_record_ended_says_goodbye(department: Department, url: str) -> None:
    """After a voicemail, recorded or not, the caller hears goodbye and the call ends."""
    inputs: list[Input] = [
        *department.keys,
        DIAL_NO_ANSWER,
        RecordingEnded(url=url, duration=12 if url else 0),
    ]
    result = walk("seguros", inputs)
    assert result.actions == GOODBYE
    assert (result.state.node, result.state.waiting) == ("despedida", Waiting.ENDED)
    assert result.state.variables["recording_url"] == url


@pytest.mark.parametrize(
    ("status", "expected", "node", "waiting"),
    [
        pytest.param("completed", EK_GOODBYE, "adios", Waiting.ENDED, id="completed"),
        pytest.param("answered", EK_GOODBYE, "adios", Waiting.ENDED, id="answered"),
        pytest.param("busy", (EK_QUEUE,), "cola", Waiting.QUEUE, id="busy"),
        pytest.param("no-answer", EK_VOICEMAIL, "buzon", Waiting.RECORDING, id="no-answer"),
        pytest.param("failed", EK_VOICEMAIL, "buzon", Waiting.RECORDING, id="failed"),
        pytest.param("canceled", EK_VOICEMAIL, "buzon", Waiting.RECORDING, id="canceled"),
    ],
)
def test_dial_every_kind_outcomes(
    status: str, expected: Actions, node: str, waiting: Waiting
) -> None:
    """every_kind's dial has its own answered and busy nodes; failed defaults to no_answer."""
    result = walk("every_kind", ["2"])
    assert result.actions == (EK_DIAL,)
    result = step(result.state, dialled(status), context("every_kind"))
    assert result.actions == expected
    assert (result.state.node, result.state.waiting) == (node, waiting)


# --- Queues --------------------------------------------------------------------------------------


def test_enqueue_full_goes_to_full_node() -> None:
    """A full queue sends the caller to its 'full' node (cola_llena, then the general
    voicemail)."""
    result = walk("seguros", ["9", QueueLeft(result=QueueResult.FULL)])
    assert result.actions == QUEUE_FULL
    assert (result.state.node, result.state.waiting) == ("buzon_general", Waiting.RECORDING)


@pytest.mark.parametrize("queue_time", [0, 1, 300, 599])
def test_queue_wait_before_max_wait_plays_hold_music(queue_time: int) -> None:
    """Before max_wait (600 s) the caller hears the queue's hold music (from config), inside a
    gather for the leave and callback keys; without the queue engine's view there is no
    announcement, and the state is unchanged."""
    state = walk("seguros", ["9"]).state
    result = step(state, QueueWaitTick(waited=queue_time), context("seguros"))
    assert result.actions == (HOLD,)
    assert result.state == state
    assert result.events == ()


@pytest.mark.parametrize("queue_time", [600, 601, 86400])
def test_queue_wait_at_max_wait_leaves_as_timed_out(queue_time: int) -> None:
    """At max_wait the caller leaves the queue, marked timed_out, and then goes to timed_out
    (espera_agotada, then voicemail)."""
    state = walk("seguros", ["9"]).state
    ctx = context("seguros")
    result = step(state, QueueWaitTick(waited=queue_time), ctx)
    assert result.actions == (Leave(),)
    waited = result.state
    assert waited == state.evolve(leave_reason="timed_out")
    assert waited.seq == state.seq
    result = step(waited, QUEUE_LEAVE, ctx)
    assert result.actions == WAIT_OVER
    assert (result.state.node, result.state.waiting, result.state.seq) == (
        "buzon_general",
        Waiting.RECORDING,
        3,
    )


def test_queue_wait_counts_from_entering_the_queue() -> None:
    """Without QueueTime (a redirected wait request sends none) the wait is counted from when
    the call entered the queue, so max_wait still ends it."""
    state = walk("seguros", ["9"]).state
    assert state.queued_at == int(OPEN.timestamp())
    later = context("seguros", OPEN + dt.timedelta(seconds=599))
    assert step(state, QueueWaitTick(waited=0), later).actions == (HOLD,)
    timed_out = context("seguros", OPEN + dt.timedelta(seconds=600))
    result = step(state, QueueWaitTick(waited=0), timed_out)
    assert (result.actions, result.state.leave_reason) == ((Leave(),), "timed_out")


@pytest.mark.parametrize(
    ("name", "inputs", "event", "node", "waiting"),
    [
        pytest.param("seguros", [], QueueWaitTick(waited=0), "menu_principal", "keys", id="tick"),
        pytest.param("every_kind", [], QueueKeysPressed(digits="*"), "menu", "keys", id="keys"),
        pytest.param(
            "seguros", ["1"], QueueWaitTick(waited=700), "llamar_vida", "dial", id="tick-at-dial"
        ),
        pytest.param(
            "seguros",
            ["9", QUEUE_BRIDGED],
            QueueWaitTick(waited=0),
            "agente",
            "ended",
            id="tick-after-queue",
        ),
    ],
)
def test_queue_wait_events_outside_a_queue_are_illegal(
    name: str, inputs: list[Input], event: Event, node: str, waiting: str
) -> None:
    """A queue's wait tick or keys for a call not waiting in a queue raise IllegalEvent."""
    state = walk(name, inputs).state
    with pytest.raises(IllegalEvent) as caught:
        step(state, event, context(name))
    assert str(caught.value) == (
        f"{type(event).__name__} cannot happen to call {SID} at node '{node}' waiting for {waiting}"
    )


def test_queue_leave_without_reason_goes_to_timed_out() -> None:
    """'leave' when the flow never asked to leave (no key pressed, no max_wait reached) counts
    as timed out."""
    result = walk("seguros", ["9", QUEUE_LEAVE])
    assert result.actions == WAIT_OVER
    assert (result.state.node, result.state.waiting) == ("buzon_general", Waiting.RECORDING)
    assert result.events[0] == QueueExited(
        node="agente", queue="general-queue", reason=QueueExit.TIMED_OUT, waited=0
    )


def test_queue_leave_without_reason_or_timed_out_node_goes_to_full() -> None:
    """An unexplained 'leave' from a queue with no timed_out node goes to its full node."""
    result = walk("plain_queue", ["2", QUEUE_LEAVE])
    assert result.actions == (Hangup(),)
    assert (result.state.node, result.state.waiting) == ("fin", Waiting.ENDED)


def test_queue_key_leave_key_gathers_during_hold() -> None:
    """With a leave key the hold music plays inside a one-key gather answered on QUEUE_KEY."""
    result = walk("every_kind", ["#"])
    assert result.actions == (EK_QUEUE,)
    waiting = step(result.state, QueueWaitTick(waited=10), context("every_kind"))
    assert waiting.actions == (EK_HOLD,)
    assert waiting.state == result.state


def test_queue_key_leave_key_leaves_and_goes_to_left() -> None:
    """The leave key marks the caller 'left'; the following leave goes to the 'left' node."""
    state = walk("every_kind", ["#"]).state
    ctx = context("every_kind")
    result = step(state, QueueKeysPressed(digits="*"), ctx)
    assert result.actions == (Leave(),)
    assert result.state == state.evolve(leave_reason="left")
    result = step(result.state, QUEUE_LEAVE, ctx)
    assert result.actions == EK_VOICEMAIL
    assert (result.state.node, result.state.waiting) == ("buzon", Waiting.RECORDING)


@pytest.mark.parametrize("digits", ["1", "#", "0", "", "9*"])
def test_queue_key_other_key_returns_to_hold(digits: str) -> None:
    """Any other key sends the caller back to the hold music (the wait route, naming the
    enqueue node) without changing the state."""
    state = walk("every_kind", ["#"]).state
    result = step(state, QueueKeysPressed(digits=digits), context("every_kind"))
    assert result.actions == (Redirect(Route.QUEUE_WAIT, "every-kind", "cola"),)
    assert result.state == state


def test_queue_every_kind_timed_out_goes_to_voicemail() -> None:
    """every_kind's queue times out after 120 s and goes to its timed_out node."""
    state = walk("every_kind", ["#"]).state
    ctx = context("every_kind")
    result = step(state, QueueWaitTick(waited=120), ctx)
    assert (result.actions, result.state.leave_reason) == ((Leave(),), "timed_out")
    assert step(result.state, QUEUE_LEAVE, ctx).actions == EK_VOICEMAIL


def test_enqueue_clears_an_old_leave_reason() -> None:
    """Entering a queue forgets why the caller left an earlier one."""
    state = begin().state
    state = step(state.evolve(leave_reason="left"), keys("9"), context("seguros")).state
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
    state = walk("plain_queue", ["1"]).state
    result = step(state, QueueWaitTick(waited=queue_time), context("plain_queue"))
    assert (result.state, result.actions) == (state, (Pause(pause),))


@pytest.mark.parametrize("queue_time", [0, 30, 100_000])
def test_queue_wait_without_max_wait_never_times_out(queue_time: int) -> None:
    """Without max_wait the caller waits in 20 s pauses, inside a gather for the leave key."""
    state = walk("plain_queue", ["2"]).state
    result = step(state, QueueWaitTick(waited=queue_time), context("plain_queue"))
    assert result.actions == (Gather((Pause(20),), 1, 1, "", Route.QUEUE_KEY),)
    assert result.state == state


def test_queue_bridged_hangs_up() -> None:
    """After talking with an agent the call ends with a hangup."""
    result = walk("seguros", ["9", QUEUE_BRIDGED])
    assert result.actions == (Hangup(),)
    assert (result.state.node, result.state.waiting, result.state.seq) == (
        "agente",
        Waiting.ENDED,
        3,
    )


@pytest.mark.parametrize(
    "result",
    [
        "hangup",
        "bridging-in-process",
        "redirected",
        "redirected-from-bridged",
    ],
)
def test_queue_hangup_or_redirect_ends_silently(result: str) -> None:
    """A caller who hung up or was moved elsewhere ends the flow with no actions."""
    done = walk("seguros", ["9", queue_left(result)])
    assert done.actions == ()
    assert done.state.waiting is Waiting.ENDED


@pytest.mark.parametrize("result", ["system-error", "error", "bridgd"])
def test_queue_error_result_goes_to_full_node(result: str) -> None:
    """A queue error (Twilio's error, system-error, or a result flowpbx does not know) sends the
    caller on as a full queue does, with no apology."""
    done = walk("seguros", ["9", queue_left(result)])
    assert done.actions == QUEUE_FULL
    assert (done.state.node, done.state.waiting) == ("buzon_general", Waiting.RECORDING)
    assert done.events[0] == QueueExited(
        node="agente", queue="general-queue", reason=QueueExit.ERROR, waited=0
    )
    assert done.failure is None


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
        pytest.param(madrid(2026, 4, 3, 10), "holiday", id="viernes-santo-2026"),
        pytest.param(madrid(2027, 3, 26, 10), "holiday", id="viernes-santo-2027"),
        pytest.param(madrid(2026, 4, 2, 10), "holiday", id="jueves-santo-2026-madrid"),
        pytest.param(madrid(2027, 3, 25, 10), "holiday", id="jueves-santo-2027-madrid"),
        pytest.param(madrid(2026, 4, 6, 10), "open", id="lunes-de-pascua-2026-open-in-madrid"),
        pytest.param(madrid(2027, 4, 2, 10), "open", id="friday-a-week-after-2027-easter"),
        pytest.param(madrid(2026, 5, 15, 10), "holiday", id="san-isidro-2026-friday"),
        pytest.param(madrid(2026, 11, 9, 10), "holiday", id="almudena-2026-monday"),
    ],
)
def test_business_hours_seguros(now: dt.datetime, expected: str) -> None:
    """Seguros opens Monday to Friday 09:00-19:00 Madrid time, with summer time and holidays."""
    assert business_hours(hours("seguros"), now) is HoursStatus(expected)


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
    assert business_hours(hours("every_kind"), now) is HoursStatus(expected)


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


@pytest.mark.parametrize(
    ("year", "sunday"),
    [(2024, (3, 31)), (2025, (4, 20)), (2026, (4, 5)), (2027, (3, 28)), (2038, (4, 25))],
)
def test_easter_sunday_matches_the_church_calendar(year: int, sunday: tuple[int, int]) -> None:
    """Easter Sunday is computed for any year (2038 is the latest possible date, 25 April)."""
    assert easter_sunday(year) == dt.date(year, *sunday)


def test_holiday_far_from_easter_falls_in_the_next_year() -> None:
    """easter+300 of Easter 2026 (5 April) is 30 January 2027: the holiday is found in 2027."""
    node = check_text(HOLIDAY_FLOW.format(holidays="[easter+300]"), "h.yaml").flow
    assert node is not None
    horario = node.nodes["horario"]
    assert isinstance(horario, HoursNode)
    assert dt.date(2026, 4, 5) + dt.timedelta(days=300) == dt.date(2027, 1, 30)
    assert business_hours(horario, madrid(2027, 1, 29, 10)) == "open"
    assert horario.holidays[0].falls_on(dt.date(2027, 1, 30))


def test_holiday_moving_with_easter_is_checked_and_rejects_a_duplicate() -> None:
    """'easter-2' is a holiday every year; the same Easter day twice is an error."""
    text = HOLIDAY_FLOW.format(holidays="[easter-2, easter+1]")
    report = check_text(text, "h.yaml")
    assert not report.errors, report.problems
    node = report.flow.nodes["horario"] if report.flow else None
    assert isinstance(node, HoursNode)
    assert business_hours(node, madrid(2026, 4, 3, 10)) == "holiday"
    assert business_hours(node, madrid(2026, 4, 6, 10)) == "holiday"
    assert business_hours(node, madrid(2026, 4, 7, 10)) == "open"
    twice = check_text(HOLIDAY_FLOW.format(holidays="[easter-2, easter-2]"), "h.yaml")
    assert [p.message for p in twice.errors] == [
        "node 'horario': holiday easter-2 is listed twice (also entry 1); keep only one"
    ]


HOLIDAY_FLOW = """name: h
entry: horario
nodes:
  horario:
    type: hours
    timezone: Europe/Madrid
    weekly:
      monday-friday: 09:00-19:00
    holidays: {holidays}
    open: fin
    closed: fin
  fin:
    type: hangup
"""


# --- goto, set, switch, variables ----------------------------------------------------------------


def test_goto_limit_counts_jumps_then_goes_to_exhausted() -> None:
    """every_kind's 'volver' jumps back to the menu twice; the third time it says goodbye."""
    state = begin("every_kind").state
    ctx = context("every_kind")
    for visit in (1, 2):
        result = step(state, keys("0"), ctx)
        assert result.actions == (EK_MENU,)
        state = result.state
        assert state.node == "menu"
        assert dict(state.visits) == {"volver": visit}
    result = step(state, keys("0"), ctx)
    assert result.actions == EK_GOODBYE
    assert (result.state.node, result.state.waiting) == ("adios", Waiting.ENDED)
    assert dict(result.state.visits) == {"volver": 3}


def test_goto_visits_are_per_call() -> None:
    """A new call starts with no visits, whatever an earlier call did."""
    walk("every_kind", ["0", "0"])
    assert dict(walk("every_kind", ["0"]).state.visits) == {"volver": 1}


def test_goto_loop_within_one_step_repeats_then_exhausts() -> None:
    """A bounded loop without waiting runs limit + 1 times, then takes 'exhausted'."""
    result = begin("short_loop")
    assert result.actions == (
        *[Say("Hola.", "Polly.Lucia", "es-ES")] * 4,
        Say("Adiós.", "Polly.Lucia", "es-ES"),
        Hangup(),
    )
    assert dict(result.state.visits) == {"otra_vez": 4}
    assert result.state.steps == 9


def test_set_renders_variables() -> None:
    """every_kind's set copies the caller and turns numbers and booleans into text."""
    assert dict(begin("every_kind").state.variables) == {
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
    result = begin("every_kind", caller=caller)
    assert result.actions == expected
    assert (result.state.node, result.state.waiting) == ("menu", Waiting.KEYS)


def test_input_digits_saved_and_spelled() -> None:
    """Typed digits go into the input's variable and 'digits', and ':digits' spells them."""
    result = walk("every_kind", ["1"])
    assert result.actions == (EK_POLIZA,)
    result = step(result.state, keys("123456"), context("every_kind"))
    assert result.actions == (
        conchita(f"Ha marcado 1 2 3 4 5 6; llamamos desde {CALLED}. {{no es una variable}}"),
        EK_DIAL,
    )
    state = result.state
    assert state.variables["numero"] == "123456"
    assert state.variables["digits"] == "123456"
    assert (state.node, state.waiting) == ("soporte", Waiting.DIAL)


@pytest.mark.parametrize("digits", ["", "12345", "12345678901"])
def test_input_retry_without_message_only_asks_again(digits: str) -> None:
    """An input with no no_input/invalid message just asks again (too few digits, too many, or
    none)."""
    result = walk("every_kind", ["1", digits])
    assert result.actions == (EK_POLIZA,)
    assert (result.state.node, result.state.attempts) == ("poliza", 1)


def test_input_without_max_digits_accepts_any_length() -> None:
    """An input with no max_digits asks with no digit limit and keeps a long answer whole."""
    result = walk("sensitive", ["1234"])
    assert result.actions == (REFERENCIA,)
    reference = "1234567890" * 7
    result = step(result.state, keys(reference), context("sensitive"))
    assert result.actions == (lucia("Gracias."), lucia("Adiós."), Hangup())
    assert result.state.variables["referencia"] == reference
    assert result.events[0] == InputCollected(
        node="referencia", variable="referencia", digits=reference
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        pytest.param("", enrique("No le oigo."), id="silence"),
        pytest.param("9", enrique("Esa tecla no vale."), id="invalid"),
    ],
)
def test_menu_messages_use_the_menu_voice(key: str, message: Say) -> None:
    """every_kind's menu speaks its retry messages in its own voice (Polly.Enrique)."""
    result = walk("every_kind", [key])
    assert result.actions == (message, EK_MENU)
    result = step(result.state, keys(key), context("every_kind"))
    assert result.actions == EK_GOODBYE  # retries: 1


# --- Illegal events ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "event", "node", "waiting"),
    [
        pytest.param(["1"], keys("1"), "llamar_vida", "dial", id="keys-at-dial"),
        pytest.param([], DIAL_ANSWERED, "menu_principal", "keys", id="dial-at-menu"),
        pytest.param([], QUEUE_BRIDGED, "menu_principal", "keys", id="queue-at-menu"),
        pytest.param([], NO_RECORDING, "menu_principal", "keys", id="record-at-menu"),
        pytest.param(["9"], keys("1"), "agente", "queue", id="keys-at-queue"),
        pytest.param(["9"], DIAL_BUSY, "agente", "queue", id="dial-at-queue"),
        pytest.param(["1", DIAL_BUSY], QUEUE_LEAVE, "buzon_vida", "recording", id="q-at-rec"),
        pytest.param(["1"], NO_RECORDING, "llamar_vida", "dial", id="record-at-dial"),
        pytest.param([], QueueWaitTick(waited=0), "menu_principal", "keys", id="tick-at-menu"),
        pytest.param(
            ["1", DIAL_BUSY],
            QueueKeysPressed(digits="1"),
            "buzon_vida",
            "recording",
            id="queue-keys-at-rec",
        ),
    ],
)
def test_step_wrong_event_is_illegal(
    inputs: list[Input], event: Event, node: str, waiting: str
) -> None:
    """An event the waiting node does not expect raises IllegalEvent naming event, node and wait."""
    state = walk("seguros", inputs).state
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
        pytest.param(keys("1"), id="keys"),
        pytest.param(DIAL_ANSWERED, id="dial"),
        pytest.param(QUEUE_BRIDGED, id="queue"),
        pytest.param(NO_RECORDING, id="recording"),
        pytest.param(QueueWaitTick(waited=0), id="queue-wait"),
        pytest.param(QueueKeysPressed(digits="*"), id="queue-keys"),
    ],
)
def test_step_any_event_after_end_is_illegal(event: Event) -> None:
    """Once the call has ended no event is accepted."""
    state = walk("seguros", ["1", DIAL_ANSWERED]).state
    assert state.waiting is Waiting.ENDED
    with pytest.raises(IllegalEvent, match=r"at node 'llamar_vida' waiting for ended$"):
        step(state, event, context("seguros"))


def test_step_new_call_is_not_an_event() -> None:
    """A new call only starts a call: NewCall is not an event that step can be given."""
    assert NewCall not in get_args(Event)


def test_step_unknown_node_is_a_step_error() -> None:
    """A stored node the flow no longer has raises StepError naming node and flow."""
    state = begin().state
    with pytest.raises(StepError, match=r"node 'gone' is not in flow 'seguros'"):
        step(state.evolve(node="gone"), keys("1"), context("seguros"))


# --- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_config_missing_number_is_a_step_error(department: Department) -> None:
    """A dial whose config value is missing raises StepError naming the value."""
    values = {k: v for k, v in config("seguros").items() if k != department.setting}
    ctx = context("seguros", values=values)
    state = start(new_call(), ctx).state
    for digits in department.keys[:-1]:
        state = step(state, keys(digits), ctx).state
    with pytest.raises(StepError, match=department.setting):
        step(state, keys(department.keys[-1]), ctx)


def test_config_missing_number_then_recover_reaches_the_menu() -> None:
    """The failed step's stored state recovers to on_error.next: the recording notice, then
    the main menu."""
    values = {k: v for k, v in config("seguros").items() if k != "VIDA_NUMBER"}
    ctx = context("seguros", values=values)
    state = start(new_call(), ctx).state
    with pytest.raises(StepError, match="VIDA_NUMBER") as caught:
        step(state, keys("1"), ctx)
    result = ENGINE.recover(state, ctx, caught.value)
    assert result.actions == RECOVERED
    assert (result.state.node, result.state.waiting) == ("menu_principal", Waiting.KEYS)
    assert result.failure is caught.value


def test_config_missing_hold_music_is_a_step_error() -> None:
    """Hold music from a missing config value raises StepError naming it."""
    state = walk("seguros", ["9"]).state
    values = {k: v for k, v in config("seguros").items() if k != "HOLD_MUSIC_URL"}
    with pytest.raises(StepError, match="HOLD_MUSIC_URL"):
        step(state, QueueWaitTick(waited=0), context("seguros", values=values))


def test_config_empty_value_left_unfilled_is_a_step_error() -> None:
    """every_kind's MUSICA (~ in the flow) must come from outside; without it the play fails."""
    values = {k: v for k, v in flow("every_kind").config.items() if v is not None}
    ctx = context("every_kind", values=values)
    with pytest.raises(StepError, match="MUSICA"):
        start(new_call("+34910000000"), ctx)


def test_config_values_come_from_context_not_flow() -> None:
    """The context's config (the operator's environment) replaces the flow's default."""
    values = {**config("seguros"), "VIDA_NUMBER": "+34999999999"}
    ctx = context("seguros", values=values)
    state = start(new_call(), ctx).state
    assert step(state, keys("1"), ctx).actions[-1] == Dial(("+34999999999",), None, 25, True)


def test_config_reference_inside_url_is_checked_before_calls() -> None:
    """A ${NAME} inside a longer URL is checked by the validator, so calls cannot trip on it."""
    report = check_file(FIXTURES / "invalid" / "config_in_longer_url.yaml")
    assert [p.code for p in report.errors] == ["unknown-config"]


# --- seq and steps -------------------------------------------------------------------------------


def test_seq_and_steps_advance_through_a_call() -> None:
    """seq moves on by exactly one per step; steps counts every node entered."""
    state = begin().state
    ctx = context("seguros")
    assert (state.seq, state.steps) == (1, 3)
    walk_steps: list[tuple[Input, int]] = [
        ("4", 4),  # automovil
        ("1", 5),  # pedir_poliza
        (POLICY, 7),  # parte, llamar_partes
        (DIAL_NO_ANSWER, 8),  # buzon_partes
        (NO_RECORDING, 9),  # despedida
    ]
    for seq, (item, steps) in enumerate(walk_steps, start=2):
        state = step(state, event_of(item), ctx).state
        assert (state.seq, state.steps) == (seq, steps)
    assert state.waiting is Waiting.ENDED


def test_seq_does_not_move_on_queue_wait_events() -> None:
    """Queue wait ticks and keys happen within a step: seq stays; leaving the queue moves it."""
    ctx = context("every_kind")
    state = walk("every_kind", ["#"]).state
    assert state.seq == 2
    for event in (QueueWaitTick(waited=5), QueueKeysPressed(digits="1"), QueueWaitTick(waited=9)):
        assert step(state, event, ctx).state.seq == 2
    state = step(state, QueueKeysPressed(digits="*"), ctx).state
    assert state.seq == 2
    assert step(state, QUEUE_LEAVE, ctx).state.seq == 3


@pytest.mark.parametrize("seq", [1, 7, 41])
def test_seq_continues_from_stored_state(seq: int) -> None:
    """step adds one to whatever seq the stored state carries."""
    state = begin().state
    assert step(state.evolve(seq=seq), keys(""), context("seguros")).state.seq == seq + 1


def test_steps_just_under_limit_still_run() -> None:
    """A call two nodes short of the limit can still enter vida and llamar_vida."""
    state = begin().state.evolve(steps=MAX_STEPS_PER_CALL - 2)
    result = step(state, keys("1"), context("seguros"))
    assert result.state.steps == MAX_STEPS_PER_CALL
    assert isinstance(result.actions[-1], Dial)


def test_steps_over_limit_is_a_step_error() -> None:
    """A call that would pass MAX_STEPS_PER_CALL nodes raises StepError."""
    state = begin().state.evolve(steps=MAX_STEPS_PER_CALL - 1)
    with pytest.raises(StepError, match=f"passed {MAX_STEPS_PER_CALL} steps"):
        step(state, keys("1"), context("seguros"))


def test_long_bounded_loop_runs_in_one_webhook() -> None:
    """A valid loop of 123 nodes that never waits (a goto with limit 60) completes."""
    result = begin("long_loop")
    assert result.actions == (*(Say("Hola.", "Polly.Lucia", "es-ES"),) * 61, Hangup())
    state = result.state
    assert (state.node, state.waiting, dict(state.visits)) == (
        "fin",
        Waiting.ENDED,
        {"otra_vez": 61},
    )
    assert state.steps <= MAX_STEPS_PER_CALL


# --- State JSON ----------------------------------------------------------------------------------


def rich_state() -> CallState:
    """A state with every field away from its default, non-ASCII text included."""
    state = walk("every_kind", ["0", "1", "123456", DIAL_BUSY]).state
    return state.evolve(
        variables={**state.variables, "nota": 'Nochebuena: ñandú €, "comillas" y \\'},
        attempts=1,
        leave_reason="left",
        queued_at=1_790_000_000,
        direction=Direction.OUTBOUND,
    )


def plain_state() -> CallState:
    return CallState(call_sid="CA1", flow="f", version="v", node="n", waiting=Waiting.KEYS)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(plain_state, id="defaults"),
        pytest.param(lambda: begin().state, id="seguros-start"),
        pytest.param(lambda: walk("seguros", ["4", "1", POLICY]).state, id="seguros-dial"),
        pytest.param(lambda: walk("seguros", ["9", QUEUE_BRIDGED]).state, id="ended"),
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
    assert isinstance(again.direction, Direction)
    assert again.to_json() == text


def test_state_json_is_compact_utf8() -> None:
    """The JSON keeps non-ASCII text as is and stores waiting and direction by value."""
    text = rich_state().to_json()
    assert "ñandú" in text
    assert ": " not in text.replace("Nochebuena: ", "")
    data = json.loads(text)
    assert data["waiting"] == "queue"
    assert data["direction"] == "outbound"
    assert data["visits"] == {"volver": 1}


def test_state_json_carries_format_2() -> None:
    """The JSON names its format (2: call engine v2) and has no reply field any more."""
    data = json.loads(begin().state.to_json())
    assert data["format"] == 2
    assert "reply" not in data


def test_state_json_round_trip_state_still_steps() -> None:
    """A state read back from JSON takes the next event like the original."""
    state = walk("seguros", ["4"]).state
    again = CallState.from_json(state.to_json())
    ctx = context("seguros")
    assert step(again, keys("2"), ctx) == step(state, keys("2"), ctx)


V1_STATE = {
    "call_sid": SID,
    "flow": "seguros",
    "version": VERSION,
    "node": "menu_principal",
    "waiting": "keys",
    "seq": 1,
    "variables": {"caller": CALLER, "called": CALLED},
    "attempts": 0,
    "visits": {},
    "steps": 3,
    "leave_reason": "",
    "queued_at": 0,
    "reply": '<?xml version="1.0"?><Response><Say>Bienvenido</Say></Response>',
}
"""A state as call engine v1 stored it: no format, no direction, and the last reply."""


def test_state_from_json_reads_call_engine_v1_state() -> None:
    """A state stored before format 2 reads as inbound, ignores its reply, and still steps."""
    state = CallState.from_json(json.dumps(V1_STATE))
    assert state == begin().state
    assert state.direction is Direction.INBOUND
    assert step(state, keys("9"), context("seguros")).actions == AGENT


def test_state_from_json_defaults_missing_optional_fields() -> None:
    """Only call_sid, flow, version, node, waiting and seq are needed; the rest default."""
    required = ("call_sid", "flow", "version", "node", "waiting", "seq")
    data = {name: json.loads(plain_state().to_json())[name] for name in required}
    assert CallState.from_json(json.dumps(data)) == plain_state()


def test_state_from_json_ignores_unknown_fields() -> None:
    """Fields a newer release may add are ignored."""
    assert CallState.from_json(_with(format=3, mood="cheerful")) == plain_state()


def _good() -> dict[str, object]:
    data = json.loads(plain_state().to_json())
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
        pytest.param(_without("call_sid"), id="no-call-sid"),
        pytest.param(_without("flow"), id="no-flow"),
        pytest.param(_without("version"), id="no-version"),
        pytest.param(_without("node"), id="no-node"),
        pytest.param(_without("waiting"), id="no-waiting"),
        pytest.param(_without("seq"), id="no-seq"),
        pytest.param(_with(waiting="sleeping"), id="bad-waiting"),
        pytest.param(_with(waiting=None), id="null-waiting"),
        pytest.param(_with(seq="abc"), id="text-seq"),
        pytest.param(_with(seq=None), id="null-seq"),
        pytest.param(_with(steps=[1]), id="list-steps"),
        pytest.param(_with(variables=["a"]), id="list-variables"),
        pytest.param(_with(variables="x"), id="text-variables"),
        pytest.param(_with(visits={"volver": "dos"}), id="text-visit"),
        pytest.param(_with(visits=None), id="null-visits"),
        pytest.param(_with(direction="sideways"), id="bad-direction"),
        pytest.param(_with(direction=None), id="null-direction"),
        pytest.param(_with(attempts=True), id="bool-attempts"),
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


# --- Call events ---------------------------------------------------------------------------------


def test_call_events_seguros_walk_in_order() -> None:
    """A walk through the Spanish menu to a voicemail emits exactly these call events, step by
    step."""
    inputs: list[Input] = [
        "",
        "4",
        "1",
        "123",
        POLICY,
        DialEnded(result=DialResult.NO_ANSWER, duration=0),
        RecordingEnded(url=RECORDING_URL, duration=12),
    ]
    expected: list[tuple[CallEvent, ...]] = [
        (
            CallStarted(
                flow="seguros",
                version=VERSION,
                caller=CALLER,
                called=CALLED,
                direction=Direction.INBOUND,
            ),
            NodeEntered(node="horario", kind="hours"),
            HoursChecked(node="horario", status="open", holiday="", forced=False),
            NodeEntered(node="bienvenida", kind="say"),
            NodeEntered(node="menu_principal", kind="menu"),
        ),
        (NoInput(node="menu_principal", attempt=1),),
        (
            OptionChosen(node="menu_principal", key="4", target="automovil"),
            NodeEntered(node="automovil", kind="menu"),
        ),
        (
            OptionChosen(node="automovil", key="1", target="pedir_poliza"),
            NodeEntered(node="pedir_poliza", kind="input"),
        ),
        (InvalidInput(node="pedir_poliza", attempt=1, digits="123"),),
        (
            InputCollected(node="pedir_poliza", variable="numero_poliza", digits=POLICY),
            NodeEntered(node="parte", kind="say"),
            NodeEntered(node="llamar_partes", kind="dial"),
            DialStarted(node="llamar_partes", targets=("+34912345674",), record=True),
        ),
        (
            DialFinished(node="llamar_partes", result=DialResult.NO_ANSWER, duration=0),
            NodeEntered(node="buzon_partes", kind="record"),
        ),
        (
            RecordingMade(node="buzon_partes", url=RECORDING_URL, duration=12),
            NodeEntered(node="despedida", kind="hangup"),
            CallEnded(node="despedida", how=EndReason.HANGUP),
        ),
    ]
    assert [taken.events for taken in steps_of("seguros", inputs)] == expected


def test_call_events_seguros_agent_queue_in_order() -> None:
    """Key 9 to the agent queue and an agent's answer: joined, waited quietly, exited, ended."""
    inputs: list[Input] = [
        "9",
        QueueWaitTick(waited=30),
        QueueLeft(result=QueueResult.BRIDGED, waited=42),
    ]
    assert [taken.events for taken in steps_of("seguros", inputs)][1:] == [
        (
            OptionChosen(node="menu_principal", key="9", target="agente_aviso"),
            NodeEntered(node="agente_aviso", kind="say"),
            NodeEntered(node="agente", kind="enqueue"),
            QueueJoined(node="agente", queue="general-queue"),
        ),
        (),
        (
            QueueExited(node="agente", queue="general-queue", reason=QueueExit.AGENT, waited=42),
            CallEnded(node="agente", how=EndReason.AGENT),
        ),
    ]


def test_call_events_node_entered_for_every_node() -> None:
    """Every node entered is one NodeEntered, however many a single step runs through."""
    result = begin("long_loop")
    entered = [e for e in result.events if isinstance(e, NodeEntered)]
    assert len(entered) == result.state.steps == 123
    assert [e.kind for e in entered[:3]] == ["say", "goto", "say"]
    assert entered[-1] == NodeEntered(node="fin", kind="hangup")


def test_call_events_sensitive_input_masks_digits() -> None:
    """A sensitive input records one '*' per digit typed, right or wrong; the call keeps the
    digits."""
    ctx = context("sensitive")
    result = begin("sensitive")
    assert result.actions == (PIN,)
    wrong = step(result.state, keys("12"), ctx)
    assert wrong.actions == (lucia("PIN no válido."), PIN)
    assert wrong.events == (InvalidInput(node="pin", attempt=1, digits="**"),)
    stars = step(result.state, keys("12*#"), ctx)
    assert stars.events == (InvalidInput(node="pin", attempt=1, digits="****"),)
    too_long = step(result.state, keys("123456"), ctx)
    assert too_long.events == (InvalidInput(node="pin", attempt=1, digits="******"),)
    right = step(wrong.state, keys("4321"), ctx)
    assert right.events == (
        InputCollected(node="pin", variable="pin", digits="****"),
        NodeEntered(node="referencia", kind="input"),
    )
    assert right.state.variables["pin"] == "4321"
    assert "4321" not in json.dumps([to_dict(e) for e in (*wrong.events, *right.events)])


def test_call_events_no_input_and_invalid_input_count_attempts() -> None:
    """Silences and wrong keys are numbered together; the one past retries still is, then the
    call goes on to exhausted."""
    taken = steps_of("seguros", ["", "5", "", "#"])
    assert [t.events[0] for t in taken[1:]] == [
        NoInput(node="menu_principal", attempt=1),
        InvalidInput(node="menu_principal", attempt=2, digits="5"),
        NoInput(node="menu_principal", attempt=3),
        InvalidInput(node="menu_principal", attempt=4, digits="#"),
    ]
    assert taken[-1].events[1:] == (
        NodeEntered(node="agente_aviso", kind="say"),
        NodeEntered(node="agente", kind="enqueue"),
        QueueJoined(node="agente", queue="general-queue"),
    )
    again = step(taken[1].state, keys("4"), context("seguros"))
    assert again.events[0] == OptionChosen(node="menu_principal", key="4", target="automovil")
    assert steps_of("seguros", ["4", ""])[-1].events == (NoInput(node="automovil", attempt=1),)


@pytest.mark.parametrize(
    ("result", "duration", "then"),
    [
        pytest.param(
            DialResult.ANSWERED,
            95,
            (CallEnded(node="llamar_vida", how=EndReason.CONNECTED),),
            id="answered",
        ),
        pytest.param(
            DialResult.BUSY, 0, (NodeEntered(node="buzon_vida", kind="record"),), id="busy"
        ),
        pytest.param(
            DialResult.NO_ANSWER,
            0,
            (NodeEntered(node="buzon_vida", kind="record"),),
            id="no-answer",
        ),
        pytest.param(
            DialResult.FAILED, 0, (NodeEntered(node="buzon_vida", kind="record"),), id="failed"
        ),
        pytest.param(
            DialResult.CANCELED,
            0,
            (NodeEntered(node="buzon_vida", kind="record"),),
            id="canceled",
        ),
    ],
)
def test_call_events_dial_finished(
    result: DialResult, duration: int, then: tuple[CallEvent, ...]
) -> None:
    """A dial's end is one DialFinished with its result and talk time, then where the call went."""
    started = walk("seguros", ["1"])
    assert started.events[-1] == DialStarted(
        node="llamar_vida", targets=("+34912345671",), record=True
    )
    done = step(started.state, DialEnded(result=result, duration=duration), context("seguros"))
    assert done.events == (
        DialFinished(node="llamar_vida", result=result, duration=duration),
        *then,
    )


def test_call_events_dial_answered_goes_on_at_answered_node() -> None:
    """every_kind's answered dial goes on to its own node, and the call ends there by hangup."""
    done = walk("every_kind", ["2", DialEnded(result=DialResult.ANSWERED, duration=7)])
    assert done.events == (
        DialFinished(node="soporte", result=DialResult.ANSWERED, duration=7),
        NodeEntered(node="adios", kind="hangup"),
        CallEnded(node="adios", how=EndReason.HANGUP),
    )


def test_call_events_recording_made_only_when_recorded() -> None:
    """A voicemail with a recording is one RecordingMade; one with nothing recorded is none."""
    made = walk("seguros", ["1", DIAL_BUSY, RecordingEnded(url=RECORDING_URL, duration=30)])
    assert made.events[0] == RecordingMade(node="buzon_vida", url=RECORDING_URL, duration=30)
    empty = walk("seguros", ["1", DIAL_BUSY, NO_RECORDING])
    assert not any(isinstance(e, RecordingMade) for e in empty.events)
    assert empty.events[0] == NodeEntered(node="despedida", kind="hangup")


@pytest.mark.parametrize(
    ("name", "inputs", "last", "reason", "then"),
    [
        pytest.param(
            "seguros",
            ["9"],
            QueueLeft(result=QueueResult.BRIDGED, waited=42),
            QueueExit.AGENT,
            (CallEnded(node="agente", how=EndReason.AGENT),),
            id="agent",
        ),
        pytest.param(
            "seguros",
            ["9"],
            QueueLeft(result=QueueResult.HANGUP, waited=42),
            QueueExit.HUNG_UP,
            (CallEnded(node="agente", how=EndReason.CALLER_HUNG_UP),),
            id="hung-up",
        ),
        pytest.param(
            "seguros",
            ["9"],
            QueueLeft(result=QueueResult.REDIRECTED, waited=42),
            QueueExit.REDIRECTED,
            (CallEnded(node="agente", how=EndReason.REDIRECTED),),
            id="redirected",
        ),
        pytest.param(
            "seguros",
            ["9"],
            QueueLeft(result=QueueResult.FULL, waited=42),
            QueueExit.FULL,
            (
                NodeEntered(node="cola_llena", kind="say"),
                NodeEntered(node="buzon_general", kind="record"),
            ),
            id="full",
        ),
        pytest.param(
            "seguros",
            ["9"],
            QueueLeft(result=QueueResult.ERROR, waited=42),
            QueueExit.ERROR,
            (
                NodeEntered(node="cola_llena", kind="say"),
                NodeEntered(node="buzon_general", kind="record"),
            ),
            id="error",
        ),
        pytest.param(
            "seguros",
            ["9", QueueWaitTick(waited=600)],
            QueueLeft(result=QueueResult.LEAVE, waited=42),
            QueueExit.TIMED_OUT,
            (
                NodeEntered(node="espera_agotada", kind="say"),
                NodeEntered(node="buzon_general", kind="record"),
            ),
            id="timed-out",
        ),
        pytest.param(
            "seguros",
            ["9", QueueKeysPressed(digits="0")],
            QueueLeft(result=QueueResult.LEAVE, waited=42),
            QueueExit.LEFT,
            (NodeEntered(node="buzon_general", kind="record"),),
            id="seguros-left",
        ),
        pytest.param(
            "seguros",
            ["9", QueueKeysPressed(digits="1"), QueueKeysPressed(digits="1")],
            QueueLeft(result=QueueResult.LEAVE, waited=42),
            QueueExit.CALLBACK,
            (
                NodeEntered(node="despedida", kind="hangup"),
                CallEnded(node="despedida", how=EndReason.HANGUP),
            ),
            id="callback",
        ),
        pytest.param(
            "seguros",
            [
                "9",
                QueueKeysPressed(digits="1"),
                QueueKeysPressed(digits="2"),
                QueueKeysPressed(digits="612345678#"),
            ],
            QueueLeft(result=QueueResult.LEAVE, waited=42),
            QueueExit.CALLBACK,
            (
                NodeEntered(node="despedida", kind="hangup"),
                CallEnded(node="despedida", how=EndReason.HANGUP),
            ),
            id="callback-other-number",
        ),
        pytest.param(
            "every_kind",
            ["#", QueueKeysPressed(digits="*")],
            QueueLeft(result=QueueResult.LEAVE, waited=42),
            QueueExit.LEFT,
            (NodeEntered(node="buzon", kind="record"),),
            id="left",
        ),
    ],
)
def test_call_events_queue_exited_with_reason(
    name: str,
    inputs: list[Input],
    last: QueueLeft,
    reason: QueueExit,
    then: tuple[CallEvent, ...],
) -> None:
    """Leaving a queue is one QueueExited with its reason and wait, then where the call went."""
    queue, node = ("general-queue", "agente") if name == "seguros" else ("soporte", "cola")
    joined = walk(name, inputs[:1])
    assert joined.events[-1] == QueueJoined(node=node, queue=queue)
    done = walk(name, [*inputs, last])
    assert done.events == (
        QueueExited(node=node, queue=queue, reason=reason, waited=42),
        *then,
    )
    assert done.state.queued_at == 0


def test_call_events_queue_wait_counts_from_joining() -> None:
    """The wait QueueExited reports is the longer of the queue's count and the time since the
    call joined."""
    state = walk("seguros", ["9"]).state
    later = context("seguros", OPEN + dt.timedelta(seconds=75))
    done = step(state, QueueLeft(result=QueueResult.BRIDGED, waited=3), later)
    assert done.events[0] == QueueExited(
        node="agente", queue="general-queue", reason=QueueExit.AGENT, waited=75
    )
    done = step(state, QueueLeft(result=QueueResult.BRIDGED, waited=90), later)
    assert done.events[0] == QueueExited(
        node="agente", queue="general-queue", reason=QueueExit.AGENT, waited=90
    )


@pytest.mark.parametrize(
    ("inputs", "how", "node"),
    [
        pytest.param(["1", DIAL_BUSY, NO_RECORDING], EndReason.HANGUP, "despedida", id="hangup"),
        pytest.param(["1", DIAL_ANSWERED], EndReason.CONNECTED, "llamar_vida", id="connected"),
        pytest.param(["9", QUEUE_BRIDGED], EndReason.AGENT, "agente", id="agent"),
        pytest.param(
            ["9", QueueLeft(result=QueueResult.HANGUP)],
            EndReason.CALLER_HUNG_UP,
            "agente",
            id="caller-hung-up",
        ),
        pytest.param(
            ["9", QueueLeft(result=QueueResult.REDIRECTED)],
            EndReason.REDIRECTED,
            "agente",
            id="redirected",
        ),
    ],
)
def test_call_events_call_ended_says_how(inputs: list[Input], how: EndReason, node: str) -> None:
    """The step that ends a call ends its events with one CallEnded saying how and where."""
    taken = steps_of("seguros", inputs)
    assert taken[-1].state.waiting is Waiting.ENDED
    assert taken[-1].events[-1] == CallEnded(node=node, how=how)
    ended = [e for t in taken for e in t.events if isinstance(e, CallEnded)]
    assert len(ended) == 1


def test_call_events_call_ended_by_error() -> None:
    """A call that cannot go on (here its fallback fails too: out of steps) ends with a
    CallEnded saying error."""
    before = walk("seguros", ["9"]).state.evolve(steps=MAX_STEPS_PER_CALL)
    result = ENGINE.recover(before, context("seguros"), StepError("boom"))
    assert result.events[-1] == CallEnded(node="agente", how=EndReason.ERROR)


SAMPLE_EVENTS: list[CallEvent] = [
    CallStarted(
        flow="seguros", version="v1", caller=CALLER, called=CALLED, direction=Direction.OUTBOUND
    ),
    NodeEntered(node="menu_principal", kind="menu"),
    HoursChecked(node="horario", status="holiday", holiday="Navidad", forced=False),
    OptionChosen(node="menu_principal", key="9", target="agente_aviso"),
    InputCollected(node="pedir_poliza", variable="numero_poliza", digits=POLICY),
    NoInput(node="menu_principal", attempt=2),
    InvalidInput(node="pin", attempt=1, digits="**"),
    DialStarted(node="soporte", targets=("+34911111111", "client:agente_ana"), record=False),
    DialFinished(node="soporte", result=DialResult.NO_ANSWER, duration=0),
    RecordingMade(node="buzon", url=RECORDING_URL, duration=12),
    QueueJoined(node="agente", queue="general-queue"),
    QueueExited(node="agente", queue="general-queue", reason=QueueExit.TIMED_OUT, waited=600),
    FallbackTaken(node="llamar_vida", error="StepError: ñandú", target="agente"),
    FallbackTaken(node="agente", error="StepError: boom", target=None),
    CallRecovered(node="agente", reason="state_lost"),
    CallEnded(node="agente", how=EndReason.CALLER_HUNG_UP),
    CallbackRequested(node="agente", queue="general-queue", number="+34612345678"),
    CaseMatched(node="segun_prefijo", case=2, target="movil"),
]


def test_call_events_samples_cover_every_type() -> None:
    """The round-trip samples have one event of every call event type."""
    assert {type(e) for e in SAMPLE_EVENTS} == set(EVENT_TYPES.values())
    assert set(EVENT_TYPES) == {kind.type for kind in get_args(CallEvent)}


@pytest.mark.parametrize("event", SAMPLE_EVENTS, ids=lambda e: f"{e.type}")
def test_call_events_dict_round_trip(event: CallEvent) -> None:
    """to_dict gives plain JSON (enums as text, tuples as lists) that from_dict reads back."""
    data = to_dict(event)
    assert data["type"] == event.type
    text = json.dumps(data, ensure_ascii=False)
    again = from_dict(json.loads(text))
    assert again == event
    assert type(again) is type(event)
    for name in event.__struct_fields__:
        assert type(getattr(again, name)) is type(getattr(event, name)), name


def test_call_events_dict_form() -> None:
    """The JSON form of a dial's start and a queue's exit, field by field."""
    assert to_dict(SAMPLE_EVENTS[7]) == {
        "type": "dial_started",
        "node": "soporte",
        "targets": ["+34911111111", "client:agente_ana"],
        "record": False,
    }
    assert json.loads(json.dumps(to_dict(SAMPLE_EVENTS[11]))) == {
        "type": "queue_exited",
        "node": "agente",
        "queue": "general-queue",
        "reason": "timed_out",
        "waited": 600,
    }


def test_call_events_from_dict_ignores_unknown_fields() -> None:
    """A field from a newer release is ignored."""
    data = {**to_dict(SAMPLE_EVENTS[1]), "mood": "cheerful"}
    assert from_dict(data) == SAMPLE_EVENTS[1]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"type": "party_started"}, id="unknown-type"),
        pytest.param({"node": "menu"}, id="no-type"),
        pytest.param({"type": "node_entered", "node": "menu"}, id="missing-field"),
        pytest.param({"type": "no_input", "node": "menu", "attempt": "1"}, id="text-number"),
        pytest.param({"type": "no_input", "node": "menu", "attempt": True}, id="bool-number"),
        pytest.param(
            {"type": "dial_finished", "node": "d", "result": "ringing", "duration": 0},
            id="bad-enum",
        ),
        pytest.param(
            {"type": "dial_started", "node": "d", "targets": "+34911111111", "record": True},
            id="text-targets",
        ),
    ],
)
def test_call_events_from_dict_bad_data_is_bad_call_event(data: dict[str, object]) -> None:
    """A stored call event that does not match its type raises BadCallEvent."""
    with pytest.raises(BadCallEvent):
        from_dict(data)


def test_call_events_step_record_round_trip() -> None:
    """A step's record, with its events, reads back equal from its JSON."""
    record = StepRecord(
        id="0f1e2d3c",
        call_sid=SID,
        revision=3,
        seq=2,
        at=1_790_000_000.125,
        flow="seguros",
        version=VERSION,
        events=tuple(SAMPLE_EVENTS),
    )
    assert StepRecord.from_json(record.to_json()) == record


# --- CallEngine (flowpbx.engine.core) ------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param([], id="at-menu"),
        pytest.param(["1"], id="at-dial"),
        pytest.param(["4", "1"], id="at-input"),
        pytest.param(["1", DIAL_BUSY], id="at-record"),
    ],
)
def test_recover_apologises_and_goes_to_the_welcome(inputs: list[Input]) -> None:
    """After a failure the caller hears the flow's apology, then goes to on_error.next
    (bienvenida, the recording notice) and on to the main menu, its retries counted afresh."""
    before = walk("seguros", inputs).state
    error = StepError("boom")
    result = ENGINE.recover(before.evolve(attempts=2), context("seguros"), error)
    assert result.actions == RECOVERED
    state = result.state
    assert (state.node, state.waiting, state.attempts) == ("menu_principal", Waiting.KEYS, 0)
    assert state.seq == before.seq + 1
    assert result.failure is error
    assert result.events == (
        FallbackTaken(node=before.node, error="StepError: boom", target="bienvenida"),
        NodeEntered(node="bienvenida", kind="say"),
        NodeEntered(node="menu_principal", kind="menu"),
    )


def test_recover_in_the_queue_goes_to_the_welcome_not_the_queue() -> None:
    """A failure while queued no longer goes back to the queue: the caller hears the recording
    notice again before any recorded agent call."""
    before = walk("seguros", ["9"]).state
    result = ENGINE.recover(before, context("seguros"), StepError("boom"))
    assert result.actions == RECOVERED
    assert (result.state.node, result.state.waiting) == ("menu_principal", Waiting.KEYS)
    assert not any(isinstance(e, QueueJoined) for e in result.events)


def test_recover_at_fallback_node_hangs_up() -> None:
    """A failure at the fallback node itself gets a plain apology and a hangup, no promise."""
    before = begin().state.evolve(node="bienvenida")
    result = ENGINE.recover(before, context("seguros"), StepError("boom"))
    assert result.actions == (PLAIN_APOLOGY, Hangup())
    assert (result.state.node, result.state.waiting, result.state.seq) == (
        "bienvenida",
        Waiting.ENDED,
        before.seq + 1,
    )
    assert result.events == (
        FallbackTaken(node="bienvenida", error="StepError: boom", target=None),
        CallEnded(node="bienvenida", how=EndReason.ERROR),
    )


def test_recover_when_fallback_fails_too_hangs_up() -> None:
    """If going to the fallback fails (here: out of steps) the apology and a hangup remain."""
    before = begin().state
    result = ENGINE.recover(
        before.evolve(steps=MAX_STEPS_PER_CALL), context("seguros"), StepError("boom")
    )
    assert result.actions == (PLAIN_APOLOGY, Hangup())
    assert result.state.waiting is Waiting.ENDED
    assert result.events == (
        FallbackTaken(node="menu_principal", error="StepError: boom", target=None),
        CallEnded(node="menu_principal", how=EndReason.ERROR),
    )


def test_recover_every_kind_goes_to_goodbye_node() -> None:
    """every_kind's on_error.next is its hangup node: its own apology, then its goodbye."""
    before = begin("every_kind").state
    result = ENGINE.recover(before, context("every_kind"), StepError("boom"))
    assert result.actions == (conchita("Perdone, ha habido un error."), *EK_GOODBYE)
    assert (result.state.node, result.state.waiting) == ("adios", Waiting.ENDED)
    assert result.events[-1] == CallEnded(node="adios", how=EndReason.HANGUP)


def test_recover_without_fallback_node_hangs_up() -> None:
    """A flow with no on_error: the default Spanish apology, then a hangup."""
    before = begin("no_fallback").state
    result = ENGINE.recover(before, context("no_fallback"), StepError("boom"))
    assert result.actions == (PLAIN_APOLOGY, Hangup())
    assert (result.state.node, result.state.waiting, result.state.seq) == (
        "menu",
        Waiting.ENDED,
        2,
    )


def test_goodbye_is_the_flows_plain_apology_and_a_hangup() -> None:
    """goodbye promises nothing (not the on_error text): a plain apology in the flow's voice."""
    assert goodbye(flow("seguros")) == (PLAIN_APOLOGY, Hangup())
    plain = PLAIN_APOLOGY.text
    assert goodbye(flow("every_kind")) == (conchita(plain), Hangup())


def test_engine_start_is_the_interpreters_start() -> None:
    """A flow that starts well starts the same through the engine."""
    ctx = context("seguros")
    assert ENGINE.start(new_call(), ctx) == start(new_call(), ctx)


def test_engine_start_recovers_a_failing_start() -> None:
    """A flow that fails at once still answers its apology and goes on at its fallback."""
    values = {k: v for k, v in flow("every_kind").config.items() if v is not None}
    ctx = context("every_kind", values=values)
    result = ENGINE.start(new_call("+34910000000"), ctx)
    assert result.actions == (conchita("Perdone, ha habido un error."), *EK_GOODBYE)
    assert (result.state.node, result.state.waiting, result.state.seq) == (
        "adios",
        Waiting.ENDED,
        1,
    )
    assert isinstance(result.failure, StepError)
    assert "MUSICA" in str(result.failure)
    taken = [e for e in result.events if isinstance(e, FallbackTaken)]
    assert [e.target for e in taken] == ["adios"]
    assert result.events[-1] == CallEnded(node="adios", how=EndReason.HANGUP)
    # History still learns who called, and where the flow failed.
    assert isinstance(result.events[0], CallStarted)
    assert result.events[0].caller == "+34910000000"
    assert taken[0].node == "musica"


@pytest.mark.parametrize(
    ("inputs", "event"),
    [
        pytest.param(["1"], keys("1"), id="keys-at-dial"),
        pytest.param([], DIAL_BUSY, id="dial-at-menu"),
        pytest.param([], QueueWaitTick(waited=0), id="tick-at-menu"),
        pytest.param([], QueueKeysPressed(digits="*"), id="queue-keys-at-menu"),
        pytest.param(["1", DIAL_ANSWERED], keys("1"), id="keys-after-end"),
        pytest.param(["9", QUEUE_BRIDGED], QueueWaitTick(waited=0), id="tick-after-end"),
    ],
)
def test_engine_step_illegal_event_returns_none(inputs: list[Input], event: Event) -> None:
    """An event the call cannot take moves nothing: the engine answers None."""
    state = walk("seguros", inputs).state
    assert ENGINE.step(state, event, context("seguros")) is None


def test_engine_step_is_the_interpreters_step() -> None:
    """A step that goes well is the same through the engine."""
    state = begin().state
    ctx = context("seguros")
    assert ENGINE.step(state, keys("4"), ctx) == step(state, keys("4"), ctx)


def test_engine_step_recovers_a_failing_step() -> None:
    """A step that fails answers the apology and the fallback, and carries the failure."""
    values = {k: v for k, v in config("seguros").items() if k != "VIDA_NUMBER"}
    ctx = context("seguros", values=values)
    state = start(new_call(), ctx).state
    result = ENGINE.step(state, keys("1"), ctx)
    assert result is not None
    assert result.actions == RECOVERED
    assert (result.state.node, result.state.waiting, result.state.seq) == (
        "menu_principal",
        Waiting.KEYS,
        2,
    )
    assert isinstance(result.failure, StepError)
    error = "StepError: config 'VIDA_NUMBER' has no value; set the environment variable VIDA_NUMBER"
    # What the step did before it failed is kept; the fallback names the node that failed.
    assert result.events == (
        OptionChosen(node="menu_principal", key="1", target="vida"),
        NodeEntered(node="vida", kind="say"),
        NodeEntered(node="llamar_vida", kind="dial"),
        FallbackTaken(node="llamar_vida", error=error, target="bienvenida"),
        NodeEntered(node="bienvenida", kind="say"),
        NodeEntered(node="menu_principal", kind="menu"),
    )


def test_engine_step_queue_error_is_not_a_failure() -> None:
    """A queue's error result is no longer recovered with an apology: the call goes on to full."""
    state = walk("seguros", ["9"]).state
    result = ENGINE.step(state, QueueLeft(result=QueueResult.ERROR), context("seguros"))
    assert result is not None
    assert result.actions == QUEUE_FULL
    assert result.failure is None
    assert not any(isinstance(e, FallbackTaken) for e in result.events)


def test_engine_step_failing_queue_wait_holds_on() -> None:
    """A wait tick that fails keeps the caller in the queue with a pause, the state unmoved."""
    state = walk("seguros", ["9"]).state
    values = {k: v for k, v in config("seguros").items() if k != "HOLD_MUSIC_URL"}
    result = ENGINE.step(state, QueueWaitTick(waited=0), context("seguros", values=values))
    assert result is not None
    assert result.actions == HOLD_ON == (Pause(5),)
    assert result.state == state
    assert result.events == ()
    assert isinstance(result.failure, StepError)


def test_engine_resume_lost_state_apologises_and_goes_to_fallback() -> None:
    """A webhook for a call with no state: the apology, then the fallback, one step on."""
    result = ENGINE.resume(
        new_call(), keys("1"), seq=4, ctx=context("seguros"), reason="state_lost"
    )
    assert result.actions == RECOVERED
    state = result.state
    assert (state.call_sid, state.node, state.waiting, state.seq) == (
        SID,
        "menu_principal",
        Waiting.KEYS,
        5,
    )
    assert dict(state.variables) == {"caller": CALLER, "called": CALLED}
    assert result.failure is None
    assert result.events == (
        CallRecovered(node="bienvenida", reason="state_lost"),
        FallbackTaken(node="bienvenida", error="state lost", target="bienvenida"),
        NodeEntered(node="bienvenida", kind="say"),
        NodeEntered(node="menu_principal", kind="menu"),
    )


def test_engine_resume_without_fallback_starts_over_at_entry() -> None:
    """A flow with no on_error.next takes a lost call up at its entry, after the apology."""
    result = ENGINE.resume(
        new_call(), DIAL_BUSY, seq=2, ctx=context("no_fallback"), reason="state_corrupt"
    )
    assert result.actions == (PLAIN_APOLOGY, Gather((lucia("Pulse 1."),), 5, 1, ""))
    assert (result.state.node, result.state.waiting, result.state.seq) == (
        "menu",
        Waiting.KEYS,
        3,
    )
    assert result.events[:2] == (
        CallRecovered(node="menu", reason="state_corrupt"),
        FallbackTaken(node="menu", error="state corrupt", target="menu"),
    )


@pytest.mark.parametrize(
    ("result", "how"),
    [
        pytest.param(QueueResult.BRIDGED, EndReason.AGENT, id="bridged"),
        pytest.param(QueueResult.REDIRECTED, EndReason.REDIRECTED, id="redirected"),
        pytest.param(QueueResult.HANGUP, EndReason.CALLER_HUNG_UP, id="hangup"),
    ],
)
def test_engine_resume_after_queue_is_over_ends_quietly(
    result: QueueResult, how: EndReason
) -> None:
    """A lost call whose queue is over for good hears nothing and goes nowhere."""
    done = ENGINE.resume(
        new_call(), QueueLeft(result=result), seq=3, ctx=context("seguros"), reason="state_lost"
    )
    assert done.actions == ()
    assert (done.state.waiting, done.state.seq) == (Waiting.ENDED, 4)
    assert done.events == (
        CallRecovered(node="horario", reason="state_lost"),
        CallEnded(node="horario", how=how),
    )


def test_engine_resume_when_fallback_fails_says_goodbye() -> None:
    """A lost call whose fallback fails too hears the plain apology and is hung up."""
    seguros = flow("seguros")
    variant = dataclasses.replace(
        seguros, on_error=dataclasses.replace(seguros.on_error, next="llamar_vida")
    )
    values = {k: v for k, v in config("seguros").items() if k != "VIDA_NUMBER"}
    ctx = context("seguros", values=values, of=variant)
    result = ENGINE.resume(new_call(), keys("1"), seq=4, ctx=ctx, reason="state_lost")
    assert result.actions == (PLAIN_APOLOGY, Hangup())
    assert (result.state.node, result.state.waiting, result.state.seq) == (
        "llamar_vida",
        Waiting.ENDED,
        5,
    )
    assert isinstance(result.failure, StepError)
    assert result.events[-2:] == (
        FallbackTaken(node="llamar_vida", error=f"StepError: {result.failure}", target=None),
        CallEnded(node="llamar_vida", how=EndReason.ERROR),
    )


def test_engine_adopt_keeps_a_queued_caller_waiting() -> None:
    """A queued caller whose state was lost is taken up at their enqueue node, with hold music,
    waiting since the queue says."""
    ctx = context("seguros")
    tick = QueueWaitTick(waited=100)
    result = ENGINE.adopt(new_call(), "agente", seq=3, tick=tick, ctx=ctx, reason="state_lost")
    assert result.actions == (HOLD,)
    state = result.state
    assert (state.node, state.waiting, state.seq) == ("agente", Waiting.QUEUE, 3)
    assert state.queued_at == int(OPEN.timestamp()) - 100
    assert result.events == (CallRecovered(node="agente", reason="state_lost"),)
    assert result.failure is None
    done = step(state, QUEUE_BRIDGED, ctx)
    assert done.actions == (Hangup(),)
    assert done.events[0] == QueueExited(
        node="agente", queue="general-queue", reason=QueueExit.AGENT, waited=100
    )


def test_engine_adopt_past_max_wait_leaves_as_timed_out() -> None:
    """An adopted caller who has already waited max_wait leaves, then goes to the timed_out node."""
    ctx = context("seguros")
    tick = QueueWaitTick(waited=600)
    result = ENGINE.adopt(new_call(), "agente", seq=3, tick=tick, ctx=ctx, reason="state_corrupt")
    assert result.actions == (Leave(),)
    assert result.state.leave_reason == "timed_out"
    assert step(result.state, QUEUE_LEAVE, ctx).actions == WAIT_OVER


def test_engine_adopt_with_a_view_announces_the_place() -> None:
    """An adopted caller whose place the queue engine knows hears it (nothing says they heard
    it before), then the music, and the announcement's time is kept."""
    ctx = context("seguros")
    tick = QueueWaitTick(waited=30, view=QueueView(position=2, wait=75))
    result = ENGINE.adopt(new_call(), "agente", seq=3, tick=tick, ctx=ctx, reason="state_lost")
    announced = (
        lucia(
            "Usted es el número 2 en la cola. "
            "El tiempo estimado de espera es de aproximadamente un minuto."
        ),
        lucia(
            "Si prefiere que le llamemos sin perder su turno, pulse 1. "
            "Para salir de la cola, pulse 0."
        ),
        Play(HOLD_MUSIC),
    )
    assert result.actions == (Gather(announced, 1, 1, "", Route.QUEUE_KEY),)
    assert result.state.announced_at == int(OPEN.timestamp())
    assert result.events == (CallRecovered(node="agente", reason="state_lost"),)


def test_engine_adopt_with_leave_key_gathers() -> None:
    """An adopted caller in a queue with a leave key hears the hold music inside a gather."""
    tick = QueueWaitTick(waited=0)
    result = ENGINE.adopt(
        new_call(), "cola", seq=2, tick=tick, ctx=context("every_kind"), reason="state_lost"
    )
    assert result.actions == (EK_HOLD,)
    assert (result.state.node, result.state.waiting) == ("cola", Waiting.QUEUE)


@pytest.mark.parametrize("node", ["menu_principal", "gone", ""])
def test_engine_adopt_without_an_enqueue_node_holds_on(node: str) -> None:
    """A wait webhook naming no enqueue node of the flow: the caller holds on, nothing kept."""
    tick = QueueWaitTick(waited=10)
    result = ENGINE.adopt(
        new_call(), node, seq=3, tick=tick, ctx=context("seguros"), reason="state_lost"
    )
    assert result.actions == HOLD_ON
    assert result.state.waiting is Waiting.ENDED
    assert result.events == ()


def test_engine_adopt_failing_hold_music_holds_on() -> None:
    """An adopted caller whose hold music cannot be found holds on, and the failure is kept."""
    values = {k: v for k, v in config("seguros").items() if k != "HOLD_MUSIC_URL"}
    ctx = context("seguros", values=values)
    tick = QueueWaitTick(waited=0)
    result = ENGINE.adopt(new_call(), "agente", seq=3, tick=tick, ctx=ctx, reason="state_lost")
    assert result.actions == HOLD_ON
    assert result.state.waiting is Waiting.QUEUE
    assert result.events == (CallRecovered(node="agente", reason="state_lost"),)
    assert isinstance(result.failure, StepError)


@pytest.mark.parametrize(
    ("now", "override", "expected"),
    [
        pytest.param(
            OPEN,
            None,
            HoursChecked(node="horario", status="open", holiday="", forced=False),
            id="open",
        ),
        pytest.param(
            madrid(2026, 11, 24, 21),
            None,
            HoursChecked(node="horario", status="closed", holiday="", forced=False),
            id="night",
        ),
        pytest.param(
            madrid(2026, 12, 25, 10),
            None,
            HoursChecked(node="horario", status="holiday", holiday="Navidad", forced=False),
            id="christmas",
        ),
        pytest.param(
            madrid(2026, 12, 24, 10),
            None,
            HoursChecked(node="horario", status="open", holiday="Nochebuena", forced=False),
            id="christmas-eve-morning",
        ),
        pytest.param(
            madrid(2026, 12, 25, 10),
            HoursStatus.OPEN,
            HoursChecked(node="horario", status="open", holiday="Navidad", forced=True),
            id="switched-open",
        ),
    ],
)
def test_hours_checked_event_tells_night_from_holiday(
    now: dt.datetime, override: HoursStatus | None, expected: HoursChecked
) -> None:
    """The hours node records what it decided, which holiday it was, and whether the operator's
    day/night switch decided instead of the clock."""
    ctx = Context(
        flow=flow("seguros"),
        version=VERSION,
        config=config("seguros"),
        now=now,
        hours_override=override,
    )
    events = start(new_call(), ctx).events
    assert [e for e in events if isinstance(e, HoursChecked)] == [expected]
