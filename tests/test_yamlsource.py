"""YAML reading: core-schema scalars, marks for keys and values, and traps reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowpbx.errors import Mark
from flowpbx.language.yamlsource import decode, parse


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("v: 19:00", "19:00", id="sexagesimal-stays-text"),
        pytest.param("v: 09:00-19:00", "09:00-19:00", id="hours-range"),
        pytest.param("v: no", "no", id="norway-stays-text"),
        pytest.param("v: on", "on", id="on-stays-text"),
        pytest.param("v: 2026-12-25", "2026-12-25", id="date-stays-text"),
        pytest.param("v: 0x1F", "0x1F", id="hex-stays-text"),
        pytest.param("v: 010", 10, id="leading-zero-is-decimal"),
        pytest.param("v: true", True, id="true"),
        pytest.param("v: False", False, id="false"),
        pytest.param("v: ~", None, id="null"),
        pytest.param("v:", None, id="empty-is-null"),
        pytest.param("v: 2.5", 2.5, id="float"),
        pytest.param("v: '5'", "5", id="quoted-number"),
    ],
)
def test_parse_uses_core_schema_scalars(text: str, value: object) -> None:
    """Only true/false, decimal numbers and null are typed; YAML 1.1 surprises stay text."""
    document = parse(text)
    assert document.issues == []
    assert document.data == {"v": value}


def test_parse_keeps_keys_as_written() -> None:
    """Mapping keys stay text, so 1: and "1": are the same key and reported as duplicates."""
    document = parse('options:\n  1: a\n  "1": b\n  2: c\n')
    assert document.data == {"options": {"1": "a", "2": "c"}}
    (issue,) = document.issues
    assert (issue.code, issue.mark, issue.path) == ("duplicate-key", Mark(3, 3), ("options", "1"))


def test_parse_marks_keys_and_values() -> None:
    """Every key and value is located by 1-based line and column."""
    document = parse("nodes:\n  menu:\n    type: menu\n    options: [a, b]\n")
    marks = document.marks
    assert marks.key(("nodes", "menu")) == Mark(2, 3)
    assert marks.value(("nodes", "menu", "type")) == Mark(3, 11)
    assert marks.value(("nodes", "menu", "options", 1)) == Mark(4, 18)
    assert marks.value(("nodes", "menu", "missing", "deeper")) == Mark(3, 5)


@pytest.mark.parametrize(
    ("text", "code", "mark"),
    [
        pytest.param("a:\n\tb: 1\n", "yaml-tab", Mark(2, 1), id="tab"),
        pytest.param("a: !!binary aGk=\n", "yaml-tag", Mark(1, 4), id="tag"),
        pytest.param("a: !!int cinco\n", "yaml-tag", Mark(1, 4), id="bad-int-tag"),
        pytest.param("a: &x 1\nb: *x\n", "yaml-alias", Mark(2, 1), id="alias"),
        pytest.param("? [a]\n: 1\n", "yaml-key", Mark(1, 3), id="complex-key"),
        pytest.param("", "empty", Mark(1, 1), id="empty"),
        pytest.param("# only a comment\n", "empty", Mark(1, 1), id="comment-only"),
        pytest.param("a: 'x\n", "yaml-syntax", Mark(1, 4), id="open-quote"),
    ],
)
def test_parse_reports_traps(text: str, code: str, mark: Mark) -> None:
    """Traps become located issues, never exceptions."""
    document = parse(text)
    assert [(i.code, i.mark) for i in document.issues][:1] == [(code, mark)]


def test_decode_strips_byte_order_mark() -> None:
    """A UTF-8 byte order mark is not part of the text."""
    assert decode("\ufeffa: 1".encode()) == ("a: 1", [])


def test_parse_many_flat_brackets_stay_on_fast_parser() -> None:
    """Thousands of [lists] and ${config} at shallow depth are parsed normally."""
    text = "".join(f"k{i}: [a, b, '${{X}}']\n" for i in range(2000))
    document = parse(text)
    assert document.issues == []
    assert len(document.data) == 2000


def test_parse_pathological_nesting_is_reported_not_a_crash() -> None:
    """Nesting deep enough to overflow libyaml's C stack is an issue, not a segfault."""
    document = parse("a: " + "[" * 200_000)
    assert [issue.code for issue in document.issues] == ["yaml-depth"]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("\x80" + "[" * 101, id="c1-control-before-deep-nesting"),
        pytest.param("a: \ufffe\n", id="noncharacter"),
        pytest.param("a: b\x1bc\n", id="escape"),
    ],
)
def test_parse_reports_characters_yaml_forbids(text: str) -> None:
    """Characters outside YAML's printable set are a located issue, whichever parser runs."""
    (issue,) = parse(text).issues
    assert issue.code == "control-character"


ROOT = Path(__file__).resolve().parents[1]
VALID_FLOWS = sorted(
    [
        *(ROOT / "flows").glob("*.yaml"),
        *(ROOT / "tests" / "flows" / "valid").glob("*.yaml"),
        *(ROOT / "tests" / "flows" / "engine").glob("*.yaml"),
    ]
)


@pytest.mark.parametrize("path", VALID_FLOWS, ids=[p.stem for p in VALID_FLOWS])
def test_parse_gives_no_advice_on_valid_flows(path: Path) -> None:
    """The advice on mistakes never fires on a well-written flow."""
    assert parse(path.read_text("utf-8")).issues == []


@pytest.mark.parametrize(
    ("text", "mark", "message"),
    [
        pytest.param(
            "n:\n  a:\n    type dial\n    to: x\n",
            Mark(3, 5),
            "add ':' after 'type' (write 'type: dial')",
            id="missing-colon-seen-on-next-line",
        ),
        pytest.param(
            "n:\n  a:\n    type: say\n    next b\n",
            Mark(4, 5),
            "add ':' after 'next' (write 'next: b')",
            id="missing-colon-on-last-line",
        ),
        pytest.param(
            "n:\n  a:\n    type:dial\n    to: x\n",
            Mark(3, 5),
            "add a space after ':' in 'type:dial' (write 'type: dial')",
            id="missing-space",
        ),
        pytest.param(
            "nodes:\n  a:\n    type: say\n     next: b\n",
            Mark(4, 6),
            "'next' is indented 5 spaces; the keys of node 'a' are at 4",
            id="too-deep",
        ),
        pytest.param(
            "nodes:\n  a:\n    type: dial\n  timeout: 5\n    no_answer: b\n",
            Mark(4, 3),
            "'timeout' is indented 2 spaces; the keys of node 'a' are at 4",
            id="too-shallow-seen-on-next-line",
        ),
        pytest.param(
            "nodes:\n  a:\n    type: dial\n   timeout: 5\n    no_answer: b\n",
            Mark(4, 4),
            "'timeout' is indented 3 spaces; the keys of node 'a' are at 4",
            id="between-two-levels",
        ),
        pytest.param(
            "nodes:\n  a:\n     type: dial\n    to: x\n    no_answer: b\n",
            Mark(3, 6),
            "'type' is indented 5 spaces; the keys of node 'a' are at 4",
            id="first-key-sets-the-indentation",
        ),
        pytest.param(
            "a:\n  text: 'Hola.\n",
            Mark(2, 9),
            "close the quote: this text starts with ' but does not end with '",
            id="unclosed-single-quote",
        ),
        pytest.param(
            'c:\n  A: "+341\n  B: "+342"\n',
            Mark(2, 6),
            'close the quote: this text starts with " but does not end with "',
            id="quote-closed-by-a-later-line",
        ),
        pytest.param(
            "a:\n  text: Hola.\n  y adiós.\n  next: b\n",
            Mark(3, 3),
            "this line goes on with the text of 'text' (line 2): indent it more than 'text', "
            "or put the whole text on line 2",
            id="text-not-indented-under-its-key",
        ),
        pytest.param(
            "a:\n  text: Hola\n    Horario: de 9 a 19.\n",
            Mark(3, 12),
            "a ':' followed by a space inside a value; put the whole text in quotes",
            id="colon-in-text-is-not-an-indentation-mistake",
        ),
    ],
)
def test_parse_advises_on_the_line_to_change(text: str, mark: Mark, message: str) -> None:
    """A parser error is reported where the mistake is, with advice that fixes it."""
    issue = parse(text).issues[0]
    assert (issue.code, issue.mark, issue.message) == ("yaml-syntax", mark, message)


def test_parse_reads_on_after_a_mended_mistake() -> None:
    """A mistake with a sure fix is mended in a copy: the data is what was meant, later
    mistakes are reported too, and marks point into the text as written."""
    document = parse("nodes:\n  a:\n    type dial\n    to: x\n  b:\n    type say\n")
    assert [(i.mark, i.mended) for i in document.issues] == [(Mark(3, 5), True), (Mark(6, 5), True)]
    assert document.data == {"nodes": {"a": {"type": "dial", "to": "x"}, "b": {"type": "say"}}}
    assert document.marks.value(("nodes", "a", "type")) == Mark(3, 10)


def test_parse_reads_unquoted_phone_numbers_as_written() -> None:
    """An unquoted phone number under config is reported, and read as the text written."""
    document = parse("config:\n  VIDA: +34912345671\n")
    (issue,) = document.issues
    assert (issue.code, issue.mark) == ("yaml-number", Mark(2, 9))
    assert issue.message == (
        "config 'VIDA': +34912345671 was read as a number; put it in quotes: \"+34912345671\""
    )
    assert document.data == {"config": {"VIDA": "+34912345671"}}


@pytest.mark.parametrize(
    ("text", "data", "message"),
    [
        pytest.param(
            "nodes:\n  a:\n    type: say\n    b:\n      type: hangup\n",
            {"nodes": {"a": {"type": "say"}, "b": {"type": "hangup"}}},
            "node 'b' is inside node 'a': indent 'b' 2 spaces, like 'a'",
            id="node-inside-node",
        ),
        pytest.param(
            "nodes:\n  a:\n    type: say\n  next: b\n",
            {"nodes": {"a": {"type": "say", "next": "b"}}},
            "'next' is indented 2 spaces, so it reads as a node; the keys of node 'a' are at 4",
            id="key-read-as-node",
        ),
        pytest.param(
            "nodes:\n  a:\n    type: menu\n    options:\n      - 1: b\n      - 2: c\n",
            {"nodes": {"a": {"type": "menu", "options": {"1": "b", "2": "c"}}}},
            "write 'options' as key: value lines without '-'",
            id="list-for-mapping",
        ),
    ],
)
def test_parse_mends_structure_read_otherwise(text: str, data: object, message: str) -> None:
    """Text that parses into the wrong shape is reported and read as it was meant."""
    document = parse(text)
    assert [i.message for i in document.issues] == [message]
    assert document.data == data


def test_parse_advice_without_a_sure_fix_stops_reading() -> None:
    """A list of plain words where key: value lines belong cannot be mended: reported, kept."""
    document = parse("nodes:\n  a:\n    type: menu\n    options:\n      - b\n")
    (issue,) = document.issues
    assert (issue.mark, issue.path, issue.mended) == (
        Mark(5, 7),
        ("nodes", "a", "options"),
        False,
    )
    assert document.data["nodes"]["a"]["options"] == ["b"]


_SEGUROS = Path(__file__).resolve().parents[1] / "flows" / "seguros.yaml"
_VIDA = "    text: Ha elegido seguros de vida. Le pasamos con el departamento de seguros de vida.\n"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(
            "description: Menú principal de la aseguradora, en español.\n",
            "description: |\n  Menú principal.\n  name: seguros-es (no cambiar)\n",
            id="top-level-key-already-set",
        ),
        pytest.param(
            _VIDA,
            _VIDA + "    description: |\n      Transfiere a vida.\n      timeout: lo decide él\n",
            id="key-the-node-kind-does-not-have",
        ),
    ],
)
def test_parse_text_block_with_a_key_like_line_is_text(old: str, new: str) -> None:
    """A line like 'name: ...' inside a | text is the author's text when the mapping already
    has that key or cannot have it: no advice, the flow loads."""
    from flowpbx.language.loader import check_text

    text = _SEGUROS.read_text("utf-8")
    assert old in text
    report = check_text(text.replace(old, new, 1), "seguros.yaml")
    assert report.problems == ()
