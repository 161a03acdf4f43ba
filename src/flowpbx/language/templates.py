"""Safe text substitution for spoken text: `{name}` and `{name:digits}`, nothing else.

No expressions, attribute access or code: a template is literal text and variable names,
parsed once when the flow is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from flowpbx.errors import FlowpbxError

BUILTIN_VARIABLES = frozenset({"caller", "called", "digits", "dial_status", "recording_url"})
"""Set by the engine: the caller's and dialled numbers, the last keys, the last dial's
DialCallStatus and the last voicemail's recording URL."""
FORMATS = frozenset({"digits"})

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class TemplateError(FlowpbxError):
    """A text whose braces do not form valid variables; `offset` is where it goes wrong."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Variable:
    """A variable inside a text; `spell` reads its value one character at a time."""

    name: str
    spell: bool = False


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed text: literal pieces and variables, in order."""

    source: str
    parts: tuple[str | Variable, ...]

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parts if isinstance(p, Variable))

    def render(self, values: Mapping[str, str]) -> str:
        """The text with each variable replaced; a variable with no value becomes ''."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = values.get(part.name, "")
            out.append(" ".join(value) if part.spell else value)
        return "".join(out)


def parse_template(text: str) -> Template:
    """Parse `text`, raising TemplateError with the offset of the first bad brace."""
    parts: list[str | Variable] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "{}" and text[i : i + 2] == char * 2:
            literal.append(char)
            i += 2
            continue
        if char == "}":
            raise TemplateError("'}' without a matching '{'; write }} for a literal brace", i)
        if char != "{":
            literal.append(char)
            i += 1
            continue
        end = text.find("}", i)
        if end == -1:
            raise TemplateError("'{' is never closed; write {{ for a literal brace", i)
        name, _, fmt = text[i + 1 : end].partition(":")
        if not _NAME.fullmatch(name):
            raise TemplateError(
                f"'{{{text[i + 1 : end]}}}' is not a variable: names are lowercase letters, "
                "digits and '_', like {caller}; write {{ for a literal brace",
                i,
            )
        if fmt and fmt not in FORMATS:
            raise TemplateError(
                f"unknown format ':{fmt}' in {{{name}:{fmt}}}; the only format is ':digits'",
                i,
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(Variable(name, spell=fmt == "digits"))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    return Template(text, tuple(parts))
