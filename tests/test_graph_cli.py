"""`flowpbx graph` through its command line: each format, where it writes, a missing Graphviz,
unknown and broken flows."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conftest import FLOWS
from flowpbx.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_ROOT = "{http://www.w3.org/2000/svg}svg"

BROKEN = """\
name: roto
entry: hola
nodes:
  hola:
    type: say
    text: Hola.
    next: adiso
  adios:
    type: hangup
"""


def graph(*args: str) -> Result:
    return CliRunner().invoke(main, ["graph", *args])


def test_graph_prints_mermaid_by_default() -> None:
    """With no --format, a flow named from the flows folder is printed as a Mermaid flowchart."""
    result = graph("seguros", "--flows", str(FLOWS))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("%% flowpbx graph: seguros\nflowchart TD\n")
    assert '    n_horario -->|"open"| n_bienvenida' in result.stdout
    assert result.stderr == ""


def test_graph_writes_dot_to_a_file(tmp_path: Path) -> None:
    """--format dot --output FILE writes the DOT digraph in UTF-8 and prints nothing."""
    out = tmp_path / "seguros.dot"
    result = graph(str(FLOWS / "seguros.yaml"), "--format", "dot", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    text = out.read_text("utf-8")
    assert text.startswith('digraph "seguros" {')
    assert "Seguros de automóvil" in text


def test_graph_writes_svg_that_parses_as_xml(tmp_path: Path) -> None:
    """--format svg draws the diagram through Graphviz into an SVG file."""
    out = tmp_path / "seguros.svg"
    result = graph(str(FLOWS / "seguros.yaml"), "--format", "svg", "-o", str(out))
    assert result.exit_code == 0, result.output
    root = ET.fromstring(out.read_bytes())
    assert root.tag == SVG_ROOT
    assert "menu_principal" in "".join(root.itertext())


def test_graph_prints_svg_to_stdout() -> None:
    """Without --output an SVG goes to standard output."""
    result = graph(str(FLOWS / "seguros.yaml"), "--format", "svg")
    assert result.exit_code == 0, result.output
    assert ET.fromstring(result.stdout_bytes).tag == SVG_ROOT


def test_graph_writes_png(tmp_path: Path) -> None:
    """--format png writes a PNG image."""
    out = tmp_path / "seguros.png"
    result = graph(str(FLOWS / "seguros.yaml"), "--format", "png", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("output_format", ["svg", "png"])
def test_graph_without_graphviz_says_how_to_install_it(
    output_format: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no `dot` on the PATH, images fail with exit code 2 and how to install Graphviz."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = tmp_path / f"seguros.{output_format}"
    result = graph(str(FLOWS / "seguros.yaml"), "--format", output_format, "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr == (
        "flowpbx graph: Graphviz is not installed: install it with 'apt-get install graphviz' "
        "(Debian/Ubuntu) or use --format mermaid\n"
    )
    assert not out.exists()


def test_graph_without_graphviz_still_prints_mermaid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mermaid and DOT text need no Graphviz."""
    monkeypatch.setenv("PATH", str(tmp_path))
    for output_format in ("mermaid", "dot"):
        result = graph(str(FLOWS / "seguros.yaml"), "--format", output_format)
        assert result.exit_code == 0, result.output


def test_graph_unknown_flow_suggests_the_closest_name() -> None:
    """A flow name not in the flows folder is a usage error that suggests the closest one."""
    result = graph("segros", "--flows", str(FLOWS))
    assert result.exit_code == 2
    assert "no flow 'segros' in" in result.stderr
    assert "(did you mean 'seguros'?)" in result.stderr


def test_graph_broken_flow_prints_its_problems(tmp_path: Path) -> None:
    """A flow with errors draws nothing: its problems are printed and the exit code is 1."""
    path = tmp_path / "roto.yaml"
    path.write_text(BROKEN, "utf-8")
    result = graph(str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "roto.yaml:7:11: error: node 'hola': 'next' goes to 'adiso'" in result.stderr
    assert f"flowpbx graph: {path} has errors" in result.stderr


def test_graph_flow_with_warnings_is_drawn_with_them(tmp_path: Path) -> None:
    """Warnings (an unreachable node) go to stderr; the diagram is drawn and marks the node."""
    path = tmp_path / "aviso.yaml"
    path.write_text(BROKEN.replace("adiso", "adios") + "  suelto:\n    type: hangup\n", "utf-8")
    result = graph(str(path))
    assert result.exit_code == 0, result.output
    assert "warning: node 'suelto' is never reached" in result.stderr
    assert "    class n_suelto unreachable" in result.stdout
