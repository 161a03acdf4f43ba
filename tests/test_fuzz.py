"""Fuzzing the flow checker: no input, however broken, makes check_text raise or mislocate."""

from __future__ import annotations

import json
import re
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowpbx.language.loader import Report, check_text

ROOT = Path(__file__).resolve().parents[1]
SEGUROS = (ROOT / "flows" / "seguros.yaml").read_text("utf-8")
_SCHEMA: dict[str, Any] = json.loads((ROOT / "schema" / "flow.schema.json").read_text("utf-8"))

NODE_TYPES: list[str] = _SCHEMA["$defs"]["node"]["properties"]["type"]["enum"]
TOP_LEVEL_KEYS = sorted(_SCHEMA["properties"])
QUEUE_KEYS = sorted(_SCHEMA["$defs"]["queue"]["properties"])
NODE_KEYS = sorted(
    {key for kind in NODE_TYPES for key in _SCHEMA["$defs"][f"{kind}_node"]["properties"]}
    | {"equals", "one_of", "starts_with", "date", "hours", "play"}
)
SEGUROS_NODE_IDS = sorted(
    match.group(1) for match in re.finditer(r"^  ([a-z][a-z0-9_]*):$", SEGUROS, re.MULTILINE)
)
# A line naming a node as its value: `entry: horario`, `next: despedida`, `1: vida`, ...
REFERENCE_LINE = re.compile(r'^(?P<head>\s*[\w"*]+: )(?P<ref>[a-z][a-z0-9_]*)(?P<tail>\s*)$')


def _names_node(line: str) -> bool:
    match = REFERENCE_LINE.match(line)
    return match is not None and match.group("ref") in SEGUROS_NODE_IDS


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _is_null_document(text: str) -> bool:
    """Whether YAML reads `text` as one document holding nothing, like `~` or a lone `---`.

    check_text gives such a text no flow and no problem at all (a bug in src/, pinned by
    test_check_text_reports_null_document); the fuzzers exempt it so they keep hunting others.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return False
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _assert_well_formed(report: Report, text: str, file: str) -> None:
    """Problems are located inside the text, say something, and an unusable flow has an error."""
    line_count = len(text.splitlines())
    for problem in report.problems:
        assert problem.file == file
        assert 1 <= problem.line <= line_count + 1, str(problem)
        assert problem.column >= 1, str(problem)
        assert problem.message.strip(), repr(problem)
        assert str(problem).startswith(f"{file}:{problem.line}:{problem.column}: ")
    if report.flow is not None:
        assert not report.errors
    elif not _is_null_document(text):
        assert report.errors, "no flow, yet no error says why"


# --- Random YAML-ish text -------------------------------------------------------------------

_PUNCTUATION = [":", ": ", "-", "- ", "? ", "{", "}", "[", "]", ",", "#", " #", "'", '"', "|", ">"]
_YAML_TRAPS = ["*", "*a", "&", "&a ", "!", "!!", "!!str ", "!!int ", "!!float ", "!!bool "]
_YAML_TRAPS += ["!!binary ", "!custom ", "<<: ", "---", "..."]
_YAML_TRAPS += ["!!python/object:os.system ", "%YAML 1.2\n", "---\n", "--- |\n"]
_LAYOUT = ["\n", "\n  ", "\n    ", "\n      ", "\t", "\n\t", " ", "  ", "\r\n", "\r", "\ufeff"]
_VALUES = ["~", "null", "true", "no", "yes", "0", "1", "-1", "1e400", "0x1F", "1_000", "3.5"]
_VALUES += ["09:00-19:00", "24:00-24:00", "12-25", "2026-02-30", "monday-friday"]
_VALUES += ["${X}", "{caller}", "{{", "+34910000000", "é", "😀", "\u2028", "\x85"]
_FRAGMENTS = st.one_of(
    st.sampled_from(_PUNCTUATION + _YAML_TRAPS + _LAYOUT + _VALUES),
    st.sampled_from([*TOP_LEVEL_KEYS, *NODE_KEYS, *NODE_TYPES]),
    st.text(max_size=8),
    st.integers(min_value=1, max_value=5000).map(lambda n: "x" * n),
    # Deeper than flowpbx's 50-level limit, but far below the C-stack crash reported by
    # test_check_text_deep_nesting_reports_instead_of_crashing.
    st.integers(min_value=1, max_value=300).map(lambda n: "[" * n),
    st.integers(min_value=1, max_value=300).map(lambda n: "{a: " * n),
    st.integers(min_value=1, max_value=120).map(lambda n: "[" * n + "]" * n),
)
YAMLISH_TEXT = st.lists(_FRAGMENTS, max_size=40).map("".join)


@FAST
@given(text=YAMLISH_TEXT)
def test_check_text_survives_yamlish_text(text: str) -> None:
    """Random YAML-like text never makes check_text raise, and every problem is located."""
    report = check_text(text, "fuzz.yaml")
    _assert_well_formed(report, text, "fuzz.yaml")


@FAST
@given(text=st.text(max_size=200))
def test_check_text_survives_any_text(text: str) -> None:
    """Arbitrary Unicode text never makes check_text raise, and every problem is located."""
    report = check_text(text, "any.yaml")
    _assert_well_formed(report, text, "any.yaml")


# --- Random structured documents ------------------------------------------------------------

_PLAUSIBLE = [
    "seguros",
    "Bienvenido.",
    "Hola {caller}",
    "{sin_cerrar",
    "09:00-19:00",
    "19:00-09:00",
    "12-25",
    "02-30",
    "2026-12-25",
    "+34910000000",
    "client:agente",
    "${VIDA_NUMBER}",
    "https://example.com/a.mp3",
    "Polly.Lucia",
    "Polly.Nadie",
    "es-ES",
    "Europe/Madrid",
    "Mars/Olympus",
    "monday-friday",
    "friday-monday",
    "general-queue",
    "round-robin",
    "+34",
    "#",
    "*",
    "1",
]
_NODE_IDS = ["inicio", "menu", "fin", "agente", "Bad-Id", "1", "x" * 70]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(_PLAUSIBLE + _NODE_IDS + NODE_TYPES),
)
_KEYS = st.one_of(
    st.sampled_from([*TOP_LEVEL_KEYS, *NODE_KEYS, *NODE_TYPES, *_NODE_IDS, "0", "9", "*", "#"]),
    st.text(max_size=10),
)
_ANYTHING = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=4),
    max_leaves=10,
)
_FIELD_VALUE = st.one_of(st.sampled_from(_PLAUSIBLE + _NODE_IDS), _ANYTHING)
_NODE = st.builds(
    lambda kind, fields: {"type": kind, **fields} if kind is not None else fields,
    kind=st.one_of(st.sampled_from(NODE_TYPES), st.none(), _SCALARS),
    fields=st.dictionaries(st.sampled_from(NODE_KEYS) | _KEYS, _FIELD_VALUE, max_size=8),
)
_NODES = st.one_of(
    st.dictionaries(st.sampled_from(_NODE_IDS) | _KEYS, _NODE | _ANYTHING, max_size=5),
    _ANYTHING,
)
_FLOW_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "name": _FIELD_VALUE,
        "description": _FIELD_VALUE,
        "entry": st.sampled_from(_NODE_IDS) | _FIELD_VALUE,
        "defaults": st.dictionaries(st.sampled_from(["voice", "language"]) | _KEYS, _FIELD_VALUE)
        | _ANYTHING,
        "config": st.dictionaries(st.sampled_from(["VIDA_NUMBER", "bad"]) | _KEYS, _FIELD_VALUE)
        | _ANYTHING,
        "on_error": st.dictionaries(st.sampled_from(["text", "next"]) | _KEYS, _FIELD_VALUE)
        | _ANYTHING,
        "queues": st.dictionaries(
            st.sampled_from(["general-queue", "Cola Mala", "q" * 70]) | _KEYS,
            st.dictionaries(st.sampled_from(QUEUE_KEYS) | _KEYS, _FIELD_VALUE) | _ANYTHING,
            max_size=3,
        )
        | _ANYTHING,
        "nodes": _NODES,
        "nodez": _ANYTHING,
    },
)
STRUCTURED_DOCUMENTS = st.one_of(_FLOW_SHAPED, _ANYTHING)


@FAST
@given(document=STRUCTURED_DOCUMENTS)
def test_check_text_survives_structured_documents(document: object) -> None:
    """Dumped data with wrong types anywhere never raises; an unusable flow always has an error."""
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    report = check_text(text, "structured.yaml")
    _assert_well_formed(report, text, "structured.yaml")


# --- Mutations of the shipped flow ----------------------------------------------------------

MUTATION_KINDS = ("delete", "duplicate", "swap", "replace_char", "truncate", "rename_reference")
_WORDS = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=20),
    st.sampled_from(SEGUROS_NODE_IDS),
)


@dataclass(frozen=True)
class Mutation:
    """One edit of a flow's text; positions wrap around whatever text it is applied to."""

    kind: str
    at: int
    other: int
    char: str
    word: str

    def apply(self, text: str) -> str:
        lines = text.splitlines(keepends=True)
        if not lines:
            return text
        i, j = self.at % len(lines), self.other % len(lines)
        if self.kind == "delete":
            del lines[i]
        elif self.kind == "duplicate":
            lines.insert(i, lines[i])
        elif self.kind == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif self.kind == "replace_char":
            k = self.at % len(text)
            return text[:k] + self.char + text[k + 1 :]
        elif self.kind == "truncate":
            return text[: self.at % (len(text) + 1)]
        else:
            references = [n for n, line in enumerate(lines) if _names_node(line)]
            if references:
                n = references[self.at % len(references)]
                lines[n] = REFERENCE_LINE.sub(rf"\g<head>{self.word}\g<tail>", lines[n])
        return "".join(lines)


MUTATIONS = st.builds(
    Mutation,
    kind=st.sampled_from(MUTATION_KINDS),
    at=st.integers(min_value=0, max_value=len(SEGUROS)),
    other=st.integers(min_value=0, max_value=len(SEGUROS)),
    char=st.sampled_from(list(":{}[]*&#!'\"\t-")),
    word=_WORDS,
)


def test_fuzz_seguros_has_references_to_mutate() -> None:
    """The mutation fuzzer finds node ids and lines naming them in seguros.yaml."""
    assert "menu_principal" in SEGUROS_NODE_IDS
    references = [line for line in SEGUROS.splitlines() if _names_node(line)]
    assert "entry: horario" in references
    assert "      1: vida" in references


_ENTRY_LINE = SEGUROS.splitlines().index("entry: horario")


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (
            Mutation("delete", _ENTRY_LINE, 0, ":", ""),
            "description: Menú principal de la aseguradora, en español.\n\ndefaults:",
        ),
        (Mutation("duplicate", _ENTRY_LINE, 0, ":", ""), "entry: horario\nentry: horario\n"),
        (Mutation("swap", _ENTRY_LINE, _ENTRY_LINE - 1, ":", ""), "entry: horario\ndescription:"),
        (Mutation("replace_char", 0, 0, "&", ""), "& yaml-language-server"),
        (Mutation("rename_reference", 0, 0, ":", "nowhere"), "entry: nowhere\n"),
    ],
    ids=["delete", "duplicate", "swap", "replace_char", "rename_reference"],
)
def test_fuzz_mutation_edits_text(mutation: Mutation, expected: str) -> None:
    """Each kind of mutation really edits seguros.yaml the way the fuzzer expects."""
    mutated = mutation.apply(SEGUROS)
    assert mutated != SEGUROS
    assert expected in mutated


def test_fuzz_truncate_mutation_shortens_text() -> None:
    """A truncate mutation keeps only the text before its position."""
    assert Mutation("truncate", 10, 0, ":", "").apply(SEGUROS) == SEGUROS[:10]


@settings(max_examples=120, deadline=None)
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3))
def test_check_text_survives_seguros_mutations(mutations: list[Mutation]) -> None:
    """Edited copies of seguros.yaml never raise: each is a flow or has located errors."""
    text = SEGUROS
    for mutation in mutations:
        text = mutation.apply(text)
    report = check_text(text, "seguros.yaml")
    _assert_well_formed(report, text, "seguros.yaml")


# --- Generated valid flows, then one reference renamed --------------------------------------

_NODE_ID = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
_TEXTS = st.sampled_from(["Bienvenido.", "Gracias por su llamada.", "Su número es {caller}."])
_SENDING_KINDS = (
    "say",
    "pause",
    "menu",
    "input",
    "dial",
    "enqueue",
    "record",
    "goto",
    "set",
    "switch",
    "hours",
)
_REFERENCE_KEYS = ("next", "exhausted", "no_answer", "full", "target", "default", "open", "closed")
ReferencePath = tuple[str | int, ...]


@st.composite
def _valid_flows(draw: st.DrawFn) -> tuple[dict[str, Any], list[ReferencePath]]:
    """A flow whose nodes only lead forward (so it cannot loop), and every path naming a node."""
    ids = draw(st.lists(_NODE_ID, min_size=1, max_size=8, unique=True))
    nodes: dict[str, Any] = {}
    references: list[ReferencePath] = [("entry",)]
    for position, node_id in enumerate(ids):
        later = ids[position + 1 :]
        if not later:
            nodes[node_id] = {"type": "hangup", "text": draw(_TEXTS)}
            continue
        kind = draw(st.sampled_from(_SENDING_KINDS))

        def target(later: list[str] = later) -> str:
            return draw(st.sampled_from(later))

        node: dict[str, Any] = {"type": kind}
        if kind == "say":
            node.update(text=draw(_TEXTS), next=target())
        elif kind == "pause":
            node.update(seconds=draw(st.integers(1, 60)), next=target())
        elif kind == "menu":
            keys = draw(
                st.lists(st.sampled_from("0123456789*#"), min_size=1, max_size=4, unique=True)
            )
            node.update(
                prompt=draw(_TEXTS), options={k: target() for k in keys}, exhausted=target()
            )
            references += [("nodes", node_id, "options", k) for k in keys]
        elif kind == "input":
            node.update(prompt=draw(_TEXTS), variable="numero", next=target(), exhausted=target())
        elif kind == "dial":
            node.update(to="+34910000000", no_answer=target())
        elif kind == "enqueue":
            node.update(queue="general-queue", full=target())
        elif kind == "record":
            node.update(next=target())
        elif kind == "goto":
            node.update(target=target(), limit=draw(st.integers(1, 5)), exhausted=target())
        elif kind == "set":
            node.update(values={"paso": "uno"}, next=target())
        elif kind == "switch":
            node.update(variable="caller", cases=[{"equals": "+34600000000", "next": target()}])
            node.update(default=target())
            references.append(("nodes", node_id, "cases", 0, "next"))
        else:
            node.update(
                timezone="Europe/Madrid",
                weekly={"monday-friday": "09:00-19:00"},
                open=target(),
                closed=target(),
            )
        references += [("nodes", node_id, key) for key in _REFERENCE_KEYS if key in node]
        nodes[node_id] = node
    flow: dict[str, Any] = {"name": "generado", "entry": ids[0], "nodes": nodes}
    if any(node["type"] == "enqueue" for node in nodes.values()):
        flow["queues"] = {"general-queue": {}}  # enqueue nodes name a queue declared in the file
    if draw(st.booleans()):
        flow["on_error"] = {"next": draw(st.sampled_from(ids))}
        references.append(("on_error", "next"))
    return flow, references


def _set_at(document: dict[str, Any], path: ReferencePath, value: str) -> None:
    container: Any = document
    for part in path[:-1]:
        container = container[part]
    container[path[-1]] = value


@settings(max_examples=100, deadline=None)
@given(generated=_valid_flows(), data=st.data())
def test_check_text_reports_renamed_target_missing(
    generated: tuple[dict[str, Any], list[ReferencePath]], data: st.DataObject
) -> None:
    """Renaming any reference of a valid flow to an unknown id yields a 'does not exist' error."""
    flow, references = generated
    valid = check_text(yaml.safe_dump(flow, sort_keys=False, allow_unicode=True), "gen.yaml")
    assert valid.flow is not None, [str(p) for p in valid.problems]
    path = data.draw(st.sampled_from(references), label="reference")
    missing = data.draw(_NODE_ID.filter(lambda i: i not in flow["nodes"]), label="missing id")
    _set_at(flow, path, missing)
    report = check_text(yaml.safe_dump(flow, sort_keys=False, allow_unicode=True), "gen.yaml")
    assert report.flow is None
    assert any(
        "does not exist" in p.message and f"'{missing}'" in p.message for p in report.errors
    ), [str(p) for p in report.problems]


# --- Inputs that once broke the validator (found by fuzzing) ----------------------------------


def test_check_text_deep_nesting_reports_instead_of_crashing() -> None:
    """200 000 unclosed '[' (200 kB, under the 5 MB limit) give an error, not a crashed process."""
    code = (
        "from flowpbx.language.loader import check_text\n"
        "report = check_text('[' * 200_000, 'deep.yaml')\n"
        "assert report.flow is None and report.errors\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])


def test_check_text_rejects_day_with_trailing_newline() -> None:
    """A weekly key "monday\\n" is reported as a bad day instead of raising ValueError."""
    text = SEGUROS.replace("monday-friday: 09:00-19:00", '"monday\\n": 09:00-19:00')
    report = check_text(text, "seguros.yaml")
    assert report.flow is None
    assert report.errors


def test_check_text_reports_lone_surrogate() -> None:
    """Text holding a lone surrogate (not valid Unicode) is reported instead of raising."""
    report = check_text("name: \ud800\n", "surrogate.yaml")
    assert report.flow is None
    assert report.errors


@pytest.mark.parametrize(
    "text",
    ["~", "null\n", "---\n", "--- ~\n...\n", "&anchor ~"],
    ids=["tilde", "null", "bare-document-start", "explicit-end", "anchored"],
)
def test_check_text_reports_null_document(text: str) -> None:
    """A document holding only null is reported as an error, like an empty file is."""
    report = check_text(text, "null.yaml")
    assert report.flow is None
    assert report.errors


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: 1\n", id="three-missing-top-level-keys"),
        pytest.param(
            "name: x\nnodes:\n  a:\n    type: dial\n",
            id="node-missing-two-keys",
        ),
        pytest.param("name: x\nentry: a\nnodes:\n  a:\n", id="empty-node"),
        pytest.param("name: x\nentry: a\nnodes:\n  a: say\n", id="node-is-text"),
    ],
)
def test_check_text_reports_each_problem_once(text: str) -> None:
    """The same problem is never reported twice at the same place."""
    problems = check_text(text, "duplicates.yaml").problems
    assert problems
    assert len(set(problems)) == len(problems), [str(p) for p in problems]


@pytest.mark.parametrize(
    ("written", "replacement"),
    [
        ('"*": menu_principal', '"*\\n": menu_principal'),
        ("to: ${VIDA_NUMBER}", 'to: "+34912345671\\n"'),
    ],
    ids=["menu-key", "phone-number"],
)
def test_check_text_rejects_trailing_newline_in_patterned_value(
    written: str, replacement: str
) -> None:
    """A value checked by a schema pattern is rejected when it ends with a newline."""
    assert written in SEGUROS
    report = check_text(SEGUROS.replace(written, replacement), "seguros.yaml")
    assert report.flow is None
