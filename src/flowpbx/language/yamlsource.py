"""YAML text to plain data, keeping the line and column of every key and value.

PyYAML's defaults are unsafe for hand-edited flows: duplicate keys silently keep the last value,
`no` becomes False and `19:00` becomes 1140. This module parses with YAML 1.2 core scalars
(only true/false, decimal numbers and null are typed), keeps mapping keys as the text written,
and reports duplicate keys, tabs, aliases and other traps as located issues instead of exceptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import yaml

from flowpbx.errors import Mark
from flowpbx.language.yaml_advice import ParserError, syntax_advice
from flowpbx.language.yaml_lines import Advice, Edit
from flowpbx.language.yaml_shapes import Parsed, structure_advice

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
    mended: bool = False
    """The text was mended in a copy to read on: the data holds what was meant."""


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
    if "could not find expected ':'" in str(getattr(exc, "problem", "")):
        mark = getattr(exc, "context_mark", None) or mark  # where the key without ':' starts
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
                fix = "keep only one"
                if path and isinstance(path[-1], int):
                    # In an entry of a '-' list the second key usually starts the next entry.
                    fix = "if it starts another entry of the list, begin its line with '- '"
                self.issues.append(
                    YamlIssue(
                        "duplicate-key",
                        f"'{key}' is written twice (first on line {first_seen[key].line}); " + fix,
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


MAX_REPAIRS = 10
"""How many mistakes are advised on and mended, to read on and report the rest, per file."""
REPAIR_LIMIT = 1024 * 1024
"""Longer texts get PyYAML's position and a general hint (advice is checked by parsing again)."""


def _compose(text: str) -> Any:
    loader = _loader_class(text)(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _position(exc: yaml.YAMLError) -> tuple[int, int]:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return (mark.line, mark.column) if mark is not None else (0, 0)


def _parser_error(exc: yaml.YAMLError) -> ParserError:
    line, column = _position(exc)
    context_mark = getattr(exc, "context_mark", None)
    return ParserError(
        str(getattr(exc, "problem", None) or exc),
        line + 1,
        column + 1,
        str(getattr(exc, "context", None) or ""),
        context_mark.line + 1 if context_mark is not None else 0,
        context_mark.column + 1 if context_mark is not None else 0,
    )


_LINE_END = re.compile(r"(?:\r\n|[\n\r\x85\u2028\u2029])\Z")


class _Source:
    """The text being read, with the edits made to read on past mistakes; maps positions in
    the edited text back to the text as written (edits never add or remove lines)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.edits: dict[int, list[Edit]] = {}

    @cached_property
    def lines(self) -> list[str]:
        """The text's lines, without their ends (split only once something needs mending)."""
        return self.text.splitlines()

    @cached_property
    def ends(self) -> list[str]:
        return [
            end.group() if (end := _LINE_END.search(part)) else ""
            for part in self.text.splitlines(keepends=True)
        ]

    def edited(self, edits: tuple[Edit, ...]) -> str | None:
        lines = list(self.lines)
        for edit in edits:
            if not 1 <= edit.line <= len(lines):
                return None
            lines[edit.line - 1] = edit.apply(lines[edit.line - 1])
        return "".join(line + end for line, end in zip(lines, self.ends, strict=True))

    def apply(self, edits: tuple[Edit, ...]) -> None:
        text = self.edited(edits)
        if text is None:
            return
        for edit in edits:
            self.lines[edit.line - 1] = edit.apply(self.lines[edit.line - 1])
            self.edits.setdefault(edit.line, []).append(edit)
        self.text = text

    def original(self, mark: Mark) -> Mark:
        column = mark.column
        for edit in reversed(self.edits.get(mark.line, ())):
            column = edit.original_column(column)
        return Mark(mark.line, column)

    def issue(self, issue: YamlIssue, *, mended: bool = False) -> YamlIssue:
        mark = self.original(issue.mark)
        return YamlIssue(issue.code, issue.message, mark, issue.path, mended or issue.mended)

    def marks(self, marks: Marks) -> Marks:
        if not self.edits:
            return marks
        return Marks(
            {path: self.original(mark) for path, mark in marks.values.items()},
            {path: self.original(mark) for path, mark in marks.keys.items()},
            {path: self.original(mark) for path, mark in marks.plain_ends.items()},
        )

    def parses_further(self, edits: tuple[Edit, ...], exc: yaml.YAMLError) -> bool:
        """Whether the text, edited, parses, or stops only past where `exc` stopped it."""
        text = self.edited(edits)
        if text is None:
            return False
        try:
            _compose(text)
        except yaml.YAMLError as later:
            return _position(later) > _position(exc)
        except RecursionError:
            return False
        return True


def _advice_issue(advice: Advice) -> YamlIssue:
    return YamlIssue(advice.code, advice.message, advice.mark, advice.path)


def _syntax_advice(source: _Source, exc: yaml.YAMLError) -> Advice | None:
    """The first advice on a parser error that stands on its own or whose edit helps."""
    for advice in syntax_advice(source.lines, _parser_error(exc)):
        if not advice.edits or source.parses_further(advice.edits, exc):
            return advice
    return None


def _structure_fix(source: _Source, advice: list[Advice]) -> Advice | None:
    """The first advice on the parsed data whose edit leaves a text that still parses."""
    for candidate in advice:
        text = source.edited(candidate.edits) if candidate.edits else None
        if text is None:
            continue
        try:
            _compose(text)
        except (yaml.YAMLError, RecursionError):
            continue
        return candidate
    return None


def _document(data: Any, marks: Marks, issues: list[YamlIssue]) -> Document:
    return Document(data, marks, sorted(issues, key=lambda i: (i.mark.line, i.mark.column)))


def parse(text: str) -> Document:
    """Parse one YAML document; never raises for bad input.

    A mistake the advice module recognises is reported with its advice, then mended in a copy
    of the text so that reading goes on and later mistakes are reported too.
    """
    issues = _tab_issues(text) or _control_issues(text)
    if issues:
        return Document(None, Marks(), issues)
    source = _Source(text)
    found: list[YamlIssue] = []
    mended: set[tuple[Mark, str]] = set()
    for attempt in range(MAX_REPAIRS + 1):
        repairing = attempt < MAX_REPAIRS and len(text) <= REPAIR_LIMIT
        try:
            root = _compose(source.text)
        except yaml.YAMLError as exc:
            advice = _syntax_advice(source, exc) if repairing else None
            if advice is None:
                found.append(source.issue(_syntax_issue(exc, source.lines)))
                return _document(None, Marks(), found)
            found.append(source.issue(_advice_issue(advice), mended=bool(advice.edits)))
            if not advice.edits:
                return _document(None, Marks(), found)
            source.apply(advice.edits)
            continue
        except RecursionError:
            message = f"nested more than {MAX_DEPTH} levels deep"
            found.append(YamlIssue("yaml-depth", message, Mark(1, 1)))
            return _document(None, Marks(), found)
        if root is None:
            found.append(YamlIssue("empty", "the file is empty", Mark(1, 1)))
            return _document(None, Marks(), found)
        builder = _Builder()
        data = builder.build(root, ())
        if data is None and not builder.issues:
            message = "the file holds no flow, only an empty document ('---' or null)"
            found.append(source.issue(YamlIssue("empty", message, _mark(root.start_mark))))
            return _document(None, source.marks(builder.marks), found)
        shapes = [
            a
            for a in (structure_advice(_parsed(source.text, data, builder)) if repairing else [])
            if (a.mark, a.message) not in mended
        ]
        fix = _structure_fix(source, shapes)
        if fix is not None:
            mended.add((fix.mark, fix.message))
            found.append(source.issue(_advice_issue(fix), mended=True))
            source.apply(fix.edits)
            continue
        found.extend(source.issue(_advice_issue(a)) for a in shapes)
        found.extend(source.issue(issue) for issue in builder.issues)
        return _document(data, source.marks(builder.marks), found)
    raise AssertionError("unreachable: the last attempt never repairs")  # pragma: no cover


def _parsed(text: str, data: Any, builder: _Builder) -> Parsed:
    duplicates = tuple((i.path, i.mark) for i in builder.issues if i.code == "duplicate-key")
    marks = builder.marks
    return Parsed(text, data, marks.values, marks.keys, marks.plain_ends, duplicates)
