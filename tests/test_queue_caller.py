"""What a caller waiting in a queue hears and can do, on the shipped flows/seguros.yaml: their
place and expected wait now and then, the keys offered, a full queue, the longest wait, asking
to be called back (confirming their own number or typing another), and leaving the queue.

Pure interpreter tests: the queue engine's view of the caller's place comes in with each wait
tick (`QueueWaitTick.view`), the clock with the context; no HTTP, no store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowpbx.dialing.rules import Destinations
from flowpbx.engine.actions import (
    Action,
    Gather,
    Hangup,
    Leave,
    Play,
    Record,
    Redirect,
    Route,
    Say,
)
from flowpbx.engine.call_events import (
    CallbackRequested,
    CallEnded,
    EndReason,
    NodeEntered,
    QueueExit,
    QueueExited,
)
from flowpbx.engine.events import (
    Event,
    KeysPressed,
    NewCall,
    QueueKeysPressed,
    QueueLeft,
    QueueResult,
    QueueView,
    QueueWaitTick,
)
from flowpbx.engine.interpreter import Context, Step, start, step
from flowpbx.engine.state import CallState, StateError, Waiting
from flowpbx.language.flow import EnqueueNode, Flow
from flowpbx.language.loader import load_flow

ROOT = Path(__file__).resolve().parents[1]
MADRID = ZoneInfo("Europe/Madrid")
JOINED = dt.datetime(2026, 11, 24, 10, 0, tzinfo=MADRID).astimezone(dt.UTC)
"""A Tuesday at 10:00 in Madrid (open): the caller presses 9 and joins the queue then."""
SID = "CA" + "0123456789abcdef" * 2
CALLER = "+34600111234"
CALLED = "+34910000000"
HOLD_MUSIC = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"

Actions = tuple[Action, ...]


def lucia(text: str) -> Say:
    return Say(text, "Polly.Lucia", "es-ES")


MUSIC = Play(HOLD_MUSIC)
OFFER = lucia(
    "Si prefiere que le llamemos sin perder su turno, pulse 1. Para salir de la cola, pulse 0."
)
THIRD_IN_4_MINUTES = lucia(
    "Usted es el número 3 en la cola. El tiempo estimado de espera es de unos 4 minutos."
)
SECOND_IN_A_MINUTE = lucia(
    "Usted es el número 2 en la cola. El tiempo estimado de espera es de aproximadamente un minuto."
)
FIRST_NO_AGENTS = lucia(
    "Usted es el primero en la cola. En este momento no hay agentes atendiendo; "
    "le atenderemos en cuanto haya uno disponible."
)
CONFIRM = lucia(
    "Le llamaremos al número terminado en 1 2 3 4. Para confirmarlo, pulse 1. "
    "Para usar otro número, pulse 2."
)
ASK_NUMBER = lucia(
    "Marque el número en el que quiere que le llamemos, seguido de la tecla almohadilla."
)
BAD_NUMBER = lucia("Ese número no es válido.")
UNCLEAR = lucia("No hemos recibido ninguna opción válida.")
BACK_TO_THE_MUSIC = Redirect(Route.QUEUE_WAIT, "seguros", "agente")
GENERAL_VOICEMAIL: Actions = (
    lucia(
        "Si lo desea, deje su nombre, su teléfono y su mensaje después de la señal, "
        "y le llamaremos."
    ),
    Record(120, 5, True, "#", False),
)
COLA_LLENA = lucia(
    "Lo sentimos, en este momento hay demasiadas personas esperando y no podemos atenderle. "
    "Puede dejarnos un mensaje y le llamaremos lo antes posible."
)
ESPERA_AGOTADA = lucia(
    "Lamentamos la espera. Todos nuestros agentes siguen ocupados. "
    "Puede dejarnos un mensaje y le llamaremos lo antes posible."
)
GOODBYE: Actions = (lucia("Gracias por llamar a Seguros. Adiós."), Hangup())


def booked(last_four: str) -> Say:
    return lucia(
        f"Gracias. Le llamaremos al número terminado en {last_four} cuando llegue su turno. "
        "Ya puede colgar."
    )


def on_hold(*prompts: Say | Play) -> Gather:
    """What seguros' queue plays: the prompts inside a one-key gather for its two keys."""
    return Gather(tuple(prompts), 1, 1, "", Route.QUEUE_KEY)


CONFIRM_GATHER = Gather((CONFIRM,), 8, 1, "", Route.QUEUE_KEY)
"""The confirmation: one key, taken at once (no # to end it), 8 s to press it."""
ASK_NUMBER_GATHER = Gather((ASK_NUMBER,), 8, None, "#", Route.QUEUE_KEY)
"""Asking for another number: any number of digits, ended by #, 8 s between keys."""


# --- The flow, the clock and the call ---------------------------------------------------------


@cache
def seguros() -> Flow:
    return load_flow(ROOT / "flows" / "seguros.yaml")


def context(seconds: int = 0, *, of: Flow | None = None) -> Context:
    """seguros (or a variant), `seconds` after the caller joined the queue."""
    flow = seguros() if of is None else of
    config = {k: v for k, v in flow.config.items() if v is not None}
    return Context(
        flow=flow,
        version="v1",
        config=config,
        now=JOINED + dt.timedelta(seconds=seconds),
    )


def at(seconds: int) -> int:
    """The Unix time `seconds` after the caller joined."""
    return int(JOINED.timestamp()) + seconds


def queued(caller: str = CALLER) -> CallState:
    """A caller who pressed 9 and now waits in general-queue (at node agente)."""
    call = NewCall(call_sid=SID, caller=caller, called=CALLED)
    started = start(call, context())
    state = step(started.state, KeysPressed(digits="9"), context()).state
    assert (state.node, state.waiting, state.seq) == ("agente", Waiting.QUEUE, 2)
    assert (state.queued_at, state.announced_at, state.queue_phase) == (at(0), 0, "")
    return state


def tick(waited: int, position: int | None = None, wait: int | None = None) -> QueueWaitTick:
    """A wait request `waited` seconds in; with a position, the queue engine's view."""
    if position is None:
        return QueueWaitTick(waited=waited)
    return QueueWaitTick(waited=waited, view=QueueView(position=position, wait=wait))


def keys(digits: str) -> QueueKeysPressed:
    return QueueKeysPressed(digits=digits)


def run(state: CallState, events: Sequence[tuple[int, Event]], *, of: Flow | None = None) -> Step:
    """Each event at its second after joining; the last step."""
    assert events
    taken: Step | None = None
    for seconds, event in events:
        taken = step(state, event, context(seconds, of=of))
        state = taken.state
    assert taken is not None
    return taken


LEAVE = QueueLeft(result=QueueResult.LEAVE, waited=0)


# --- Announcements ------------------------------------------------------------------------------


def test_first_wait_announces_place_wait_and_keys() -> None:
    """The first wait request with the queue engine's view: the caller's place and expected
    wait, the keys they may press (the callback first), then the music, all inside a gather
    for those keys; when it was said is kept, nothing else moves."""
    state = queued()
    result = step(state, tick(5, position=3, wait=240), context(5))
    assert result.actions == (on_hold(THIRD_IN_4_MINUTES, OFFER, MUSIC),)
    assert result.state == state.evolve(announced_at=at(5))
    assert result.state.seq == state.seq
    assert result.events == ()


@pytest.mark.parametrize("later", [1, 30, 59])
def test_no_announcement_again_before_announce_every(later: int) -> None:
    """Within announce_every (60 s) of the last announcement the caller hears the music only,
    whatever the queue engine says, and the time of the last announcement stays."""
    announced = step(queued(), tick(5, position=3, wait=240), context(5)).state
    result = step(announced, tick(5 + later, position=2, wait=75), context(5 + later))
    assert result.actions == (on_hold(MUSIC),)
    assert result.state == announced


@pytest.mark.parametrize("later", [60, 61, 150])
def test_announcement_again_once_announce_every_has_passed(later: int) -> None:
    """From announce_every (60 s) after the last announcement, the caller hears their new
    place and wait, and that is the new last announcement."""
    announced = step(queued(), tick(5, position=3, wait=240), context(5)).state
    result = step(announced, tick(5 + later, position=2, wait=75), context(5 + later))
    assert result.actions == (on_hold(SECOND_IN_A_MINUTE, OFFER, MUSIC),)
    assert result.state.announced_at == at(5 + later)


def test_announcements_follow_a_whole_wait() -> None:
    """A caller moving up the queue over four minutes hears it at 0, 60 and 120 s after
    joining, not at the requests in between."""
    state = queued()
    heard = []
    for seconds, position, wait in [(0, 3, 240), (40, 3, 200), (60, 2, 75), (100, 2, 40)]:
        result = step(state, tick(seconds, position, wait), context(seconds))
        state = result.state
        heard.append(result.actions)
    result = step(state, tick(120, 1, 0), context(120))
    heard.append(result.actions)
    first = lucia(
        "Usted es el primero en la cola. El tiempo estimado de espera es de menos de un minuto."
    )
    assert heard == [
        (on_hold(THIRD_IN_4_MINUTES, OFFER, MUSIC),),
        (on_hold(MUSIC),),
        (on_hold(SECOND_IN_A_MINUTE, OFFER, MUSIC),),
        (on_hold(MUSIC),),
        (on_hold(first, OFFER, MUSIC),),
    ]
    assert result.state.announced_at == at(120)


def test_no_agents_serving_is_said_instead_of_a_wait() -> None:
    """With no agent serving the queue (no estimate) the caller is told so, not given a
    number nobody could keep."""
    result = step(queued(), tick(5, position=1, wait=None), context(5))
    assert result.actions == (on_hold(FIRST_NO_AGENTS, OFFER, MUSIC),)
    assert result.state.announced_at == at(5)


def test_without_the_queue_engine_music_only_and_nothing_marked_as_said() -> None:
    """A wait request without the queue engine's view (none, or a store that did not answer)
    plays the music only and does not count as an announcement: the next view is said."""
    state = queued()
    quiet = step(state, tick(30), context(30))
    assert quiet.actions == (on_hold(MUSIC),)
    assert quiet.state == state
    result = step(quiet.state, tick(40, position=3, wait=240), context(40))
    assert result.actions == (on_hold(THIRD_IN_4_MINUTES, OFFER, MUSIC),)


def test_a_caller_being_offered_to_an_agent_hears_no_place() -> None:
    """Position 0 (the caller is being put through to an agent): no place is said."""
    state = queued()
    result = step(state, tick(20, position=0, wait=0), context(20))
    assert result.actions == (on_hold(MUSIC),)
    assert result.state == state


def test_a_queue_that_never_announces_plays_music_only() -> None:
    """announce_every 0: the caller is never told their place, whatever the view."""
    spec = dataclasses.replace(seguros().queues["general-queue"], announce_every=0)
    silent = dataclasses.replace(seguros(), queues={"general-queue": spec})
    state = queued()
    result = step(state, tick(5, position=3, wait=240), context(5, of=silent))
    assert result.actions == (on_hold(MUSIC),)
    assert result.state.announced_at == 0


def test_a_queue_without_callbacks_offers_only_the_leave_key() -> None:
    """The callback key is offered, and taken, only when the queue calls back: without it the
    announcement names the leave key alone, and 1 is just a key with no meaning."""
    spec = dataclasses.replace(seguros().queues["general-queue"], callback=False)
    no_callbacks = dataclasses.replace(seguros(), queues={"general-queue": spec})
    state = queued()
    result = step(state, tick(5, position=3, wait=240), context(5, of=no_callbacks))
    leave_only = lucia("Para salir de la cola, pulse 0.")
    assert result.actions == (on_hold(THIRD_IN_4_MINUTES, leave_only, MUSIC),)
    pressed = step(result.state, keys("1"), context(10, of=no_callbacks))
    assert pressed.actions == (BACK_TO_THE_MUSIC,)
    assert pressed.state == result.state


# --- A full queue and the longest wait ----------------------------------------------------------


@pytest.mark.parametrize("waited", [0, 700])
def test_a_full_queue_lets_the_caller_go_to_cola_llena(waited: int) -> None:
    """The queue engine found no room: the caller leaves the queue (before any announcement,
    and before max_wait is looked at), then hears cola_llena and may leave a message."""
    state = queued()
    view = QueueView(position=0, wait=None, full=True)
    left = step(state, QueueWaitTick(waited=waited, view=view), context(waited))
    assert left.actions == (Leave(),)
    assert left.state == state.evolve(leave_reason="full")
    after = step(left.state, QueueLeft(result=QueueResult.LEAVE, waited=3), context(waited + 3))
    assert after.actions == (COLA_LLENA, *GENERAL_VOICEMAIL)
    assert after.events == (
        QueueExited(node="agente", queue="general-queue", reason=QueueExit.FULL, waited=waited + 3),
        NodeEntered(node="cola_llena", kind="say"),
        NodeEntered(node="buzon_general", kind="record"),
    )
    assert (after.state.node, after.state.waiting, after.state.seq) == (
        "buzon_general",
        Waiting.RECORDING,
        3,
    )


def test_max_wait_lets_the_caller_go_to_espera_agotada() -> None:
    """At the queue's max_wait (600 s) the caller leaves, even when an announcement is due,
    then hears espera_agotada and may leave a message."""
    state = step(queued(), tick(0, position=3, wait=240), context(0)).state
    left = step(state, tick(600, position=2, wait=100), context(600))
    assert left.actions == (Leave(),)
    assert (left.state.leave_reason, left.state.announced_at) == ("timed_out", at(0))
    after = step(left.state, LEAVE, context(601))
    assert after.actions == (ESPERA_AGOTADA, *GENERAL_VOICEMAIL)
    assert after.events[:2] == (
        QueueExited(node="agente", queue="general-queue", reason=QueueExit.TIMED_OUT, waited=601),
        NodeEntered(node="espera_agotada", kind="say"),
    )
    assert (after.state.node, after.state.announced_at, after.state.queue_phase) == (
        "buzon_general",
        0,
        "",
    )


def test_just_before_max_wait_the_caller_still_waits() -> None:
    """At 599 s the caller still hears the music (and their place, when due)."""
    result = step(queued(), tick(599, position=1, wait=30), context(599))
    assert result.actions[0] != Leave()
    assert result.state.leave_reason == ""


# --- Callbacks ----------------------------------------------------------------------------------


def test_callback_key_reads_back_the_end_of_the_callers_number() -> None:
    """1 during the music asks to confirm the caller's own number, read back by its last four
    digits, with 1, or to press 2 for another; the call is now confirming a callback."""
    state = step(queued(), tick(5, position=3, wait=240), context(5)).state
    result = step(state, keys("1"), context(12))
    assert result.actions == (CONFIRM_GATHER,)
    assert result.state == state.evolve(queue_phase="callback")
    assert result.events == ()


def test_the_confirmation_takes_one_key_without_a_finish_key() -> None:
    """The confirmation's gather ends on the first key: numDigits 1 and no finishOnKey, so 1
    books at once and the caller never has to press # after it."""
    (gather,) = step(queued(), keys("1"), context(12)).actions
    assert isinstance(gather, Gather)
    assert (gather.num_digits, gather.finish_on_key, gather.timeout) == (1, "", 8)
    assert gather.route == Route.QUEUE_KEY


def test_confirming_books_the_callback_and_lets_the_caller_go() -> None:
    """1 confirms: a CallbackRequested with the caller's number, thanks with its last four
    digits, and the caller leaves the queue (keeping their place, in the queue engine)."""
    asked = step(queued(), keys("1"), context(12)).state
    result = step(asked, keys("1"), context(20))
    assert result.events == (
        CallbackRequested(node="agente", queue="general-queue", number=CALLER, queued_at=at(0)),
    )
    assert result.actions == (booked("1 2 3 4"), Leave())
    assert result.state == asked.evolve(leave_reason="callback", queue_phase="")
    assert result.state.seq == asked.seq


def test_after_a_booked_callback_the_flow_says_goodbye() -> None:
    """Once let go for a callback, the queue's leave goes to the node's callback way
    (despedida): goodbye, and the call ends there."""
    let_go = run(queued(), [(12, keys("1")), (20, keys("1"))]).state
    result = step(let_go, QueueLeft(result=QueueResult.LEAVE, waited=21), context(21))
    assert result.actions == GOODBYE
    assert result.events == (
        QueueExited(node="agente", queue="general-queue", reason=QueueExit.CALLBACK, waited=21),
        NodeEntered(node="despedida", kind="hangup"),
        CallEnded(node="despedida", how=EndReason.HANGUP),
    )
    assert (result.state.node, result.state.waiting, result.state.seq) == (
        "despedida",
        Waiting.ENDED,
        3,
    )
    assert (result.state.leave_reason, result.state.queued_at) == ("callback", 0)


def test_a_queue_node_without_a_callback_way_hangs_up_after_booking() -> None:
    """With no 'callback' node, a caller let go for a callback is hung up on, the call
    ending as a callback."""
    node = seguros().nodes["agente"]
    assert isinstance(node, EnqueueNode)
    agente = dataclasses.replace(node, callback=None)
    variant = dataclasses.replace(seguros(), nodes={**seguros().nodes, "agente": agente})
    let_go = run(queued(), [(12, keys("1")), (20, keys("1"))], of=variant).state
    result = step(let_go, LEAVE, context(21, of=variant))
    assert result.actions == (Hangup(),)
    assert result.events == (
        QueueExited(node="agente", queue="general-queue", reason=QueueExit.CALLBACK, waited=21),
        CallEnded(node="agente", how=EndReason.CALLBACK),
    )


def test_2_at_the_confirmation_asks_for_another_number() -> None:
    """2 at the confirmation asks for the number to call, ended by #; nothing is booked yet
    and the call is now waiting for that number."""
    asked = step(queued(), keys("1"), context(12)).state
    result = step(asked, keys("2"), context(16))
    assert result.actions == (ASK_NUMBER_GATHER,)
    assert result.events == ()
    assert result.state == asked.evolve(queue_phase="callback-number")
    assert result.state.leave_reason == ""


@pytest.mark.parametrize(
    ("typed", "number", "last_four"),
    [
        pytest.param("612345678#", "+34612345678", "5 6 7 8", id="national"),
        pytest.param("612345678", "+34612345678", "5 6 7 8", id="national-timed-out"),
        pytest.param("0612345678#", "+34612345678", "5 6 7 8", id="trunk-zero"),
        pytest.param("00441632960961#", "+441632960961", "0 9 6 1", id="international"),
    ],
)
def test_a_typed_number_is_booked_in_e164(typed: str, number: str, last_four: str) -> None:
    """2, then another number: national numbers get the queue's country code (+34), 00
    starts an international one; the caller is thanked with its last four digits and let go."""
    other = run(queued(), [(12, keys("1")), (16, keys("2"))]).state
    result = step(other, keys(typed), context(25))
    assert result.events == (
        CallbackRequested(node="agente", queue="general-queue", number=number, queued_at=at(0)),
    )
    assert result.actions == (booked(last_four), Leave())
    assert result.state == other.evolve(leave_reason="callback", queue_phase="")


def test_a_number_typed_at_the_confirmation_is_not_taken() -> None:
    """The confirmation takes one key: digits typed there (as the old prompt invited) are not
    a number; only the first counts, and 6 means nothing there."""
    asked = step(queued(), keys("1"), context(12)).state
    result = step(asked, keys("612345678#"), context(25))
    assert result.actions == (UNCLEAR, BACK_TO_THE_MUSIC)
    assert result.events == ()


@pytest.mark.parametrize("typed", ["12345678#", "00123456#", "1234567890123456#"])
def test_a_bad_number_is_refused_and_the_caller_goes_back_to_the_music(typed: str) -> None:
    """A number that cannot be called is refused; the caller goes back to the music at the
    wait URL (naming the flow and enqueue node), in their place, no callback booked."""
    other = run(queued(), [(12, keys("1")), (16, keys("2"))]).state
    result = step(other, keys(typed), context(25))
    assert result.actions == (BAD_NUMBER, BACK_TO_THE_MUSIC)
    assert result.events == ()
    assert result.state == other.evolve(queue_phase="")
    assert result.state.leave_reason == ""


@pytest.mark.parametrize("pressed", ["", "5", "0", "3", "9", "*", "#"])
def test_an_unclear_key_at_the_confirmation_goes_back_to_the_music(pressed: str) -> None:
    """No key, or a key other than 1 and 2 (even 0, the leave key, in this question): the
    caller is told no valid option came and goes back to the music, nothing booked."""
    asked = step(queued(), keys("1"), context(12)).state
    result = step(asked, keys(pressed), context(25))
    assert result.actions == (UNCLEAR, BACK_TO_THE_MUSIC)
    assert result.events == ()
    assert result.state == asked.evolve(queue_phase="")
    assert result.state.leave_reason == ""


@pytest.mark.parametrize(
    ("typed", "heard"),
    [
        ("", UNCLEAR),
        ("#", UNCLEAR),
        ("1", BAD_NUMBER),
        ("1#", BAD_NUMBER),
        ("0", BAD_NUMBER),
        ("12345#", BAD_NUMBER),
        ("12345", BAD_NUMBER),
    ],
)
def test_too_few_digits_for_a_number_go_back_to_the_music(typed: str, heard: Say) -> None:
    """Asked for another number: nothing typed is no valid option; fewer than 6 digits (1 no
    longer confirms there) is no valid number. Back to the music, nothing booked."""
    other = run(queued(), [(12, keys("1")), (16, keys("2"))]).state
    result = step(other, keys(typed), context(25))
    assert result.actions == (heard, BACK_TO_THE_MUSIC)
    assert result.events == ()
    assert (result.state.queue_phase, result.state.leave_reason) == ("", "")


def test_back_at_the_music_the_keys_mean_what_they_meant() -> None:
    """After an unclear answer, 1 asks again (it does not confirm) and 0 leaves."""
    back = run(queued(), [(12, keys("1")), (25, keys("5"))]).state
    again = step(back, keys("1"), context(40))
    assert again.actions == (CONFIRM_GATHER,)
    assert not any(isinstance(e, CallbackRequested) for e in again.events)
    leaving = step(back, keys("0"), context(40))
    assert leaving.actions == (Leave(),)


@pytest.mark.parametrize(
    "pressed", [pytest.param(["1"], id="confirming"), pytest.param(["1", "2"], id="typing")]
)
def test_silence_at_the_question_returns_to_the_music_at_the_next_wait_request(
    pressed: list[str],
) -> None:
    """The question's gather posts nothing on silence: Twilio asks the wait URL again, which
    plays the music and forgets the question (the confirmation or the number)."""
    asked = run(queued(), [(12 + i, keys(k)) for i, k in enumerate(pressed)]).state
    assert asked.queue_phase
    result = step(asked, tick(20), context(20))
    assert result.actions == (on_hold(MUSIC),)
    assert result.state.queue_phase == ""
    confirmed_late = step(result.state, keys("1"), context(22))
    assert confirmed_late.actions == (CONFIRM_GATHER,)


@pytest.mark.parametrize("caller", ["anonymous", "+266696687", "client:ana", ""])
def test_a_withheld_caller_is_asked_for_a_number(caller: str) -> None:
    """A caller whose number cannot be called back has nothing to confirm: the callback key
    goes straight to asking for a number (ended by #); 1 alone is then no valid number (back to
    the music); a typed number is booked."""
    state = queued(caller)
    asked = step(state, keys("1"), context(12))
    assert asked.actions == (ASK_NUMBER_GATHER,)
    assert asked.events == ()
    assert asked.state == state.evolve(queue_phase="callback-number")
    refused = step(asked.state, keys("1"), context(20))
    assert refused.actions == (BAD_NUMBER, BACK_TO_THE_MUSIC)
    assert refused.events == ()
    typed = step(asked.state, keys("612345678#"), context(20))
    assert typed.events == (
        CallbackRequested(
            node="agente", queue="general-queue", number="+34612345678", queued_at=at(0)
        ),
    )
    assert typed.actions == (booked("5 6 7 8"), Leave())
    assert typed.state.leave_reason == "callback"


# --- Leaving and other keys ---------------------------------------------------------------------


def test_the_leave_key_goes_to_the_general_voicemail() -> None:
    """0 during the music takes the caller out of the queue; the leave goes to the node's
    'left' way (buzon_general), with no apology before it."""
    state = step(queued(), tick(5, position=3, wait=240), context(5)).state
    left = step(state, keys("0"), context(9))
    assert left.actions == (Leave(),)
    assert left.state == state.evolve(leave_reason="left")
    after = step(left.state, QueueLeft(result=QueueResult.LEAVE, waited=9), context(10))
    assert after.actions == GENERAL_VOICEMAIL
    assert after.events == (
        QueueExited(node="agente", queue="general-queue", reason=QueueExit.LEFT, waited=10),
        NodeEntered(node="buzon_general", kind="record"),
    )
    assert (after.state.node, after.state.waiting, after.state.seq) == (
        "buzon_general",
        Waiting.RECORDING,
        3,
    )


@pytest.mark.parametrize("digits", ["2", "9", "#", "*", ""])
def test_another_key_goes_back_to_the_music(digits: str) -> None:
    """A key with no meaning in the queue: back to the music at the wait URL, nothing moved."""
    state = step(queued(), tick(5, position=3, wait=240), context(5)).state
    result = step(state, keys(digits), context(9))
    assert result.actions == (BACK_TO_THE_MUSIC,)
    assert result.state == state
    assert result.events == ()


@pytest.mark.parametrize(
    ("pressed", "phase"),
    [
        pytest.param(["1"], "callback", id="confirming"),
        pytest.param(["1", "2"], "callback-number", id="typing"),
    ],
)
def test_leaving_the_queue_forgets_the_announcement_and_the_question(
    pressed: list[str], phase: str
) -> None:
    """An agent taking the call clears what only a waiting caller has."""
    asked = run(
        queued(), [(5, tick(5, 3, 240)), *((12 + i, keys(k)) for i, k in enumerate(pressed))]
    ).state
    assert (asked.announced_at, asked.queue_phase) == (at(5), phase)
    done = step(asked, QueueLeft(result=QueueResult.BRIDGED, waited=30), context(30))
    assert (done.state.announced_at, done.state.queue_phase, done.state.queued_at) == (0, "", 0)
    assert done.events[-1] == CallEnded(node="agente", how=EndReason.AGENT)


# --- The call's stored state --------------------------------------------------------------------


def test_state_json_round_trip_keeps_the_announcement_and_the_question() -> None:
    """announced_at and queue_phase survive the call store's JSON form."""
    asked = run(queued(), [(5, tick(5, 3, 240)), (12, keys("1"))]).state
    data = json.loads(asked.to_json())
    assert (data["announced_at"], data["queue_phase"]) == (at(5), "callback")
    again = CallState.from_json(asked.to_json())
    assert again == asked
    assert CallState.from_json(asked.encode()) == asked
    confirmed = step(again, keys("1"), context(20))
    assert confirmed.events == (
        CallbackRequested(node="agente", queue="general-queue", number=CALLER, queued_at=at(0)),
    )


def test_state_json_round_trip_keeps_the_number_question() -> None:
    """A caller asked for another number is still asked for it after the call store's JSON
    form: the typed digits are taken as that number."""
    other = run(queued(), [(12, keys("1")), (16, keys("2"))]).state
    assert json.loads(other.to_json())["queue_phase"] == "callback-number"
    again = CallState.from_json(other.to_json())
    assert again == other
    typed = step(again, keys("612345678#"), context(25))
    assert typed.events == (
        CallbackRequested(
            node="agente", queue="general-queue", number="+34612345678", queued_at=at(0)
        ),
    )


def test_state_of_an_older_release_reads_with_defaults() -> None:
    """A queued caller's state written before these fields existed reads as never announced
    and listening to the music: the next view is said."""
    state = queued()
    data = json.loads(state.to_json())
    del data["announced_at"], data["queue_phase"]
    older = CallState.from_json(json.dumps(data))
    assert (older.announced_at, older.queue_phase) == (0, "")
    assert older == state
    result = step(older, tick(5, position=3, wait=240), context(5))
    assert result.actions == (on_hold(THIRD_IN_4_MINUTES, OFFER, MUSIC),)


@pytest.mark.parametrize(
    ("name", "value"),
    [("announced_at", "5"), ("announced_at", True), ("queue_phase", 1)],
)
def test_state_with_a_bad_queue_field_is_unreadable(name: str, value: object) -> None:
    """A present field of the wrong type is an error, not a default."""
    data = json.loads(queued().to_json())
    data[name] = value
    with pytest.raises(StateError):
        CallState.from_json(json.dumps(data))


# --- Numbers flowpbx may not call ----------------------------------------------------------------

SPAIN_ONLY = Destinations(allowed=("+34",), blocked=("+34803", "+34806", "+34807"))


def test_a_typed_number_outside_the_outbound_rules_is_refused_while_the_caller_listens() -> None:
    """The outbound rules (FLOWPBX_CALL_ALLOWED/BLOCKED_PREFIXES) are checked before the caller
    is told they will be called: a premium or foreign number is refused there and then."""
    limited = dataclasses.replace(context(25), destinations=SPAIN_ONLY)
    other = run(queued(), [(12, keys("1")), (16, keys("2"))]).state
    for typed in ("806123456#", "00441632960961#"):
        result = step(other, keys(typed), limited)
        assert result.actions == (BAD_NUMBER, BACK_TO_THE_MUSIC)
        assert result.events == ()
    booked_here = step(other, keys("612345678#"), limited)
    assert booked_here.events == (
        CallbackRequested(
            node="agente", queue="general-queue", number="+34612345678", queued_at=at(0)
        ),
    )


def test_a_callers_own_number_outside_the_rules_is_not_confirmed() -> None:
    """A caller from abroad confirms their own number: it may not be called, so they hear so
    and are asked for another number at once."""
    state = queued(caller="+441632960961")
    asked = step(state, keys("1"), context(12)).state
    limited = dataclasses.replace(context(16), destinations=SPAIN_ONLY)
    result = step(asked, keys("1"), limited)
    assert result.actions == (BAD_NUMBER, ASK_NUMBER_GATHER)
    assert result.events == ()
    assert result.state.queue_phase == "callback-number"
