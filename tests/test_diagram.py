"""Flow diagrams: labels, edges by key and outcome, marks, and the Mermaid and DOT drawn from
them (DOT checked by Graphviz itself)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import FLOWS
from flowpbx.authoring.diagram import Diagram, Marking, diagram, shorten
from flowpbx.authoring.dot import quote, render, to_dot
from flowpbx.authoring.mermaid import escape, to_mermaid
from flowpbx.language.flow import Flow, MenuNode, SayNode
from flowpbx.language.loader import check_text, load_flow

VALID = FLOWS.parent / "tests" / "flows" / "valid"

SMALL = """\
name: small
entry: horario
on_error:
  text: Perdone.
  next: menu
nodes:
  horario:
    type: hours
    timezone: Europe/Madrid
    weekly:
      monday-friday: 09:00-19:00
      saturday: [10:00-14:00, 16:00-18:00]
    holidays: [01-01, 12-25]
    open: menu
    closed: cerrado
    holiday: festivo
  cerrado:
    type: say
    text: Estamos cerrados. Llame de lunes a viernes, de nueve a siete.
    next: adios
  festivo:
    type: say
    text: Hoy es festivo.
    next: adios
  menu:
    type: menu
    prompt: Para ventas, pulse 1. Para volver a oír el menú, pulse asterisco.
    options:
      1: ventas
      "*": menu
      9: adios
    exhausted: adios
  ventas:
    type: dial
    to: ${VENTAS}
    no_answer: adios
    answered: adios
    failed: cerrado
  olvidado:
    type: say
    text: Nadie llega aquí.
    next: adios
  adios:
    type: hangup
config:
  VENTAS: "+34911111111"
"""


def _flow(text: str = SMALL) -> Flow:
    report = check_text(text, "small.yaml")
    assert report.flow is not None, [str(p) for p in report.problems]
    return report.flow


def _labels(drawn: Diagram, source: str) -> dict[str, str]:
    return {edge.target: edge.label for edge in drawn.edges if edge.source == source}


def _dot_program() -> str:
    program = shutil.which("dot")
    assert program, "graphviz's 'dot' was not found; run scripts/install-servers to install it"
    return program


def test_shorten_cuts_after_a_whole_word() -> None:
    """Long text is flattened to one line and cut after a whole word, ending in '…'."""
    text = "Bienvenido a Seguros.\n  Le informamos de que esta llamada puede ser grabada."
    assert shorten(text) == "Bienvenido a Seguros. Le informamos de…"
    assert shorten("Hola.") == "Hola."


def test_node_labels_name_kind_and_what_it_says() -> None:
    """A node's label is its kind and the start of what it says; dials show the number."""
    drawn = diagram(_flow())
    cerrado = drawn.node("cerrado")
    assert cerrado.label == "say: “Estamos cerrados. Llame de lunes a…”"
    assert cerrado.label_lines()[0] == "cerrado"
    assert drawn.node("ventas").label == "dial: ${VENTAS}"
    assert drawn.node("adios").label == "hangup"
    assert drawn.node("menu").label.startswith("menu: “Para ventas, pulse 1.")


def test_hours_summary_shows_week_timezone_and_holidays() -> None:
    """An hours node sums up its week by runs of days, its time zone and its holidays."""
    hours = diagram(_flow()).node("horario")
    assert hours.summary == (
        "Mon-Fri 09:00-19:00; Sat 10:00-14:00, 16:00-18:00",
        "Europe/Madrid, 2 holidays",
    )


def test_edges_are_labelled_by_key_or_outcome() -> None:
    """Menu edges carry the key, other edges the outcome; outcomes to one node are merged."""
    drawn = diagram(_flow())
    assert _labels(drawn, "menu") == {"ventas": "1", "menu": "*", "adios": "9, exhausted"}
    assert _labels(drawn, "ventas") == {"adios": "answered, no_answer, busy", "cerrado": "failed"}
    assert _labels(drawn, "cerrado") == {"adios": ""}


def test_business_hours_split_into_open_closed_and_holiday() -> None:
    """Each way out of an hours node is its own labelled edge, drawn from a Mermaid rhombus."""
    drawn = diagram(_flow())
    assert _labels(drawn, "horario") == {"menu": "open", "cerrado": "closed", "festivo": "holiday"}
    mermaid = to_mermaid(drawn)
    assert '    n_horario{"horario<br/>hours: Mon-Fri' in mermaid
    assert '    n_horario -->|"holiday"| n_festivo' in mermaid
    assert "    class n_horario hours" in mermaid


def test_unreachable_node_is_marked() -> None:
    """A node no way leads to is marked unreachable, and its label says so."""
    drawn = diagram(_flow())
    olvidado = drawn.node("olvidado")
    assert olvidado.marks == {Marking.UNREACHABLE}
    assert olvidado.label_lines()[-1] == "never reached"
    assert drawn.node("horario").marks == {Marking.ENTRY}
    assert "    class n_olvidado unreachable" in to_mermaid(drawn)


def test_node_from_which_the_call_cannot_end_is_a_dead_end() -> None:
    """Nodes from which no way leads to a hangup, dial or queue are marked dead ends."""
    flow = _flow()
    menu, cerrado = flow.nodes["menu"], flow.nodes["cerrado"]
    assert isinstance(menu, MenuNode)
    assert isinstance(cerrado, SayNode)
    looping = dataclasses.replace(menu, options={"1": "cerrado", "*": "menu"}, exhausted="menu")
    cerrado = dataclasses.replace(cerrado, next="menu")
    nodes = {**flow.nodes, "menu": looping, "cerrado": cerrado}
    drawn = diagram(dataclasses.replace(flow, nodes=nodes))
    dead = {node.id for node in drawn.nodes if Marking.DEAD_END in node.marks}
    assert dead == {"menu", "cerrado"}
    assert "dead end: the call cannot end from here" in drawn.node("menu").label_lines()
    assert "    class n_cerrado,n_menu deadend" in to_mermaid(drawn)


def test_valid_flows_have_no_dead_ends() -> None:
    """In a flow that validates every node can reach an end of the call, so none is marked."""
    for flow in (load_flow(FLOWS / "seguros.yaml"), load_flow(VALID / "every_kind.yaml")):
        marked = [n.id for n in diagram(flow).nodes if Marking.DEAD_END in n.marks]
        assert marked == [], flow.name


def test_mermaid_escapes_what_would_break_a_label() -> None:
    """Quotes, HTML brackets, '#' and '|' become entity codes; accents stay as they are."""
    assert escape('Pulse "#" <ya> & a|b ñú') == "Pulse #quot;#35;#quot; #lt;ya#gt; #amp; a#124;b ñú"


MERMAID_LINE = re.compile(
    r"%% .*|flowchart TD"
    r'|    [a-z]\w* ?(\(\("|>"|\{\{"|\{"|\("|\(\["|\[")[^"]*'
    r'("\)\)|"\]|"\}\}|"\}|"\)|"\]\)|"\])'
    r'|    [a-z]\w* (-->|-\.->)(\|"[^"]*"\|)? [a-z]\w*'
    r"|    classDef \w+ [\w:#, .-]+|    class [\w,]+ \w+"
)


def test_mermaid_lines_are_well_formed() -> None:
    """Every Mermaid line is a node, an edge or a class, with quoted labels free of quotes."""
    text = "name: tricky\nentry: end\nnodes:\n  end:\n    type: say\n"
    text += "    text: 'Pulse \"#\" o <0> | [1] {{2}} (3) {caller} ¿sí?'\n    next: graph\n"
    text += "  graph:\n    type: hangup\n"
    for flow in (load_flow(FLOWS / "seguros.yaml"), _flow(), _flow(text)):
        mermaid = to_mermaid(diagram(flow))
        bad = [line for line in mermaid.splitlines() if not MERMAID_LINE.fullmatch(line)]
        assert bad == [], flow.name
    assert "n_end --> n_graph" in mermaid
    assert "say: “Pulse #quot;#35;#quot; o #lt;0#gt; #124; [1] {2} (3) {caller}…”" in mermaid


def test_dot_quotes_backslashes_and_quotes() -> None:
    """DOT strings double backslashes (no '\\N' escapes) and escape quotes and newlines."""
    assert quote('a "b" \\N\nc') == '"a \\"b\\" \\\\N\\nc"'


@pytest.mark.parametrize("path", [FLOWS / "seguros.yaml", VALID / "every_kind.yaml"])
def test_dot_is_drawn_by_graphviz_with_every_label(path: object) -> None:
    """Graphviz draws the DOT of a flow as SVG that parses as XML and shows every node's id
    and label, accents included."""
    _dot_program()
    drawn = diagram(load_flow(str(path)))
    svg = render(to_dot(drawn), "svg")
    root = ET.fromstring(svg)
    texts = {"".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")}
    for node in drawn.nodes:
        assert {node.id, node.label} <= texts, node.id
    assert "call" in texts
    assert "on error" in texts


def test_dot_marks_entry_unreachable_and_hours() -> None:
    """The DOT text outlines the entry, dashes unreachable nodes and draws hours as a diamond."""
    dot = to_dot(diagram(_flow()))
    horario = next(line for line in dot.splitlines() if line.startswith('    "horario" ['))
    assert 'shape="diamond"' in horario
    assert 'penwidth="3"' in horario
    olvidado = next(line for line in dot.splitlines() if line.startswith('    "olvidado" ['))
    assert "dashed" in olvidado
    assert '"(on error)" -> "menu" [style="dashed"];' in dot
    checked = subprocess.run(
        [_dot_program(), "-Tcanon"], input=dot.encode(), capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stderr.decode()
