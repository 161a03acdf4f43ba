"""The loader: every invalid fixture reports its problem where it is; valid flows load typed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowpbx.errors import FlowError, Severity
from flowpbx.language.flow import (
    NODE_KINDS,
    DialNode,
    EnqueueNode,
    HoursNode,
    InputNode,
    MenuNode,
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
    }  # fmt: skip
    assert wanted <= codes, f"no fixture for {sorted(wanted - codes)}"


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
    assert menu.invalid.text.source == "Opción no válida."
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
    assert (agent.queue, agent.max_size, agent.timed_out) == ("general-queue", 100, "buzon_general")
    assert flow.on_error.next == "agente"
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
