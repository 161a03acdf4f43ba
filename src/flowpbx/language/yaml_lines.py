"""Reading flow YAML line by line, for advice on the mistakes the parser stumbles on.

PyYAML says where it stopped; people need to know which line to change and how. This module
holds what the advice modules share: a rough reading of each line (its indentation, key and
value), the keys the flow schema knows, and edits that mend a text without adding or removing
lines (so positions in the mended text map back to the text as written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from flowpbx.errors import Mark

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace `remove` characters at a 1-based line and column with `insert`."""

    line: int
    column: int
    remove: int = 0
    insert: str = ""

    def apply(self, text: str) -> str:
        at = self.column - 1
        return text[:at] + self.insert + text[at + self.remove :]

    def original_column(self, column: int) -> int:
        """Where a column of the edited line was before this edit."""
        if column < self.column:
            return column
        if column < self.column + len(self.insert):
            return self.column
        return column - len(self.insert) + self.remove


@dataclass(frozen=True, slots=True)
class Advice:
    """What to tell the author, where, and the edit that would fix the text (if known)."""

    message: str
    mark: Mark
    edits: tuple[Edit, ...] = ()
    path: Path = ()
    code: str = "yaml-syntax"


# --- What the flow language knows ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    """What the flow schema says about keys, to tell a misplaced key from a word of a text."""

    keys: frozenset[str]
    """Every key the flow schema names, anywhere."""
    top: frozenset[str]
    node: frozenset[str]
    """The keys of every kind of node."""
    mappings: frozenset[str]
    """Keys whose value is always key: value lines."""
    lists: frozenset[str]
    """Keys whose value is always a '-' list."""
    texts: frozenset[str]
    """Keys whose value is always text."""
    groups: dict[str, frozenset[int]]
    """For each key, the kinds of mapping (a flow, a dial node, a holiday...) that have it."""


@cache
def facts() -> Facts:
    """The keys of the shipped flow schema, read once."""
    from flowpbx.language.schema import flow_schema  # schema imports yamlsource, which imports us

    schema = flow_schema()
    defs: dict[str, Any] = schema.get("$defs", {})
    types: dict[str, set[str]] = {}
    groups: list[frozenset[str]] = []

    def kind(prop: Any) -> str:
        if isinstance(prop, dict) and "$ref" in prop:
            prop = defs.get(str(prop["$ref"]).rsplit("/", 1)[-1], {})
        found = prop.get("type") if isinstance(prop, dict) else None
        return found if isinstance(found, str) else "other"

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            properties = value.get("properties") or {}
            for name, prop in properties.items():
                types.setdefault(name, set()).add(kind(prop))
            if properties:
                groups.append(frozenset(properties))
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    walk(schema)
    node = {
        name
        for def_name, definition in defs.items()
        if def_name.endswith("_node") and isinstance(definition, dict)
        for name in definition.get("properties", {})
    }
    return Facts(
        keys=frozenset(types),
        top=frozenset(schema.get("properties", {})),
        node=frozenset(node),
        mappings=frozenset(k for k, t in types.items() if t == {"object"}),
        lists=frozenset(k for k, t in types.items() if t == {"array"}),
        texts=frozenset(k for k, t in types.items() if t == {"string"}),
        groups={
            key: frozenset(i for i, group in enumerate(groups) if key in group) for key in types
        },
    )


# --- Lines -----------------------------------------------------------------------------------

_KEY_LINE = re.compile(
    r"""(?P<indent>[ ]*)(?P<dash>(?:-[ ]+)*)"""
    r"""(?P<key>"[^"]*"|'[^']*'|[^\s#'"\[\]{}:,][^\s:]*)[ ]*:(?:[ ]+(?P<value>.*)|$)"""
)
_ITEM = re.compile(r"(?P<indent>[ ]*)(?P<dash>(?:-(?:[ ]+|$))+)(?P<value>.*)")
_BLOCK_SCALAR = re.compile(r"[|>][-+0-9]*\s*(?:#.*)?")
WORD = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
COLON_GLUED = re.compile(r"(?P<key>[A-Za-z0-9_-]+):(?P<value>[^\s/:].*)", re.ASCII)
"""`key:value`, a key and its value without the space YAML needs after ':'."""
_TOKEN = re.compile(r"""(?:"[^"]*"|'[^']*'|[A-Za-z0-9_${}+.:/@#*-]+)""", re.ASCII)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a text, roughly as block YAML reads it."""

    number: int
    text: str
    indent: int
    content: bool
    """Not blank, not a comment and not inside a block text (| or >)."""
    key: str | None = None
    key_col: int = 0
    """0-based column of the key, or of the value after '- ' on a list line."""
    value: str = ""
    dash: bool = False

    @property
    def header(self) -> bool:
        """`key:` with nothing after it: its value is on the lines below."""
        return self.key is not None and (not self.value or self.value.startswith("#"))

    @property
    def leaf(self) -> bool:
        """`key: value` with the value on the same line (not a | or > block text)."""
        return self.key is not None and not self.header and not block_scalar(self.value)


def block_scalar(value: str) -> bool:
    """Whether a value is '|' or '>' (with '-', '+' or a digit): a text on the lines below."""
    return _BLOCK_SCALAR.fullmatch(value) is not None


def read_line(number: int, text: str) -> Line:
    """One line on its own: its indentation, and its key and value if it has a key."""
    indent = len(text) - len(text.lstrip(" "))
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return Line(number, text, indent, content=False)
    match = _KEY_LINE.match(text)
    if match:
        return Line(
            number,
            text,
            indent,
            True,
            key=match["key"],
            key_col=match.start("key"),
            value=(match["value"] or "").strip(),
            dash=bool(match["dash"]),
        )
    item = _ITEM.match(text)
    if item:
        return Line(number, text, indent, True, key_col=item.start("value"), dash=True)
    return Line(number, text, indent, True, key_col=indent)


def read_lines(texts: list[str]) -> list[Line]:
    """Each line of a text, with what a block YAML line holds."""
    lines: list[Line] = []
    key_indent: int | None = None  # of the `key: |` line whose text is being read
    body_indent: int | None = None  # of that text's first line
    for number, text in enumerate(texts, start=1):
        line = read_line(number, text)
        if key_indent is not None and (
            not text.strip()
            or (line.indent > key_indent and (body_indent is None or line.indent >= body_indent))
        ):
            if text.strip() and body_indent is None:
                body_indent = line.indent
            lines.append(Line(number, text, line.indent, content=False))
            continue
        key_indent = body_indent = None
        if line.key is not None and block_scalar(line.value):
            key_indent = line.indent
        lines.append(line)
    return lines


def previous_content(lines: list[Line], index: int) -> int | None:
    """The index of the last content line before `index`."""
    for j in range(index - 1, -1, -1):
        if lines[j].content:
            return j
    return None


def next_content(lines: list[Line], index: int) -> int | None:
    """The index of the first content line after `index`."""
    for j in range(index + 1, len(lines)):
        if lines[j].content:
            return j
    return None


def enclosing(lines: list[Line], index: int, column: int) -> list[str]:
    """The keys enclosing a key at `column` written after line `index` (outermost first);
    '-' stands for a list entry."""
    chain: list[str] = []
    limit = column
    for j in range(index, -1, -1):
        line = lines[j]
        if limit == 0:
            break
        if not line.content:
            continue
        if line.dash and line.indent < limit:
            chain.append("-")
            limit = line.indent
        elif line.header and line.key is not None and line.key_col < limit:
            chain.append(line.key.strip("'\""))
            limit = line.key_col
    return chain[::-1]


def group_name(chain: list[str]) -> str:
    """How to name the keys of the mapping `chain` leads to: 'the keys of node 'menu''."""
    if not chain:
        return "top-level keys"
    if chain == ["nodes"]:
        return "nodes"
    if len(chain) == 2 and chain[0] in ("nodes", "queues"):
        return f"keys of {chain[0][:-1]} '{chain[1]}'"
    if len(chain) == 3 and chain[0] == "nodes" and chain[2] == "options":
        return f"options of node '{chain[1]}'"
    if chain[-1] == "-":
        return f"keys of each '{chain[-2]}' entry" if len(chain) > 1 else "keys of each entry"
    return f"keys under '{chain[-1]}'"


def spaces(count: int) -> str:
    """'1 space', '4 spaces'."""
    return f"{count} space" if count == 1 else f"{count} spaces"


def indented(count: int, verb: str = "is") -> str:
    """'is indented 5 spaces', or 'is not indented'."""
    return f"{verb} not indented" if count == 0 else f"{verb} indented {spaces(count)}"


def indent_message(key: str, indent: int, chain: list[str], column: int) -> str:
    """ "'next' is indented 5 spaces; the keys of node 'vida' are at 4"."""
    where = "are not indented" if column == 0 else f"are at {column}"
    name = key.strip("'\"")
    return f"'{name}' {indented(indent)}; the {group_name(chain)} {where}"


def reindent(line: Line, column: int) -> Edit:
    """Move a line's key (not a '- ' line's dash) to `column`."""
    return Edit(
        line.number, 1, remove=line.indent, insert=" " * (line.indent + column - line.key_col)
    )


def short(text: str) -> str:
    """A value shortened to quote it in a message."""
    return text if len(text) <= 24 else text[:20].rstrip() + "..."


def key_like(word: str, value: str) -> bool:
    """Whether `word value` reads as a flow key and its value, rather than words of a text."""
    if word in facts().keys or (len(word) > 1 and word[0] == word[-1] and word[0] in "'\""):
        return True
    return WORD.fullmatch(word) is not None and (not value or _TOKEN.fullmatch(value) is not None)


_UPPER = re.compile(r"[A-Z][A-Z0-9_]*")
_DIGITS = re.compile(r"[0-9*#]+")


@lru_cache(maxsize=4096)
def _shape(name: str) -> str:
    name = name.strip("'\"")
    if _DIGITS.fullmatch(name):
        return "digits"
    return "upper" if _UPPER.fullmatch(name) else "other"


def alike(key: str, other: str) -> bool:
    """Whether two keys could be keys of one mapping: both flow keys of one kind of mapping,
    or both names the author chose, written alike (node ids, menu keys, config names)."""
    known = facts()
    if (key in known.keys) != (other in known.keys):
        return False
    if key not in known.keys:
        return _shape(key) == _shape(other)
    return not known.groups[key].isdisjoint(known.groups[other])


def usual_step(lines: list[Line]) -> int:
    """How many spaces the text usually indents a mapping under its key (2 if unsure)."""
    steps: dict[int, int] = {}
    for i, line in enumerate(lines):
        following = next_content(lines, i) if line.header else None
        if following is not None and lines[following].key_col > line.key_col:
            step = lines[following].key_col - line.key_col
            steps[step] = steps.get(step, 0) + 1
    return max(steps, key=lambda k: steps[k]) if steps else 2


def lines_under(lines: list[Line], start: int) -> list[Line]:
    """Line `start` (0-based) and the lines under it: more indented, blank or comments."""
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if line.content and line.indent <= lines[start].indent:
            break
        block.append(line)
    while len(block) > 1 and not block[-1].content:
        block.pop()
    return block


def shift_lines(block: list[Line], by: int) -> tuple[Edit, ...]:
    """Edits indenting each line of `block` by `by` spaces (less, if negative)."""
    if by >= 0:
        return tuple(Edit(line.number, 1, insert=" " * by) for line in block if line.text)
    return tuple(
        Edit(line.number, 1, remove=min(-by, line.indent)) for line in block if line.text.strip()
    )
