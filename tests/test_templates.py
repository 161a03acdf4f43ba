"""Text templates: variables substitute safely; anything else is literal or an error."""

from __future__ import annotations

import pytest

from flowpbx.language.templates import TemplateError, Variable, parse_template


def test_template_renders_variables_and_spells_digits() -> None:
    """{name} is replaced by its value and {name:digits} reads it digit by digit."""
    template = parse_template("Póliza {poliza:digits}, llamada de {caller}.")
    assert template.variables == frozenset({"poliza", "caller"})
    assert template.render({"poliza": "1234", "caller": "+34600"}) == (
        "Póliza 1 2 3 4, llamada de +34600."
    )


def test_template_missing_value_renders_empty() -> None:
    """A variable with no value yet becomes empty text rather than failing the call."""
    assert parse_template("Hola {nombre}.").render({}) == "Hola ."


def test_template_doubled_braces_are_literal() -> None:
    """{{ and }} stand for literal braces and are not variables."""
    template = parse_template("{{caller}} {caller}")
    assert template.parts == ("{caller} ", Variable("caller"))
    assert template.render({"caller": "x"}) == "{caller} x"


def test_template_values_are_not_interpreted() -> None:
    """A value containing braces or format codes is inserted as is."""
    assert parse_template("{a}").render({"a": "{b} {0} %s"}) == "{b} {0} %s"


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        pytest.param("hola {caller", 5, "is never closed", id="unclosed"),
        pytest.param("hola }", 5, "without a matching", id="stray-close"),
        pytest.param("{Caller}", 0, "is not a variable", id="uppercase"),
        pytest.param("{a.b}", 0, "is not a variable", id="attribute"),
        pytest.param("{a[0]}", 0, "is not a variable", id="index"),
        pytest.param("{__import__('os')}", 0, "is not a variable", id="code"),
        pytest.param("{a:upper}", 0, "unknown format ':upper'", id="format"),
        pytest.param("{}", 0, "is not a variable", id="empty"),
    ],
)
def test_template_rejects_anything_but_names(text: str, offset: int, fragment: str) -> None:
    """Expressions, attributes, indexes and unknown formats are errors with their offset."""
    with pytest.raises(TemplateError) as caught:
        parse_template(text)
    assert caught.value.offset == offset
    assert fragment in caught.value.message
