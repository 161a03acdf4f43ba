"""A flow diagram as Mermaid flowchart text, which GitHub and GitLab draw inside markdown
(in a ```mermaid block)."""

from __future__ import annotations

from flowpbx.authoring.diagram import Diagram, DiagramNode, Marking

START = "incoming"
ON_ERROR = "onerror"
"""Ids of the drawn-only nodes; flow nodes are drawn as n_<id>, so they never clash."""

SHAPES = {
    "hours": ('{"', '"}'),
    "switch": ('{{"', '"}}'),
    "menu": ('("', '")'),
    "input": ('("', '")'),
    "hangup": ('(["', '"])'),
}
"""Opening and closing of each kind's shape; other kinds are boxes. Decisions are rhombi
(business hours) and hexagons (switch), so the splits of the call stand out."""

CLASSES = {
    "entry": "stroke:#1f6feb,stroke-width:3px",
    "hours": "fill:#fff4d6,stroke:#bf8700,color:#000000",
    "unreachable": "fill:#eeeeee,stroke:#8c959f,stroke-dasharray:5 5,color:#57606a",
    "deadend": "fill:#ffebe9,stroke:#cf222e,stroke-width:2px,color:#000000",
    "note": "fill:#f6f8fa,stroke:#8c959f,color:#57606a",
}
MARK_CLASSES = {
    Marking.ENTRY: "entry",
    Marking.UNREACHABLE: "unreachable",
    Marking.DEAD_END: "deadend",
}

_ENTITIES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;"}
_ENTITIES |= {"|": "#124;", "\n": " ", "\r": " "}


def escape(text: str) -> str:
    """`text` safe inside a quoted Mermaid label: quotes, brackets of HTML, '#' and '|' as
    entity codes; letters with accents stay as they are (UTF-8)."""
    return "".join(_ENTITIES.get(char, char) for char in text)


def node_id(flow_id: str) -> str:
    """A flow node's id in Mermaid: prefixed, so ids like 'end' or 'graph' are not keywords."""
    return f"n_{flow_id}"


def _node(node: DiagramNode) -> str:
    opening, closing = SHAPES.get(node.kind, ('["', '"]'))
    label = "<br/>".join(escape(line) for line in node.label_lines())
    return f"    {node_id(node.id)}{opening}{label}{closing}"


def _arrow(source: str, target: str, label: str, arrow: str = "-->") -> str:
    text = f'|"{escape(label)}"|' if label else ""
    return f"    {source} {arrow}{text} {target}"


def to_mermaid(diagram: Diagram) -> str:
    """The diagram as a Mermaid flowchart, top to bottom, ending in a newline."""
    lines = [f"%% flowpbx graph: {escape(diagram.name)}", "flowchart TD"]
    lines.append(f'    {START}(("call"))')
    if diagram.on_error is not None:
        lines.append(f'    {ON_ERROR}>"on error"]')
    lines.extend(_node(node) for node in diagram.nodes)
    lines.append(_arrow(START, node_id(diagram.entry), ""))
    lines.extend(
        _arrow(node_id(edge.source), node_id(edge.target), edge.label) for edge in diagram.edges
    )
    if diagram.on_error is not None:
        lines.append(_arrow(ON_ERROR, node_id(diagram.on_error), "", "-.->"))
    lines.extend(f"    classDef {name} {style}" for name, style in CLASSES.items())
    members: dict[str, list[str]] = {name: [] for name in CLASSES}
    members["note"] = [START, *([ON_ERROR] if diagram.on_error is not None else [])]
    for node in diagram.nodes:
        if node.kind == "hours":
            members["hours"].append(node_id(node.id))
        for mark in sorted(node.marks):
            members[MARK_CLASSES[mark]].append(node_id(node.id))
    lines.extend(f"    class {','.join(ids)} {name}" for name, ids in members.items() if ids)
    return "\n".join(lines) + "\n"
