"""What a flow author sees in VS Code: the real yaml-language-server, driven over LSP, on the
shipped flows and on broken copies of them, with the schema named by each file's modeline."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowpbx.language.loader import check_text
from lsp_client import INSTALL_HINT, LspClient, LspError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "schema" / "flow.schema.json"
SEGUROS = ROOT / "flows" / "seguros.yaml"
SEGUROS_TEXT = SEGUROS.read_text("utf-8")
# A broken copy is opened as if it were a file next to seguros.yaml (it is never written), so
# that its modeline, ../schema/flow.schema.json, resolves to the real schema.
BROKEN = ROOT / "flows" / "__broken_copy.yaml"
MODELINE = "# yaml-language-server: $schema="

VALID_FLOWS = [
    *sorted((ROOT / "flows").glob("*.yaml")),
    *sorted((ROOT / "tests" / "flows" / "valid").glob("*.yaml")),
    *sorted((ROOT / "tests" / "flows" / "engine").glob("*.yaml")),
]
NODE_KINDS = ["say", "pause", "menu", "input", "dial", "enqueue"]
NODE_KINDS += ["record", "hangup", "goto", "set", "switch", "hours"]


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text("utf-8"))
    return schema


DEFS = _schema()["$defs"]


@pytest.fixture(scope="module")
def server() -> Iterator[LspClient]:
    """One yaml-language-server for the whole module; missing, it fails the tests, never skips."""
    try:
        client = LspClient()
    except LspError as error:
        message = str(error)
        pytest.fail(message if INSTALL_HINT in message else f"{message}; {INSTALL_HINT}")
    with client:
        yield client


def _position(text: str, node: str, key: str) -> tuple[int, int]:
    """The 1-based line and column of `key` inside node `node` of a flow's text."""
    lines = text.splitlines()
    start = lines.index(f"  {node}:")
    for number in range(start + 1, len(lines)):
        if lines[number].startswith(f"    {key}:"):
            return number + 1, 5
        if re.match(r"^  \S", lines[number]):
            break
    raise AssertionError(f"no {key!r} in node {node!r}")


def _plain(markdown: str) -> str:
    """Hover markdown without its backslash escapes, to compare with the schema's text."""
    return re.sub(r"\\(.)", r"\1", markdown)


def _line_of(text: str, fragment: str) -> int:
    """The 1-based number of the only line of `text` holding `fragment`."""
    numbers = [n for n, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(numbers) == 1, f"{fragment!r} is on lines {numbers}"
    return numbers[0]


def _with_modeline(path: Path) -> str:
    """The flow's text, with the schema modeline the shipped flows start with if it has none."""
    text = path.read_text("utf-8")
    if text.startswith(MODELINE):
        return text
    return f"{MODELINE}{os.path.relpath(SCHEMA_FILE, path.parent)}\n{text}"


@pytest.mark.parametrize("path", VALID_FLOWS, ids=[str(p.relative_to(ROOT)) for p in VALID_FLOWS])
def test_editor_valid_flow_has_no_diagnostics(server: LspClient, path: Path) -> None:
    """A valid flow, unquoted digit option keys included, shows no error in the editor."""
    assert [str(d) for d in server.diagnostics(path, _with_modeline(path))] == []


def test_editor_checks_flows_without_modeline_against_the_schema(server: LspClient) -> None:
    """A test flow given the modeline it lacks is checked against the schema: breaking it shows."""
    engine = ROOT / "tests" / "flows" / "engine"
    text = _with_modeline(engine / "short_loop.yaml")
    assert text.startswith(f"{MODELINE}../../../schema/flow.schema.json\n")
    assert text.count("type: hangup") == 1
    broken = text.replace("type: hangup", "type: colgar")
    found = server.diagnostics(engine / "__broken_copy.yaml", broken)
    assert [(d.line, d.message.split(".")[0]) for d in found] == [
        (_line_of(broken, "type: colgar"), "Value is not accepted")
    ]


PHONE = (
    'Expected a phone number in international form, in quotes, like "+34912345671"; '
    "or client:name, sip:user@host, or ${NAME} from config."
)
NODE_REF = "Expected the id of a node, like 'menu_principal': lowercase letters, digits and '_'."
OPTION_KEY = 'Expected a single key: 0-9, * or # (write * and # in quotes: "*": menu_principal).'
KINDS = ", ".join(f'"{kind}"' for kind in NODE_KINDS)

# name: (text replaced in seguros.yaml, its replacement, the line's fragment, the message)
BREAKAGES = {
    "unknown-node-type": (
        "  vida:\n    type: say\n",
        "  vida:\n    type: sing\n",
        "type: sing",
        f"Value is not accepted. Valid values: {KINDS}.",
    ),
    "phone-not-international": (
        "    to: ${VIDA_NUMBER}\n",
        '    to: "912345671"\n',
        'to: "912345671"',
        PHONE,
    ),
    "phone-unquoted": (
        "    to: ${VIDA_NUMBER}\n",
        "    to: +34912345671\n",
        "to: +34912345671",
        PHONE,
    ),
    "phone-in-list": (
        "    to: ${SALUD_NUMBER}\n",
        '    to: ["+34912345672", "sip:salud"]\n',
        '"sip:salud"',
        PHONE,
    ),
    "missing-required": (
        "    timeout: 25\n    no_answer: buzon_vida\n",
        "    timeout: 25\n",
        "  llamar_vida:",
        'Missing property "no_answer".',
    ),
    "option-to-a-number": (
        "      2: salud\n",
        "      2: 5\n",
        "      2: 5",
        NODE_REF,
    ),
    "option-key-two-digits": (
        "      9: agente_aviso\n",
        "      12: agente_aviso\n",
        "12: agente_aviso",
        OPTION_KEY,
    ),
    "option-key-letter": (
        '      "*": menu_principal\n',
        '      "x": menu_principal\n',
        '"x": menu_principal',
        OPTION_KEY,
    ),
    "holiday-date": (
        "      - date: 05-02\n",
        "      - date: 05-32\n",
        "date: 05-32",
        "Expected a date like 2026-12-25, 12-25 for every year, "
        "or easter-2 for Viernes Santo (days from Easter Sunday).",
    ),
    "hours": (
        "      monday-friday: 09:00-19:00\n",
        "      monday-friday: 9-19\n",
        "monday-friday: 9-19",
        "Expected opening hours like 09:00-19:00 (24-hour time; 24:00 for midnight at the end).",
    ),
    "unknown-key": (
        "    timeout: 25\n    no_answer: buzon_vida\n",
        "    timeout: 25\n    colour: blue\n    no_answer: buzon_vida\n",
        "colour: blue",
        "Property colour is not allowed.",
    ),
    "leave-key-unquoted": (
        '    leave_key: "0"\n',
        "    leave_key: 0\n",
        "leave_key: 0",
        'Expected a single key in quotes: "0" to "9", "*" or "#".',
    ),
}


@pytest.mark.parametrize(
    ("old", "new", "fragment", "message"), BREAKAGES.values(), ids=BREAKAGES.keys()
)
def test_editor_broken_copy_shows_readable_message(
    server: LspClient, old: str, new: str, fragment: str, message: str
) -> None:
    """A broken copy of seguros.yaml shows exactly one error, in plain words, on the right line."""
    assert SEGUROS_TEXT.count(old) == 1
    text = SEGUROS_TEXT.replace(old, new)
    found = server.diagnostics(BROKEN, text)
    assert [(d.line, d.message) for d in found] == [(_line_of(text, fragment), message)]
    assert check_text(text, BROKEN.name).flow is None, "flowpbx must reject it too"


def _patterned(schema: Any, pointer: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if "pattern" in schema:
            yield pointer, schema
        for key, value in schema.items():
            if key not in ("defaultSnippets", "if"):
                yield from _patterned(value, f"{pointer}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _patterned(value, f"{pointer}/{index}")


def test_editor_every_pattern_has_a_message() -> None:
    """No pattern reaches the editor as a raw regular expression: each has an errorMessage."""
    patterned = list(_patterned(_schema()))
    assert len(patterned) > 15
    assert [p for p, s in patterned if not str(s.get("errorMessage", "")).strip()] == []


@pytest.fixture(scope="module")
def seguros_uri(server: LspClient) -> Iterator[str]:
    """seguros.yaml, open in the editor for hovering."""
    uri, found = server.open(SEGUROS)
    assert found == []
    yield uri
    server.close_document(uri)


@pytest.mark.parametrize(
    ("node", "key", "description"),
    [
        ("menu_principal", "prompt", DEFS["menu_node"]["properties"]["prompt"]["description"]),
        ("buzon_general", "prompt", DEFS["record_node"]["properties"]["prompt"]["description"]),
        ("pedir_poliza", "prompt", DEFS["input_node"]["properties"]["prompt"]["description"]),
        (
            "menu_principal",
            "exhausted",
            DEFS["menu_node"]["properties"]["exhausted"]["description"],
        ),
        ("pedir_poliza", "exhausted", DEFS["input_node"]["properties"]["exhausted"]["description"]),
        ("menu_principal", "retries", DEFS["menu_node"]["properties"]["retries"]["description"]),
        ("cerrado", "text", DEFS["text"]["description"]),
    ],
    ids=lambda value: value if len(value) < 30 else "description",
)
def test_editor_hover_shows_the_field_description(
    server: LspClient, seguros_uri: str, node: str, key: str, description: str
) -> None:
    """Hovering a key shows the description of that field for that kind of node."""
    line, column = _position(SEGUROS_TEXT, node, key)
    hover = _plain(server.hover(seguros_uri, line, column))
    assert hover.split("\n\n")[1] == description


def test_editor_hover_prompts_differ_by_kind() -> None:
    """The prompts of a menu, an input and a record are described each in their own words."""
    prompts = [
        DEFS[f"{kind}_node"]["properties"]["prompt"]["description"]
        for kind in NODE_KINDS
        if "prompt" in DEFS[f"{kind}_node"]["properties"]
    ]
    assert len(prompts) == len(set(prompts)) == 3


def test_editor_hover_on_type_describes_the_kind_first(server: LspClient, seguros_uri: str) -> None:
    """Hovering 'type' of a menu lists the kinds of node, the menu's description first."""
    line, column = _position(SEGUROS_TEXT, "menu_principal", "type")
    hover = _plain(server.hover(seguros_uri, line, column))
    kinds = re.findall(r"^\* `(\w+)`: (.+)$", hover, re.MULTILINE)
    assert kinds[0][0] == "menu"
    assert sorted(kind for kind, _ in kinds) == sorted(NODE_KINDS)
    assert dict(kinds)["menu"] == DEFS["menu_node"]["properties"]["type"]["description"]


def _expand(snippet: str, indent: str) -> str:
    """A completion's snippet text as VS Code inserts it when every placeholder is kept."""
    text = re.sub(r"\$\{\d+:((?:[^}\\]|\\.)*)\}", lambda m: m.group(1), snippet)
    text = re.sub(r"\$\{\d+\}|\$\d+", "", text)
    text = re.sub(r"\\([$}\\])", r"\1", text)
    return text.replace("\n", "\n" + indent)


@pytest.fixture(scope="module")
def node_snippets(server: LspClient) -> dict[str, str]:
    """The node snippets the editor offers on the empty line under a new node's id."""
    text = SEGUROS_TEXT + "\n  nuevo:\n    \n"
    uri, _ = server.open(BROKEN, text)
    try:
        line = len(text.splitlines())
        items = server.completion(uri, line, 5)
    finally:
        server.close_document(uri)
    snippets: dict[str, str] = {}
    for item in items:
        label = str(item["label"])
        if label.endswith(" node"):
            edit = item.get("textEdit")
            snippets[label.removesuffix(" node")] = str(
                edit["newText"] if edit else item["insertText"]
            )
    return snippets


def test_editor_completion_offers_a_snippet_per_kind(node_snippets: dict[str, str]) -> None:
    """Completion at a new node offers one snippet for every kind of node."""
    assert sorted(node_snippets) == sorted(NODE_KINDS)


@pytest.mark.parametrize("kind", NODE_KINDS)
def test_editor_snippet_makes_a_valid_node(
    server: LspClient, node_snippets: dict[str, str], kind: str
) -> None:
    """A node snippet inserted as is into seguros.yaml gives a flow that flowpbx accepts, with
    no warning but that nothing leads to the new node yet, and the editor shows no error in."""
    body = _expand(node_snippets[kind], "    ")
    assert body.startswith(f"type: {kind}\n")
    text = f"{SEGUROS_TEXT}\n  nuevo_{kind}:\n    {body}\n"
    report = check_text(text, "seguros.yaml")
    assert [(str(p), p.code) for p in report.problems] == [
        (
            f"seguros.yaml:{_line_of(text, f'nuevo_{kind}:')}:3: warning: node 'nuevo_{kind}' is "
            "never reached: no other node leads to it",
            "unreachable",
        )
    ]
    assert report.flow is not None
    assert [str(d) for d in server.diagnostics(BROKEN, text)] == []


def test_editor_menu_snippet_has_every_path(node_snippets: dict[str, str]) -> None:
    """The menu snippet says where no key, a wrong key and running out of tries lead."""
    body = _expand(node_snippets["menu"], "")
    for key in ("prompt", "options", "retries", "no_input", "invalid", "exhausted"):
        assert re.search(rf"^{key}:", body, re.MULTILINE), key


# --- scenario test files (flows/tests/*.yaml, schema/scenario.schema.json) ----------------------

SCENARIOS = sorted((ROOT / "flows" / "tests").glob("*.yaml"))
SCENARIO_TEXT = SCENARIOS[0].read_text("utf-8")
BROKEN_SCENARIO = ROOT / "flows" / "tests" / "__broken_copy.yaml"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_editor_scenario_file_has_no_diagnostics(server: LspClient, path: Path) -> None:
    """A shipped scenario file shows no problem in the editor."""
    assert [str(d) for d in server.diagnostics(path)] == []


def test_editor_scenario_with_a_wrong_dial_outcome_is_underlined(server: LspClient) -> None:
    """A dial outcome that does not exist is flagged on its line, naming the ones that do."""
    old = "      - dial: no-answer\n"
    assert old in SCENARIO_TEXT
    text = SCENARIO_TEXT.replace(old, "      - dial: no answer\n", 1)
    found = server.diagnostics(BROKEN_SCENARIO, text)
    assert [d.line for d in found] == [_line_of(text, "dial: no answer")]
    assert all(word in found[0].message for word in ("answered", "no-answer", "busy", "failed"))


def test_editor_scenario_hover_explains_a_step(server: LspClient) -> None:
    """Hovering 'hear' in a scenario shows the scenario schema's description of that step."""
    schema = json.loads((ROOT / "schema" / "scenario.schema.json").read_text("utf-8"))
    descriptions = [
        value["properties"]["hear"]["description"]
        for value in _walk(schema)
        if isinstance(value, dict) and "description" in value.get("properties", {}).get("hear", {})
    ]
    uri, _ = server.open(BROKEN_SCENARIO, SCENARIO_TEXT)
    try:
        lines = SCENARIO_TEXT.splitlines()
        line = next(n for n, text in enumerate(lines, 1) if text.startswith("      - hear:"))
        hover = _plain(server.hover(uri, line, 9))
    finally:
        server.close_document(uri)
    assert descriptions, "the scenario schema describes no 'hear' step"
    assert any(description in hover for description in descriptions), hover


def _walk(value: Any) -> Iterator[Any]:
    """Every dict and list inside a JSON value, the value first."""
    yield value
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    )
    for child in children:
        yield from _walk(child)


def test_editor_key_indented_as_a_node_gets_one_plain_message(server: LspClient) -> None:
    """A node's last key indented like a node shows the node's missing key and one message in
    plain words on that line, not one 'Incorrect type' per node kind."""
    old = "    next: despedida\n\n  # --- 2 salud"
    assert SEGUROS_TEXT.count(old) == 1
    text = SEGUROS_TEXT.replace(old, "  next: despedida\n\n  # --- 2 salud")
    found = server.diagnostics(BROKEN, text)
    line = _line_of(text, "  # --- 2 salud") - 2
    node = DEFS["node"]["errorMessage"]
    assert [(d.line, d.message) for d in found] == [
        (_line_of(text, "  buzon_vida:"), 'Missing property "next".'),
        (line, node),
    ]
