"""YAML text to plain data, keeping the line and column of every key and value.

PyYAML's defaults are unsafe for hand-edited flows: duplicate keys silently keep the last value,
`no` becomes False and `19:00` becomes 1140. This module parses with YAML 1.2 core scalars
(only true/false, decimal numbers and null are typed), keeps mapping keys as the text written,
and reports duplicate keys, tabs, aliases and other traps as located issues instead of exceptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from flowpbx.errors import Mark

Path = tuple[str | int, ...]

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 50

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")


class _CoreResolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema: no yes/no/on/off booleans, no sexagesimal numbers, no dates."""


_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, list("~nN"))
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+.0123456789"))


class _FlowLoader(_CoreResolver, _Loader):  # type: ignore[misc]
    """The fast (libyaml) parser with the core resolver."""


class _SafeFlowLoader(_CoreResolver, yaml.SafeLoader):
    """The pure-Python parser with the core resolver, for pathologically nested text."""


@dataclass(frozen=True, slots=True)
class YamlIssue:
    """Something in the text that stops it from being read as intended."""

    code: str
    message: str
    mark: Mark
    path: Path = ()


@dataclass(slots=True)
class Marks:
    """Where each value and each mapping key of a document was written."""

    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)
    plain_ends: dict[Path, Mark] = field(default_factory=dict)
    """Where each unquoted text value ends: a '#' after it starts a comment."""

    def value(self, path: Path) -> Mark:
        """The position of the value at `path`, or of its closest written parent."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Mark(1, 1))

    def key(self, path: Path) -> Mark:
        """The position of the key that names `path`, falling back to its value."""
        return self.keys.get(path) or self.value(path)


@dataclass(slots=True)
class Document:
    """The result of reading a YAML text: data (None when unreadable), marks and issues."""

    data: Any
    marks: Marks
    issues: list[YamlIssue]


def _mark(node_mark: Any) -> Mark:
    return Mark(node_mark.line + 1, node_mark.column + 1)


def _tab_issues(text: str) -> list[YamlIssue]:
    issues = []
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            issues.append(
                YamlIssue(
                    "yaml-tab",
                    "a tab is used to indent this line; YAML indents with spaces only",
                    Mark(number, indent.index("\t") + 1),
                )
            )
    return issues


_BRACE_VALUE = re.compile(r"(:|^\s*-)\s+\{")


def _syntax_hint(problem: str, context: str | None, snippet: str, line: str = "") -> str:
    if _BRACE_VALUE.search(line):
        return "a value that starts with '{' must be in quotes, e.g. text: \"{caller} ...\""
    if "scanning an alias" in (context or ""):
        return "'*' starts a YAML alias; to use the * key write it in quotes: \"*\""
    if "anchor" in (context or "") and snippet.startswith("&"):
        return "'&' starts a YAML anchor; put the text in quotes"
    if "mapping values are not allowed" in problem:
        return "a ':' followed by a space inside a value; put the whole text in quotes"
    if "cannot start any token" in problem:
        first = snippet[:1] or "this character"
        return f"a value cannot start with '{first}'; put the text in quotes"
    if "quoted scalar" in (context or ""):
        return "a quote is opened but never closed"
    if "could not find expected ':'" in problem:
        return "a line is missing ':' after its key, or a quote is not closed"
    if "expected a single document" in (context or "") or "another document" in problem:
        return "a flow file holds one YAML document; remove the second '---'"
    if "did not find expected key" in problem:
        return "this line is indented differently from the lines around it"
    if "expected ',' or ']'" in problem and "{" in line:
        return 'inside [brackets], put values with { or } in quotes, e.g. ["${NUMBER}"]'
    if "expected ',' or ']'" in problem:
        return "a list in [brackets] is not closed with ']'"
    if "expected ',' or '}'" in problem:
        return "a mapping in {braces} is not closed with '}'"
    where = f" ({context})" if context else ""
    return f"YAML syntax error: {problem}{where}"


def _syntax_issue(exc: yaml.YAMLError, lines: list[str]) -> YamlIssue:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = str(getattr(exc, "problem", None) or exc)
    context = getattr(exc, "context", None)
    if mark is None:
        return YamlIssue("yaml-syntax", f"YAML syntax error: {problem}", Mark(1, 1))
    line = lines[mark.line] if mark.line < len(lines) else ""
    snippet = line[mark.column :].lstrip()
    previous = lines[mark.line - 1] if 0 < mark.line <= len(lines) else ""
    if _BRACE_VALUE.search(previous) and not _BRACE_VALUE.search(line):
        line = previous
    if "scanning an alias" in (context or ""):
        # Point at the '*', not after it.
        context_mark = getattr(exc, "context_mark", None) or mark
        return YamlIssue(
            "yaml-syntax", _syntax_hint(problem, context, snippet), _mark(context_mark)
        )
    if "quoted scalar" in (context or ""):
        # Point at the opening quote, not at the end of the file.
        context_mark = getattr(exc, "context_mark", None) or mark
        return YamlIssue(
            "yaml-syntax", _syntax_hint(problem, context, snippet), _mark(context_mark)
        )
    if "undefined alias" in problem:
        message = "'*' starts a YAML alias; to write a '*' key or value put it in quotes: \"*\""
        return YamlIssue("yaml-syntax", message, _mark(mark))
    hint = _syntax_hint(problem, context, snippet, line)
    return YamlIssue("yaml-syntax", hint, _mark(mark))


class _Builder:
    """Turns composed YAML nodes into plain data, recording marks and issues."""

    def __init__(self) -> None:
        self.marks = Marks()
        self.issues: list[YamlIssue] = []
        self.seen: set[int] = set()

    def build(self, node: yaml.Node, path: Path, depth: int = 0) -> Any:
        mark = _mark(node.start_mark)
        if id(node) in self.seen:
            # An alias shares the anchored node, whose mark is the anchor's: point at the key.
            mark = self.marks.keys.get(path, mark)
            self.marks.values[path] = mark
            self.issues.append(
                YamlIssue(
                    "yaml-alias",
                    "anchors and aliases (&name, *name) are not supported in flows; "
                    "write the value out in full",
                    mark,
                    path,
                )
            )
            return None
        self.marks.values[path] = mark
        self.seen.add(id(node))
        if depth > MAX_DEPTH:
            message = f"nested more than {MAX_DEPTH} levels deep"
            self.issues.append(YamlIssue("yaml-depth", message, mark, path))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and not node.style:  # plain: '' (libyaml) or None
            self.marks.plain_ends[path] = _mark(node.end_mark)
        return self._scalar(node, path, mark)

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            key_mark = _mark(key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                message = "a key must be a plain word or number, not a list or mapping"
                self.issues.append(YamlIssue("yaml-key", message, key_mark, path))
                continue
            key = str(key_node.value)
            if key in first_seen:
                self.issues.append(
                    YamlIssue(
                        "duplicate-key",
                        f"'{key}' is written twice (first on line {first_seen[key].line}); "
                        "keep only one",
                        key_mark,
                        (*path, key),
                    )
                )
                continue
            first_seen[key] = key_mark
            self.marks.keys[(*path, key)] = key_mark
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result

    def _scalar(self, node: yaml.Node, path: Path, mark: Mark) -> Any:
        tag, value = node.tag, str(node.value)
        if tag == "tag:yaml.org,2002:int" and len(value) > 100:
            message = f"this number has {len(value)} digits; write it in quotes if it is text"
            self.issues.append(YamlIssue("yaml-number", message, mark, path))
            return None
        try:
            if tag == "tag:yaml.org,2002:str":
                return value
            if tag == "tag:yaml.org,2002:null" and _NULL.match(value):
                return None
            if tag == "tag:yaml.org,2002:bool" and _BOOL.match(value):
                return value.lower() == "true"
            if tag == "tag:yaml.org,2002:int":
                return int(value)
            if tag == "tag:yaml.org,2002:float":
                return float(value)
        except ValueError:
            pass
        message = f"YAML tags like '{tag}' are not supported in flows; remove the tag"
        self.issues.append(YamlIssue("yaml-tag", message, mark, path))
        return None


def decode(raw: bytes) -> tuple[str | None, list[YamlIssue]]:
    """Decode UTF-8 (with or without a byte order mark), locating the first bad byte."""
    if len(raw) > MAX_BYTES:
        message = f"the file is too large ({len(raw):,} bytes); a flow is at most {MAX_BYTES:,}"
        return None, [YamlIssue("file-too-large", message, Mark(1, 1))]
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        message = "the file is not UTF-8 text; save it as UTF-8"
        return None, [YamlIssue("encoding", message, Mark(line, column))]


# Characters YAML does not allow in a document (its "printable" set excludes them).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
_BRACKETS = re.compile(r"[\[\]{}]")
FLOW_NESTING_LIMIT = 100


def _control_issues(text: str) -> list[YamlIssue]:
    match = _CONTROL.search(text)
    if match is None:
        return []
    line = text.count("\n", 0, match.start()) + 1
    column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
    message = (
        f"the file contains the invisible character U+{ord(match.group()):04X}; "
        "remove it (it often comes from copying text from another program)"
    )
    return [YamlIssue("control-character", message, Mark(line, column))]


def _flow_nesting(text: str) -> int:
    """How deep [ ] and { } nest (quoted brackets count too: an overestimate is harmless)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(text):
        depth = depth + 1 if bracket in "[{" else max(0, depth - 1)
        deepest = max(deepest, depth)
    return deepest


def _loader_class(text: str) -> type[Any]:
    """libyaml recurses on the C stack and crashes on very deep nesting; the Python parser
    raises RecursionError instead. Such text is never a real flow, so speed does not matter."""
    deep_blocks = any(len(line) - len(line.lstrip(" ")) > 400 for line in text.splitlines())
    if deep_blocks or _flow_nesting(text) > FLOW_NESTING_LIMIT:
        return _SafeFlowLoader
    return _FlowLoader


def parse(text: str) -> Document:
    """Parse one YAML document; never raises for bad input."""
    issues = _tab_issues(text) or _control_issues(text)
    if issues:
        return Document(None, Marks(), issues)
    loader: Any = None
    try:
        loader = _loader_class(text)(text)
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        return Document(None, Marks(), [_syntax_issue(exc, text.splitlines())])
    except RecursionError:
        message = f"nested more than {MAX_DEPTH} levels deep"
        return Document(None, Marks(), [YamlIssue("yaml-depth", message, Mark(1, 1))])
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        return Document(None, Marks(), [YamlIssue("empty", "the file is empty", Mark(1, 1))])
    builder = _Builder()
    data = builder.build(root, ())
    if data is None and not builder.issues:
        message = "the file holds no flow, only an empty document ('---' or null)"
        return Document(None, builder.marks, [YamlIssue("empty", message, _mark(root.start_mark))])
    return Document(data, builder.marks, builder.issues)
