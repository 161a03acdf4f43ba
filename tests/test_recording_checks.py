"""Recorded calls are announced: every way to a recorded dial passes the recording notice."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowpbx.errors import Problem, Severity
from flowpbx.language.loader import check_file, check_text

ROOT = Path(__file__).resolve().parents[1]
SEGUROS = ROOT / "flows" / "seguros.yaml"

# Every way to 'ventas' passes 'aviso': open hours, the error fallback, the menu's option.
ANNOUNCED = """\
name: prueba
entry: horario
on_error:
  next: aviso
recording:
  dials: true
  notice: aviso
nodes:
  horario:
    type: hours
    timezone: Europe/Madrid
    weekly:
      monday-friday: 09:00-19:00
    open: aviso
    closed: cerrado
  cerrado:
    type: say
    text: Estamos cerrados.
    next: adios
  aviso:
    type: say
    text: Esta llamada puede ser grabada.
    next: menu
  menu:
    type: menu
    prompt: Para ventas, pulse 1.
    options:
      1: ventas
    exhausted: adios
  ventas:
    type: dial
    to: "+34912345671"
    no_answer: soporte
  soporte:
    type: dial
    to: "+34912345672"
    no_answer: adios
  adios:
    type: hangup
"""
VENTAS_LINE = ANNOUNCED.splitlines().index("  ventas:") + 1
SOPORTE_LINE = ANNOUNCED.splitlines().index("  soporte:") + 1


def _notices(text: str) -> list[str]:
    """The recording notice warnings for a flow, as `line:column: message`."""
    report = check_text(text, "prueba.yaml")
    return [f"{p.line}:{p.column}: {p.message}" for p in report.problems if _is_notice(p)]


def _is_notice(problem: Problem) -> bool:
    return problem.code in ("recording-notice", "no-recording-notice")


def _bypass(dial: str, line: int, way: str) -> str:
    return (
        f"{line}:3: dial '{dial}' records the call, but callers can reach it without hearing the "
        f"recording notice ('aviso'), for example {way}: in Spain callers must be told first, "
        "e.g. 'Esta llamada puede ser grabada.'; make that way pass through 'aviso', "
        "or write 'record: false' on the dial"
    )


def _changed(old: str, new: str) -> str:
    assert ANNOUNCED.count(old) == 1, old
    return ANNOUNCED.replace(old, new)


def test_notice_heard_on_every_way_is_silent() -> None:
    """A flow whose recorded dials can only be reached through the notice has no problems."""
    report = check_text(ANNOUNCED, "prueba.yaml")
    assert report.flow is not None
    assert report.problems == ()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "    closed: cerrado\n",
            "    closed: ventas\n",
            [
                _bypass("ventas", VENTAS_LINE, "horario → ventas"),
                _bypass("soporte", SOPORTE_LINE, "horario → ventas → soporte"),
            ],
            id="hours-closed",
        ),
        pytest.param(
            "    next: adios\n  aviso:",
            "    next: soporte\n  aviso:",
            [_bypass("soporte", SOPORTE_LINE, "horario → cerrado → soporte")],
            id="say-next",
        ),
        pytest.param(
            "on_error:\n  next: aviso\n",
            "on_error:\n  next: ventas\n",
            [
                _bypass("ventas", VENTAS_LINE, "after an error → ventas"),
                _bypass("soporte", SOPORTE_LINE, "after an error → ventas → soporte"),
            ],
            id="error-fallback",
        ),
        pytest.param(
            "entry: horario\n",
            "entry: menu\n",
            [
                _bypass("ventas", VENTAS_LINE, "menu → ventas"),
                _bypass("soporte", SOPORTE_LINE, "menu → ventas → soporte"),
            ],
            id="entry-past-notice",
        ),
    ],
)
def test_notice_bypassed_warns_at_the_dial(old: str, new: str, expected: list[str]) -> None:
    """Each recorded dial a caller can reach without the notice, by any outcome, gets a warning
    at its own line, with a shortest way there."""
    assert _notices(_changed(old, new)) == expected


def test_notice_bypassed_dial_that_opts_out_is_silent() -> None:
    """A dial that says `record: false` may be reached without the notice."""
    text = _changed("    closed: cerrado\n", "    closed: ventas\n").replace(
        '    to: "+34912345671"\n', '    to: "+34912345671"\n    record: false\n'
    )
    assert _notices(text) == [_bypass("soporte", SOPORTE_LINE + 1, "horario → ventas → soporte")]


def test_notice_ways_from_the_entry_are_shown_first() -> None:
    """When both the entry and the error fallback lead past the notice, the way from the entry
    is shown, since it is the one callers take."""
    text = _changed("    closed: cerrado\n", "    closed: ventas\n").replace(
        "on_error:\n  next: aviso\n", "on_error:\n  next: cerrado\n"
    )
    assert _notices(text)[0].endswith(
        "for example horario → ventas: in Spain callers must be told first, e.g. 'Esta llamada "
        "puede ser grabada.'; make that way pass through 'aviso', or write 'record: false' on "
        "the dial"
    )


def test_notice_missing_warns_at_recording_setting() -> None:
    """A flow that records its dials but names no notice gets one warning, at `recording:`."""
    text = _changed("  notice: aviso\n", "")
    assert _notices(text) == [
        "5:1: dials 'ventas' and 'soporte' record the call, but the flow names no recording "
        "notice: in Spain callers must be told first; add a say node that tells them, e.g. "
        "'Esta llamada puede ser grabada.', and name it under 'recording:' as 'notice: <node>'"
    ]


def test_notice_not_needed_when_nothing_records() -> None:
    """Without recorded dials, a flow needs no notice."""
    text = _changed("recording:\n  dials: true\n  notice: aviso\n", "")
    assert check_text(text, "prueba.yaml").problems == ()


def test_notice_unknown_node_is_an_error() -> None:
    """A notice naming no node is an error where it is written, with a suggestion."""
    report = check_text(_changed("  notice: aviso\n", "  notice: avisos\n"), "prueba.yaml")
    assert report.flow is None
    assert [(p.line, p.column, p.severity, p.code, p.message) for p in report.problems] == [
        (
            7,
            11,
            Severity.ERROR,
            "unknown-node",
            "'recording.notice' names node 'avisos', which does not exist (did you mean 'aviso'?)",
        )
    ]


def test_seguros_tells_callers_before_every_recorded_dial() -> None:
    """The shipped menu records its dials and validates with no warning at all."""
    report = check_file(SEGUROS)
    assert report.flow is not None
    assert report.flow.recording.dials
    assert report.problems == ()


def test_seguros_without_its_welcome_warns_at_every_dial() -> None:
    """Skipping seguros's welcome (its notice) leaves all five recorded dials unannounced."""
    text = SEGUROS.read_text("utf-8")
    assert text.count("    open: bienvenida\n") == 1
    report = check_text(text.replace("    open: bienvenida\n", "    open: menu_principal\n"), "s")
    warned = [p.message.split("'")[1] for p in report.problems if p.code == "recording-notice"]
    assert warned == [
        "llamar_vida",
        "llamar_salud",
        "llamar_hogar",
        "llamar_partes",
        "llamar_presupuestos",
        "agente",
    ]


def test_seguros_error_fallback_passes_the_notice() -> None:
    """seguros's error fallback goes back through its notice: sent straight to the agent
    queue, a caller failing before the welcome would reach a recorded agent unannounced."""
    text = SEGUROS.read_text("utf-8")
    assert text.count("  next: bienvenida\n\n# Calls to departments") == 1
    report = check_text(
        text.replace("  next: bienvenida\n\n# Calls", "  next: agente\n\n# Calls"), "s"
    )
    assert [p.message.split(", for example ")[1].split(":")[0] for p in report.problems] == [
        "after an error → agente"
    ]


# A queue reached both through the notice (option 2) and around it (closed hours).
QUEUED = (
    _changed("    closed: cerrado\n", "    closed: cola\n")
    .replace("      1: ventas\n", "      1: ventas\n      2: cola\n")
    .replace("nodes:\n", "queues:\n  general:\nnodes:\n")
    + "  cola:\n    type: enqueue\n    queue: general\n    full: adios\n"
)
COLA_LINE = QUEUED.splitlines().index("  cola:") + 1


def test_notice_bypassed_warns_at_a_queue_when_dials_record() -> None:
    """With recording.dials, calls agents take from a queue are recorded: a queue reached
    without the notice gets the warning a recorded dial would."""
    assert _notices(QUEUED) == [
        f"{COLA_LINE}:3: enqueue node 'cola' puts callers through to agents, and those calls "
        "are recorded ('recording: dials: true'), but callers can reach it without hearing the "
        "recording notice ('aviso'), for example horario → cola: in Spain callers must be told "
        "first, e.g. 'Esta llamada puede ser grabada.'; make that way pass through 'aviso'"
    ]


def test_notice_not_needed_before_a_queue_when_dials_do_not_record() -> None:
    """Without recording.dials nothing a queue connects is recorded: no warning."""
    text = QUEUED.replace("  dials: true\n", "  dials: false\n")
    assert _notices(text) == []


def test_notice_missing_names_queues_and_dials() -> None:
    """A flow that records dials and queues but names no notice lists both kinds of step."""
    text = QUEUED.replace("  notice: aviso\n", "")
    assert _notices(text) == [
        "5:1: steps 'ventas', 'soporte' and 'cola' record the call, but the flow names no "
        "recording notice: in Spain callers must be told first; add a say node that tells "
        "them, e.g. 'Esta llamada puede ser grabada.', and name it under 'recording:' as "
        "'notice: <node>'"
    ]
