"""A flow diagram as Graphviz DOT text, and DOT drawn as SVG or PNG by Graphviz's `dot`."""

from __future__ import annotations

import shutil
import subprocess

from flowpbx.authoring.diagram import Diagram, DiagramNode, Marking
from flowpbx.errors import FlowpbxError

START = "(call)"
ON_ERROR = "(on error)"
"""Ids of the drawn-only nodes: flow node ids cannot hold brackets or spaces."""

SHAPES = {"hours": "diamond", "switch": "hexagon", "hangup": "oval"}
ROUNDED = frozenset({"menu", "input"})
RENDER_TIMEOUT = 60.0
"""Seconds `dot` may take; even flows of hundreds of nodes take well under one."""

INSTALL_HINT = (
    "Graphviz is not installed: install it with 'apt-get install graphviz' (Debian/Ubuntu) "
    "or use --format mermaid"
)


class GraphvizError(FlowpbxError):
    """Graphviz could not draw the diagram."""


class GraphvizMissing(GraphvizError):
    """There is no `dot` program on the PATH."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def quote(text: str) -> str:
    """`text` as a DOT double-quoted string; backslashes are doubled, so no '\\N' escapes."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ")
    return '"' + escaped.replace("\n", "\\n") + '"'


def _attributes(**values: str) -> str:
    return "[" + ", ".join(f"{key}={quote(value)}" for key, value in values.items()) + "]"


def _node(node: DiagramNode) -> str:
    styles = ["filled", *(["rounded"] if node.kind in ROUNDED else [])]
    attributes = {
        "label": "\n".join(node.label_lines()),
        "shape": SHAPES.get(node.kind, "box"),
        "fillcolor": "#fff4d6" if node.kind == "hours" else "#ffffff",
    }
    if Marking.ENTRY in node.marks:
        attributes |= {"color": "#1f6feb", "penwidth": "3"}
    if Marking.UNREACHABLE in node.marks:
        styles.append("dashed")
        attributes |= {"fillcolor": "#eeeeee", "fontcolor": "#57606a"}
    if Marking.DEAD_END in node.marks:
        attributes |= {"fillcolor": "#ffebe9", "color": "#cf222e", "penwidth": "2"}
    attributes["style"] = ",".join(styles)
    return f"    {quote(node.id)} {_attributes(**attributes)};"


def to_dot(diagram: Diagram) -> str:
    """The diagram as a DOT digraph (UTF-8), top to bottom, ending in a newline."""
    title = _attributes(charset="UTF-8", label=diagram.name, labelloc="t", fontname="Helvetica")
    lines = [
        f"digraph {quote(diagram.name)} {{",
        f"    graph {title};",
        '    node [fontname="Helvetica", fontsize="10"];',
        '    edge [fontname="Helvetica", fontsize="9"];',
        f"    {quote(START)} {_attributes(label='call', shape='circle', style='filled')};",
    ]
    if diagram.on_error is not None:
        lines.append(f"    {quote(ON_ERROR)} {_attributes(label='on error', shape='note')};")
    lines.extend(_node(node) for node in diagram.nodes)
    lines.append(f"    {quote(START)} -> {quote(diagram.entry)};")
    for edge in diagram.edges:
        label = f" {_attributes(label=edge.label)}" if edge.labels else ""
        lines.append(f"    {quote(edge.source)} -> {quote(edge.target)}{label};")
    if diagram.on_error is not None:
        dashed = _attributes(style="dashed")
        lines.append(f"    {quote(ON_ERROR)} -> {quote(diagram.on_error)} {dashed};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, output_format: str, *, timeout: float = RENDER_TIMEOUT) -> bytes:
    """`dot_text` drawn by Graphviz as `output_format` ('svg', 'png').

    Raises GraphvizMissing when `dot` is not on the PATH, GraphvizError when it fails.
    """
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing
    try:
        done = subprocess.run(
            [program, f"-T{output_format}"],
            input=dot_text.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"graphviz 'dot' took more than {timeout:g} s; gave up") from None
    except OSError as exc:
        raise GraphvizError(f"cannot run graphviz 'dot' ({program}): {exc}") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"
        raise GraphvizError(f"graphviz 'dot' could not draw the diagram: {reason}")
    return done.stdout
