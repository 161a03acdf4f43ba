"""YAML reading: core-schema scalars, marks for keys and values, and traps reported."""

from __future__ import annotations

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
