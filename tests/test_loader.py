"""The loader: every invalid fixture reports its problem where it is; valid flows load typed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from flowpbx.errors import FlowError, Mark, Severity
from flowpbx.language.flow import (
    DEFAULT_HOLD_MUSIC,
    NODE_KINDS,
    DialNode,
    EnqueueNode,
    HoursNode,
    InputNode,
    MenuNode,
    QueueSpec,
    QueueStrategy,
    RecordingChannels,
    RecordingPolicy,
    SayNode,
)
from flowpbx.language.loader import check_file, check_text, load_flow
from flowpbx.language.yamlsource import MAX_BYTES

FIXTURES = Path(__file__).resolve().parent / "flows"
ROOT = Path(__file__).resolve().parents[1]
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
EXPECT = re.compile(r"^# (expect|expect-warning): (.+)$")


def _expectations(path: Path) -> list[tuple[Severity, str]]:
    found = []
    for line in path.read_text("utf-8").splitlines():
        match = EXPECT.match(line)
        if not match:
            break
        severity = Severity.ERROR if match.group(1) == "expect" else Severity.WARNING
        found.append((severity, match.group(2)))
    return found


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_loader_reports_fixture_problem(path: Path) -> None:
    """Each invalid fixture yields the message (and line:col) written on its first lines."""
    expectations = _expectations(path)
    assert expectations, f"{path.name} has no '# expect:' line"
    report = check_file(path)
    shown = [f"{p.line}:{p.column}: {p.message}" for p in report.problems]
    for severity, fragment in expectations:
        matching = [
            p
            for p, text in zip(report.problems, shown, strict=True)
            if fragment in text and p.severity is severity
        ]
        assert matching, f"expected {severity} {fragment!r}, got {shown}"
    has_errors = any(s is Severity.ERROR for s, _ in expectations)
    assert (report.flow is None) == has_errors


def test_loader_fixture_kinds_cover_every_check() -> None:
    """There is an invalid fixture for each problem code the checks and YAML layer produce."""
    codes = {p.code for path in INVALID for p in check_file(path).problems}
    wanted = {
        "unknown-node", "duplicate-key", "yaml-syntax", "schema", "unreachable",
        "no-input-path", "unbounded-loop", "unknown-voice", "voice-language", "yaml-tab",
        "not-a-mapping", "empty", "yaml-alias", "unknown-variable", "bad-text",
        "unknown-config", "unused-config", "unknown-timezone", "hours-range", "hours-days",
        "hours-date", "digits-range", "missing-outcome", "transcribe-length",
        "transcribe-language", "notice-kind", "no-recording-notice", "recording-notice",
        "unknown-queue", "no-callback", "same-key", "unused-queue", "unused-outcome",
        "yaml-structure", "yaml-number",
    }  # fmt: skip
    assert wanted <= codes, f"no fixture for {sorted(wanted - codes)}"


YAML_MISTAKES = [
    p for p in INVALID if p.stem.startswith("yaml_") or p.stem == "config_unquoted_number"
]


@pytest.mark.parametrize("path", YAML_MISTAKES, ids=[p.stem for p in YAML_MISTAKES])
def test_loader_yaml_mistake_has_no_follow_on_problem(path: Path) -> None:
    """A mistake in how the YAML is written is reported once, where it is: the text is read as
    the author meant it, so nothing else (a node that "does not exist", a missing key) follows."""
    expected = [fragment for _, fragment in _expectations(path)]
    shown = [f"{p.line}:{p.column}: {p.message}" for p in check_file(path).problems]
    assert shown == expected


def test_loader_mended_yaml_is_still_checked() -> None:
    """After a YAML mistake the rest of the flow is checked too: every problem at once."""
    text = _menu("      1: adioss").replace("    type: menu", "    type menu")
    report = check_text(text, "t.yaml")
    assert [(p.line, p.code) for p in report.errors] == [(5, "yaml-syntax"), (8, "unknown-node")]
    assert report.errors[0].message == "add ':' after 'type' (write 'type: menu')"
    assert report.flow is None


def test_loader_builds_seguros_model() -> None:
    """The shipped menu loads into typed nodes with its options, numbers and hours."""
    flow = load_flow(ROOT / "flows" / "seguros.yaml")
    assert (flow.name, flow.entry, flow.voice, flow.language) == (
        "seguros",
        "horario",
        "Polly.Lucia",
        "es-ES",
    )
    menu = flow.nodes["menu_principal"]
    assert isinstance(menu, MenuNode)
    assert dict(menu.options) == {
        "1": "vida",
        "2": "salud",
        "3": "hogar",
        "4": "automovil",
        "9": "agente_aviso",
    }
    assert (menu.retries, menu.exhausted) == (3, "agente_aviso")
    assert menu.invalid is not None
    assert menu.invalid.text is not None
    assert menu.invalid.text.source == "Lo sentimos, esa opción no es válida."
    dial = flow.nodes["llamar_vida"]
    assert isinstance(dial, DialNode)
    assert (dial.targets, dial.no_answer, dial.busy, dial.failed, dial.answered) == (
        ("${VIDA_NUMBER}",),
        "buzon_vida",
        "buzon_vida",
        "buzon_vida",
        None,
    )
    hours = flow.nodes["horario"]
    assert isinstance(hours, HoursNode)
    assert [len(day) for day in hours.weekly] == [1, 1, 1, 1, 1, 0, 0]
    assert (hours.weekly[0][0].start, hours.weekly[0][0].end) == (9 * 60, 19 * 60)
    assert hours.holiday == "cerrado"
    agent = flow.nodes["agente"]
    assert isinstance(agent, EnqueueNode)
    assert agent == EnqueueNode(
        id="agente",
        mark=agent.mark,
        description="",
        queue="general-queue",
        priority=0,
        leave_key="0",
        callback_key="1",
        timed_out="espera_agotada",
        full="cola_llena",
        left="buzon_general",
        callback="despedida",
        voice="Polly.Lucia",
        language="es-ES",
    )
    queue = flow.queues["general-queue"]
    assert (queue.max_size, queue.max_wait, queue.strategy) == (
        100,
        600,
        QueueStrategy.ROUND_ROBIN,
    )
    assert (queue.hold_music, queue.announce_every, queue.callback) == (
        "${HOLD_MUSIC_URL}",
        60,
        True,
    )
    assert (queue.ring_timeout, queue.wrap_up, queue.country_code) == (20, 30, "+34")
    assert list(flow.queues) == ["general-queue"]
    assert flow.on_error.next == "bienvenida"
    assert flow.config["VIDA_NUMBER"] == "+34912345671"
    assert flow.recording == RecordingPolicy(
        dials=True, channels=RecordingChannels.DUAL, notice="bienvenida"
    )
    dials = [node for node in flow.nodes.values() if isinstance(node, DialNode)]
    assert len(dials) == 5
    assert all(d.record and d.channels is RecordingChannels.DUAL for d in dials)


def test_loader_builds_every_node_kind() -> None:
    """A flow using each kind once loads, with per-node voice and the defaults applied."""
    flow = load_flow(FIXTURES / "valid" / "every_kind.yaml")
    assert {node.kind for node in flow.nodes.values()} == set(NODE_KINDS)
    menu = flow.nodes["menu"]
    assert isinstance(menu, MenuNode)
    assert menu.prompt.voice == "Polly.Enrique"
    assert menu.prompt.play == "https://example.com/menu.mp3"
    assert set(menu.options) == {"1", "2", "#", "0"}
    say = flow.nodes["leer"]
    assert isinstance(say, SayNode)
    assert say.speech.voice == "Polly.Conchita"
    assert say.speech.text is not None
    rendered = say.speech.text.render({"numero": "1234", "called": "+34912345678"})
    assert rendered == "Ha marcado 1 2 3 4; llamamos desde +34912345678. {no es una variable}"
    poliza = flow.nodes["poliza"]
    assert isinstance(poliza, InputNode)
    assert (poliza.min_digits, poliza.max_digits, poliza.finish_on_key) == (6, 10, "#")
    hours = flow.nodes["horario"]
    assert isinstance(hours, HoursNode)
    assert [len(day) for day in hours.weekly] == [2, 2, 2, 2, 1, 0, 0]
    assert [(h.year, h.month, h.day, len(h.hours)) for h in hours.holidays] == [
        (2026, 12, 31, 0),
        (None, 12, 24, 1),
    ]
    assert flow.config["MUSICA"] is None
    cola = flow.nodes["cola"]
    assert isinstance(cola, EnqueueNode)
    assert (cola.queue, cola.priority, cola.leave_key, cola.callback_key) == (
        "soporte",
        5,
        "*",
        "2",
    )
    assert (cola.timed_out, cola.full, cola.left, cola.callback) == (
        "buzon",
        "buzon",
        "buzon",
        "adios",
    )
    assert [edge.target for edge in cola.edges()] == ["buzon", "buzon", "buzon", "adios"]
    assert flow.queues == {
        "soporte": QueueSpec(
            name="soporte",
            mark=Mark(16, 3),
            description="Cola de soporte técnico.",
            max_size=10,
            max_wait=120,
            strategy=QueueStrategy.LONGEST_IDLE,
            service_level=30,
            hold_music="https://example.com/espera.mp3",
            announce_every=0,
            callback=True,
            country_code="+33",
            ring_timeout=15,
            wrap_up=0,
            handle_time=240,
        )
    }


QUEUE_FLOW = """\
name: prueba
entry: cola
queues:
{queues}
nodes:
  cola:
    type: enqueue
    queue: general
    full: adios
  adios:
    type: hangup
"""


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param("  general:", {}, id="nothing"),
        pytest.param("  general: {}", {}, id="empty-mapping"),
        pytest.param(
            '  general:\n    hold_music: ""\n    max_wait: ~',
            {"hold_music": None, "max_wait": None},
            id="silence-no-limit",
        ),
        pytest.param(
            "  general:\n    hold_music: ${MUSICA}\n    max_size: 5000",
            {"hold_music": "${MUSICA}", "max_size": 5000},
            id="config",
        ),
    ],
)
def test_loader_builds_queue_settings_with_defaults(
    settings: str, expected: dict[str, Any]
) -> None:
    """A queue's settings left out take QueueSpec's defaults; "" hold music is silence and ~
    max_wait no limit; the mark is where the queue's name is written."""
    text = QUEUE_FLOW.format(queues=settings)
    if "${MUSICA}" in text:
        text = text.replace("queues:", "config:\n  MUSICA: https://example.com/m.mp3\nqueues:")
    report = check_text(text, "t.yaml")
    assert report.flow is not None, [str(p) for p in report.problems]
    assert report.problems == ()
    line = text.splitlines().index(settings.splitlines()[0]) + 1
    queue = report.flow.queues["general"]
    assert queue == QueueSpec(name="general", mark=Mark(line, 3), **expected)
    if not expected:
        assert (queue.hold_music, queue.max_wait, queue.max_size) == (DEFAULT_HOLD_MUSIC, 600, 100)


def test_loader_queue_with_bad_settings_is_still_declared() -> None:
    """A queue whose settings the schema refuses is reported once, there; its enqueue nodes are
    not also told that it is undeclared."""
    report = check_text(QUEUE_FLOW.format(queues="  general:\n    max_size: 0"), "t.yaml")
    assert [(p.line, p.column, p.code) for p in report.problems] == [(5, 15, "schema")]
    assert report.flow is None


def test_loader_undeclared_queue_without_queues_section() -> None:
    """With no 'queues' section at all, the error says to add one."""
    text = QUEUE_FLOW.format(queues="").replace("queues:\n\n", "")
    (problem,) = check_text(text, "t.yaml").problems
    assert (problem.line, problem.column, problem.code) == (6, 12, "unknown-queue")
    assert problem.message == (
        "node 'cola': queue 'general' is not declared in this file's 'queues' section "
        "(declared: none; add a 'queues:' section to the file)"
    )


def test_loader_queue_checks_need_a_usable_queue() -> None:
    """callback_key on a queue that allows callbacks, with its own key, is fine."""
    text = QUEUE_FLOW.format(queues="  general:\n    callback: true").replace(
        "    full: adios\n",
        '    full: adios\n    callback_key: "#"\n    leave_key: "*"\n    left: adios\n',
    )
    report = check_text(text, "t.yaml")
    assert report.problems == ()
    assert report.flow is not None


BASE = """\
name: prueba
entry: menu
nodes:
  menu:
    type: menu
    prompt: Pulse.
    options:
{options}
    exhausted: adios
  adios:
    type: hangup
  otro:
    type: say
    text: Otro.
    next: {otro_next}
  volver:
    type: goto
    target: menu
{goto_limit}
"""


def _menu(options: str, otro_next: str = "adios", goto_limit: str = "") -> str:
    return BASE.format(options=options, otro_next=otro_next, goto_limit=goto_limit)


def test_loader_accepts_quoted_and_unquoted_digits() -> None:
    """Option keys written 1, "2", '3' and "*" all become the same kind of key."""
    text = _menu('      1: adios\n      "2": otro\n      \'3\': volver\n      "*": adios')
    report = check_text(text, "t.yaml")
    assert report.flow is not None, report.problems
    menu = report.flow.nodes["menu"]
    assert isinstance(menu, MenuNode)
    assert list(menu.options) == ["1", "2", "3", "*"]


def test_loader_allows_loops_through_a_caller_choice() -> None:
    """A loop back to the menu that needs a key press is not an unbounded loop."""
    report = check_text(_menu("      1: otro\n      2: volver", otro_next="menu"), "t.yaml")
    assert report.flow is not None, report.problems


def test_loader_rejects_loop_of_steps_without_bound() -> None:
    """A menu's exhausted path that jumps back through a goto with no limit loops forever."""
    text = _menu("      1: adios\n      2: otro", otro_next="volver").replace(
        "exhausted: adios", "exhausted: otro"
    )
    report = check_text(text, "t.yaml")
    loops = [p.message for p in report.errors if p.code == "unbounded-loop"]
    assert loops == [
        "nodes menu → otro → volver → menu can loop forever without the caller pressing a key; "
        "add a goto with a 'limit' to the loop, or end it"
    ]


def test_loader_accepts_loop_bounded_by_goto_limit() -> None:
    """The same loop with a limit on the goto is fine."""
    limit = "    limit: 3\n    exhausted: adios"
    text = _menu("      1: adios\n      2: otro", otro_next="volver", goto_limit=limit)
    text = text.replace("exhausted: adios\n  adios", "exhausted: otro\n  adios")
    report = check_text(text, "t.yaml")
    assert report.flow is not None, report.problems


def test_loader_reports_every_problem_at_once() -> None:
    """Independent mistakes in one file are all reported, sorted by line."""
    text = _menu("      1: adioss\n      12: otro").replace("type: hangup", "type: hangups")
    report = check_text(text, "t.yaml")
    lines = [(p.line, p.code) for p in report.errors]
    assert lines == sorted(lines)
    messages = " | ".join(p.message for p in report.errors)
    assert "option key '12' is not valid" in messages
    assert "option '1' goes to 'adioss', which does not exist (did you mean 'adios'?)" in messages
    assert "unknown node type 'hangups'" in messages


def test_load_flow_raises_with_every_problem(tmp_path: Path) -> None:
    """load_flow raises FlowError carrying the problems, and its text names file:line:col."""
    path = tmp_path / "roto.yaml"
    path.write_text(_menu("      1: nadie"), "utf-8")
    with pytest.raises(FlowError) as caught:
        load_flow(path)
    assert [p.code for p in caught.value.problems if p.is_error] == ["unknown-node"]
    assert f"{path}:8:10: error: node 'menu': option '1' goes to 'nadie'" in str(caught.value)


def test_check_file_reports_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    """A file saved in Latin-1 is reported at the first bad byte, not as a traceback."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: prueba\ndescription: menú\n".encode("latin-1"))
    (problem,) = check_file(path).problems
    assert (problem.line, problem.column, problem.code) == (2, 17, "encoding")


def test_check_file_refuses_huge_files(tmp_path: Path) -> None:
    """A file over the size limit is refused before parsing."""
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    (problem,) = check_file(path).problems
    assert problem.code == "file-too-large"


def test_check_file_reports_unreadable_path(tmp_path: Path) -> None:
    """A path that cannot be read is a problem of that file."""
    (problem,) = check_file(tmp_path / "missing.yaml").problems
    assert problem.code == "unreadable"
    assert "cannot read the file" in problem.message


def test_loader_accepts_byte_order_mark() -> None:
    """A UTF-8 file saved with a byte order mark (as some Windows editors do) loads."""
    report = check_text("\ufeff" + _menu("      1: adios"), "t.yaml")
    assert report.errors == ()


def test_loader_rejects_deep_nesting() -> None:
    """Absurdly nested input is reported, not a recursion error."""
    report = check_text("a: " + "[" * 5000 + "]" * 5000, "t.yaml")
    assert report.flow is None
    assert report.errors


def test_loader_accepts_variables_the_engine_sets() -> None:
    """dial_status and recording_url, set by dial and record nodes, may be used like caller."""
    text = _menu("      1: otro").replace(
        "text: Otro.", "text: 'Estado {dial_status} {recording_url}'"
    )
    report = check_text(text, "t.yaml")
    assert [p.code for p in report.errors] == []
