"""Advice on flow YAML that parses but is shaped wrongly.

A line indented a little too much or too little often still parses: a node indented under the
node above becomes one of its keys, a node's key indented like the node ids becomes a node of
its own, a top-level key indented under 'defaults' becomes a default. The schema would report
an unknown key and follow-on errors (a node that "does not exist"). These functions find such
shapes in the parsed data, say which line to indent and how far, and propose the edit that
`yamlsource.parse` mends the text with before it reads on.

Also here: '-' lists where key: value lines belong (and the other way round), and phone numbers
written without quotes, which YAML reads as numbers.

Pure functions: lines of text and parsed data in, advice out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flowpbx.errors import Mark
from flowpbx.language.yaml_lines import (
    COLON_GLUED,
    Advice,
    Edit,
    Line,
    Path,
    alike,
    block_scalar,
    enclosing,
    facts,
    group_name,
    indented,
    key_like,
    lines_under,
    read_line,
    read_lines,
    reindent,
    shift_lines,
    short,
    spaces,
    usual_step,
)

_FREE_FORM = frozenset({"values"})
"""Keys whose mapping holds names the author chose, which may be any word (set variables)."""
_PHONE_KEYS = frozenset({"to", "caller_id"})
_DASH = re.compile(r"([ ]*)-[ ]+")


@dataclass(frozen=True)
class Parsed:
    """A parsed text: its lines, its data, where its keys and values are, and what else was
    found."""

    text: str
    data: Any
    values: dict[Path, Mark]
    keys: dict[Path, Mark]
    plain_ends: dict[Path, Mark]
    duplicates: tuple[tuple[Path, Mark], ...]
    """Keys written a second time, and where (those are not in `data`)."""

    @cached_property
    def texts(self) -> list[str]:
        return self.text.splitlines()

    @cached_property
    def lines(self) -> list[Line]:
        """The lines read one by one; only needed once a mistake is found."""
        return read_lines(self.texts)


def structure_advice(parsed: Parsed) -> list[Advice]:
    """Mistakes of shape in a text that parses: keys and nodes indented into the wrong mapping,
    lists and mappings swapped, phone numbers read as numbers."""
    data = parsed.data
    if not isinstance(data, dict):
        return []
    found = list(_walk(parsed, (), data))
    found.extend(_nodes_out_of_nodes(parsed, data))
    found.extend(_numbers(parsed, data))
    found.extend(_keys_in_texts(parsed))
    return found


def _walk(parsed: Parsed, path: Path, value: dict[str, Any] | list[Any]) -> Iterator[Advice]:
    """The checks of every mapping and of each of its entries, depth first."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                yield from _walk(parsed, (*path, i), item)
        return
    yield from _dedented(parsed, path, value)
    for key, child in value.items():
        if isinstance(child, dict | None) and key not in _FREE_FORM:
            yield from _indented(parsed, path, value, key)
        if isinstance(child, dict | list):
            yield from _swapped(parsed, path, key, child)
            yield from _walk(parsed, (*path, key), child)
        elif isinstance(child, str):
            yield from _colonless(parsed, path, key, child)


# --- Keys in the wrong mapping ----------------------------------------------------------------


def _chain(path: Path) -> list[str]:
    return [part if isinstance(part, str) else "-" for part in path]


def _where(column: int, verb: str = "are at") -> str:
    return "are not indented" if column == 0 else f"{verb} {column}"


def _first(mapping: Any) -> str | None:
    return next(iter(mapping), None) if isinstance(mapping, dict) else None


def _belongs_under(key: str, value: Any, owner: str, body: Any, path: Path) -> bool:
    """Whether `key`, written after `owner` in one mapping, is one of the keys of `owner`."""
    if alike(key, owner):
        return False
    known = key in facts().keys
    first = _first(body)
    if first is None:
        return body is None and known and path == ("nodes",) and key in facts().node
    if isinstance(value, dict) and (other := _first(value)) is not None and alike(other, first):
        return False  # shaped like `owner` itself: a sibling (a node named 'closed', say)
    if not known and (isinstance(value, dict | list) or isinstance(body[first], dict | list)):
        return False  # names the author chose only stray as `NAME: value` lines
    return any(alike(key, other) for other in body)


def _dedented(parsed: Parsed, path: Path, mapping: dict[str, Any]) -> Iterator[Advice]:
    """Keys of a mapping indented like the key that names that mapping: YAML reads them as
    its siblings (a node's keys as nodes, a default as a top-level key)."""
    keys = list(mapping)
    i = 0
    while i < len(keys):
        owner = keys[i]
        body = mapping[owner]
        i += 1
        strays: list[tuple[str, Mark]] = []
        while i < len(keys) and _belongs_under(keys[i], mapping[keys[i]], owner, body, path):
            mark = parsed.keys.get((*path, keys[i]))
            if mark is None or (strays and mark.column != strays[0][1].column):
                break
            strays.append((keys[i], mark))
            i += 1
        owner_mark = parsed.keys.get((*path, owner)) if strays else None
        if owner_mark is not None:
            yield _dedented_advice(
                parsed, path, owner=owner, owner_mark=owner_mark, body=body, strays=strays
            )


def _dedented_advice(
    parsed: Parsed,
    path: Path,
    *,
    owner: str,
    owner_mark: Mark,
    body: Any,
    strays: list[tuple[str, Mark]],
) -> Advice:
    first = _first(body)
    first_mark = parsed.keys.get((*path, owner, first)) if first is not None else None
    if first_mark is not None:
        column = first_mark.column - 1
    else:
        column = owner_mark.column - 1 + usual_step(parsed.lines)
    names = [f"'{key}'" for key, _ in strays]
    one = len(names) == 1
    what = names[0] if one else ", ".join(names[:-1]) + " and " + names[-1]
    roles: dict[Path, str] = {(): "top-level key", ("nodes",): "node"}
    role = roles[path] if path in roles else f"key of '{_chain(path)[-1]}'"
    reads = f"it reads as a {role}" if one else f"they read as {role}s"
    indent = strays[0][1].column - 1
    group = group_name([*_chain(path), owner])
    where = _where(column, "are at" if first_mark is not None else "belong at")
    message = f"{what} {indented(indent, 'is' if one else 'are')}, so {reads}; the {group} {where}"
    edits = tuple(
        edit
        for _, mark in strays
        for edit in shift_lines(
            lines_under(parsed.lines, mark.line - 1), column - (mark.column - 1)
        )
    )
    return Advice(message, strays[0][1], edits, code="yaml-structure")


def _indented(parsed: Parsed, path: Path, mapping: dict[str, Any], owner: str) -> Iterator[Advice]:
    """A key of `mapping` indented under the key before it, `owner`: YAML reads it as one of
    the keys of `owner` (a node inside the node above, 'config' inside 'defaults')."""
    body = mapping[owner]
    for name in list(body)[1:] if isinstance(body, dict) else ():
        if not _belongs_beside(parsed, path, mapping, owner=owner, name=name):
            continue
        mark = parsed.keys.get((*path, owner))
        name_mark = parsed.keys.get((*path, owner, name))
        if mark is None or name_mark is None:
            return
        column = mark.column - 1
        header_only = body[name] is None and name not in facts().keys
        under = (
            [parsed.lines[name_mark.line - 1]]
            if header_only
            else lines_under(parsed.lines, name_mark.line - 1)
        )
        edits = shift_lines(under, column - (name_mark.column - 1))
        if path == ("nodes",):
            message = (
                f"node '{name}' is inside node '{owner}': indent '{name}' "
                f"{spaces(column)}, like '{owner}'"
            )
        else:
            message = (
                f"'{name}' {indented(name_mark.column - 1)}, so it is read as part of "
                f"'{owner}'; the {group_name(_chain(path))} {_where(column)}"
            )
        yield Advice(message, name_mark, edits, code="yaml-structure")
        return


def _belongs_beside(
    parsed: Parsed, path: Path, mapping: dict[str, Any], *, owner: str, name: str
) -> bool:
    """Whether `name`, a key of `owner`'s mapping, is a sibling of `owner` instead."""
    body = mapping[owner]
    value, first = body[name], next(iter(body))
    if alike(name, first) or not alike(name, owner):
        return False
    if name in facts().keys:
        return name not in mapping
    if isinstance(value, dict):
        return (other := _first(value)) is not None and alike(other, first)
    if value is None and path == ("nodes",):  # `name:` alone, then its keys: written twice
        mark = parsed.keys.get((*path, owner, name))
        return mark is not None and any(
            p[:2] == (*path, owner) and m.line > mark.line for p, m in parsed.duplicates
        )
    return False


def _nodes_out_of_nodes(parsed: Parsed, data: dict[str, Any]) -> Iterator[Advice]:
    """Nodes written at the start of the line after the nodes: YAML reads them as top-level
    keys."""
    names = list(data)
    nodes = data.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        return
    first_node = parsed.keys.get(("nodes", next(iter(nodes))))
    if first_node is None:
        return
    column = first_node.column - 1
    for key in names[names.index("nodes") + 1 :]:
        value, mark = data[key], parsed.keys.get((key,))
        if key in facts().top or not (isinstance(value, dict) and "type" in value) or not mark:
            return
        message = (
            f"node '{key}' is not indented, so it is not one of the nodes; "
            f"indent it {spaces(column)}, like the other nodes"
        )
        under = lines_under(parsed.lines, mark.line - 1)
        yield Advice(message, mark, shift_lines(under, column), code="yaml-structure")


# --- Keys read as part of something else ----------------------------------------------------


def _colonless(parsed: Parsed, path: Path, key: str, child: str) -> Iterator[Advice]:
    """`weekly:` (or 'options:', a node...) whose only entry has no ':' reads as text."""
    if key not in facts().mappings and path not in (("nodes",), ("queues",)):
        return
    key_mark, start = parsed.keys.get((*path, key)), parsed.values.get((*path, key))
    if key_mark is None or start is None or start.line <= key_mark.line or "\n" in child:
        return
    glued = COLON_GLUED.fullmatch(child)
    word, _, rest = child.partition(" ")
    if glued and key_like(glued["key"], glued["value"]):
        name, written = glued["key"], short(glued["value"])
        message = f"add a space after ':' in '{name}:{written}' (write '{name}: {written}')"
        edit = Edit(start.line, start.column + len(name) + 1, insert=" ")
    elif rest and key_like(word, rest.strip()):
        message = f"add ':' after '{word}' (write '{word}: {short(rest.strip())}')"
        edit = Edit(start.line, start.column + len(word), insert=":")
    else:
        return
    yield Advice(message, start, (edit,))


_BLOCK_TEXT = re.compile(r":[ ]+[|>][-+0-9]*[ ]*(?:#.*)?$", re.MULTILINE)
_KEY_START = re.compile(r"[ ]*[A-Za-z_][A-Za-z0-9_-]*:(?:[ ]|$)")


def _keys_in_texts(parsed: Parsed) -> Iterator[Advice]:
    """A key indented like the lines of the | or > text above it: YAML reads it as text."""
    if not _BLOCK_TEXT.search(parsed.text):
        return
    texts = parsed.texts
    for i, text in enumerate(texts):
        if not _BLOCK_TEXT.search(text):
            continue
        owner = read_line(i + 1, text)
        if owner.key is None or not block_scalar(owner.value):
            continue
        body_indent: int | None = None
        for j in range(i + 1, len(texts)):
            body = texts[j]
            indent = len(body) - len(body.lstrip(" "))
            if not body.strip():
                continue
            if indent <= owner.indent or (body_indent is not None and indent < body_indent):
                break
            body_indent = indent if body_indent is None else body_indent
            if not _KEY_START.match(body):
                continue
            inner = read_line(j + 1, body)
            if (
                inner.key is None
                or inner.key not in facts().keys
                or not alike(inner.key, owner.key)
            ):
                continue
            chain = enclosing(parsed.lines, i, owner.key_col)
            if not _missing_from(parsed.data, chain, inner.key):
                continue  # the mapping has that key already, or cannot have it: it is text
            where = "are not indented" if owner.key_col == 0 else f"are at {owner.key_col}"
            message = (
                f"'{inner.key}' {indented(inner.indent)}, so it is read as part of the "
                f"text of '{owner.key}'; the {group_name(chain)} {where}"
            )
            edit = reindent(inner, owner.key_col)
            yield Advice(
                message, Mark(inner.number, inner.key_col + 1), (edit,), code="yaml-structure"
            )
            break


def _missing_from(data: Any, chain: list[str], key: str) -> bool:
    """Whether the mapping `chain` leads to lacks `key` and, for a node, whether its kind
    has such a key: only then can a line `key: ...` inside a text above be a misplaced key."""
    mapping = data
    for step in chain:
        if not isinstance(mapping, dict) or step not in mapping:
            return True  # cannot tell: keep the advice
        mapping = mapping[step]
    if not isinstance(mapping, dict) or key in mapping:
        return not isinstance(mapping, dict)
    if len(chain) == 2 and chain[0] == "nodes" and isinstance(mapping.get("type"), str):
        from flowpbx.language.schema import flow_schema  # schema imports us, indirectly

        kind = flow_schema().get("$defs", {}).get(f"{mapping['type']}_node", {})
        return key in kind.get("properties", {key: None})
    return True


# --- Lists and mappings swapped --------------------------------------------------------------


def _swapped(
    parsed: Parsed, path: Path, key: str, child: dict[str, Any] | list[Any]
) -> Iterator[Advice]:
    """'-' lists where key: value lines belong, and the other way round."""
    known = facts()
    child_path: Path = (*path, key)
    mark = parsed.values.get(child_path, Mark(1, 1))
    wants_mapping = key in known.mappings or path in (("nodes",), ("queues",))
    if wants_mapping and isinstance(child, list) and child:
        what = "its keys" if path == ("nodes",) else f"'{key}'"
        yield Advice(
            f"write {what} as key: value lines without '-'",
            mark,
            _undash(parsed, child_path, child),
            child_path,
            "yaml-structure",
        )
    elif key in known.lists and isinstance(child, dict) and child:
        yield Advice(
            f"write '{key}' as a list: start each of its entries with '- '",
            parsed.keys.get(child_path, mark),
            (),
            child_path,
            "yaml-structure",
        )


def _undash(parsed: Parsed, path: Path, items: list[Any]) -> tuple[Edit, ...]:
    """Edits removing the '- ' of each entry of a list of `key: value` entries."""
    if not all(isinstance(item, dict) and item for item in items):
        return ()
    edits = []
    for i, item in enumerate(items):
        start = parsed.values.get((*path, i))
        first_key = parsed.keys.get((*path, i, next(iter(item))))
        if start is None or first_key != start or start.line > len(parsed.texts):
            return ()
        dash = _DASH.fullmatch(parsed.texts[start.line - 1][: start.column - 1])
        if dash is None:
            return ()
        edits.append(Edit(start.line, dash.end(1) + 1, remove=start.column - 1 - dash.end(1)))
    return tuple(edits)


# --- Numbers that were meant as text ---------------------------------------------------------


def _numbers(parsed: Parsed, data: dict[str, Any]) -> Iterator[Advice]:
    """Phone numbers written without quotes: YAML reads them as numbers, losing '+' and 0s."""
    config = data.get("config")
    if isinstance(config, dict):
        for name, value in config.items():
            yield from _number(parsed, ("config", name), value, f"config '{name}'")
    nodes = data.get("nodes")
    for node_id, node in nodes.items() if isinstance(nodes, dict) else ():
        if isinstance(node, dict):
            for key in sorted(_PHONE_KEYS & set(node)):
                where = f"node '{node_id}', '{key}'"
                yield from _number(parsed, ("nodes", node_id, key), node[key], where)


def _number(parsed: Parsed, path: Path, value: Any, where: str) -> Iterator[Advice]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    start, end = parsed.values.get(path), parsed.plain_ends.get(path)
    if start is None or end is None or start.line != end.line or start.line > len(parsed.texts):
        return
    written = parsed.texts[start.line - 1][start.column - 1 : end.column - 1]
    message = f'{where}: {written} was read as a number; put it in quotes: "{written}"'
    edits = (Edit(end.line, end.column, insert='"'), Edit(start.line, start.column, insert='"'))
    yield Advice(message, start, edits, code="yaml-number")
