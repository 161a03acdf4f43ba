"""The flow JSON Schema shipped in the package, and its errors rewritten for flow authors."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from flowpbx.language.yamlsource import Marks, Path

_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "object": "a mapping (indented 'key: value' lines)",
    "array": "a list",
    "null": "nothing",
}


@cache
def flow_schema() -> dict[str, Any]:
    """The flow schema as shipped inside the installed package."""
    text = resources.files("flowpbx").joinpath("data/flow.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """ECMA-262 `$` ends the text; Python's `$` also matches before a final newline."""
    if isinstance(instance, str) and not _regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _is_integer(checker: Any, instance: Any) -> bool:
    """Only whole numbers written as such: YAML's 120.0 stays a float, not 120."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_FlowValidator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


@cache
def _document_validator() -> Draft202012Validator:
    """The flow schema with each node checked for its `type` only; kinds are checked apart.

    The shipped schema picks a node's kind with if/then (what editors understand); trying
    twelve `if`s per node is most of the validation time, so here the kind is looked up.
    """
    schema = flow_schema()
    node = schema["$defs"]["node"]
    shallow = {k: v for k, v in node.items() if k != "allOf"}
    validator: Draft202012Validator = _FlowValidator(
        {**schema, "$defs": {**schema["$defs"], "node": shallow}}
    )
    return validator


@cache
def _kind_validator(kind: str) -> Draft202012Validator | None:
    defs = flow_schema()["$defs"]
    if f"{kind}_node" not in defs:
        return None
    validator: Draft202012Validator = _FlowValidator(
        {"$ref": f"#/$defs/{kind}_node", "$defs": defs}
    )
    return validator


def matches(definition: str, value: str) -> bool:
    """Whether `value` fits the pattern of the schema's `$defs/<definition>`."""
    pattern: str = flow_schema()["$defs"][definition]["pattern"]
    return _regex(pattern).search(value) is not None


def raw_references(raw: Any) -> Iterator[tuple[Path, str]]:
    """Node references in a node's raw data, even when the node is otherwise invalid.

    Which keys hold node ids is read from the schema (`$ref: node_ref`), so that a node with
    one mistake still has its other references checked.
    """
    if not isinstance(raw, dict):
        return
    kind_schema = flow_schema()["$defs"].get(f"{raw.get('type')}_node")
    if not isinstance(kind_schema, dict):
        return
    properties: dict[str, Any] = kind_schema["properties"]
    for key, value in raw.items():
        prop = properties.get(key, {})
        if prop.get("$ref") == "#/$defs/node_ref" and isinstance(value, str):
            yield (key,), value
        elif key == "options" and isinstance(value, dict):
            yield from ((("options", k), v) for k, v in value.items() if isinstance(v, str))
        elif key == "cases" and isinstance(value, list):
            for i, case in enumerate(value):
                if isinstance(case, dict) and isinstance(case.get("next"), str):
                    yield ("cases", i, "next"), case["next"]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s ('#/$defs/name') to the schema they name."""
    seen = 0
    while "$ref" in schema and seen < 10:
        ref: str = schema["$ref"]
        target: dict[str, Any] = flow_schema()
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        seen += 1
    return schema


def describe_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _expected(schema: dict[str, Any]) -> str:
    """A short phrase for what a schema wants, for messages."""
    schema = _resolve(schema)
    if "x-expected" in schema:
        return str(schema["x-expected"])
    if "enum" in schema:
        return "one of: " + ", ".join(str(v) for v in schema["enum"])
    types = schema.get("type")
    if isinstance(types, list):
        return " or ".join(_TYPE_WORDS[t] for t in types)
    if isinstance(types, str):
        return _TYPE_WORDS[types]
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return " or ".join(_expected(b) for b in branches)
    return "a valid value"


def field_name(path: Path) -> str:
    """`path` inside its node (or the document) as a flow author writes it: cases[1].next."""
    inner = path[2:] if len(path) >= 2 and path[0] == "nodes" else path
    text = ""
    for part in inner:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _best(errors: list[ValidationError], instance: Any) -> ValidationError | None:
    """The error from the branch of an anyOf/oneOf meant for this kind of value."""
    kind = _type_of(instance)
    relevant = [
        e
        for e in errors
        if not (e.validator == "type" and not e.relative_path)
        and _resolve(_schema_of(e)).get("type", kind) in (kind, [kind])
    ]
    deep = [e for e in relevant or errors if e.validator not in ("anyOf", "oneOf")]
    candidates = deep or relevant or errors
    return candidates[0] if candidates else None


def _schema_of(error: ValidationError) -> dict[str, Any]:
    schema = error.schema
    return dict(schema) if isinstance(schema, Mapping) else {}


Message = tuple[Path, bool, str]


@dataclass(frozen=True)
class _Error:
    """A schema error with what every message needs: where, what was found, what was wanted."""

    path: Path
    value: Any
    schema: dict[str, Any]
    rule: Any
    error: ValidationError

    @property
    def subject(self) -> str:
        name = field_name(self.path)
        return f"'{name}' " if name else ""

    def say(self, text: str) -> Message:
        return self.path, False, (self.subject + text)


def _moved_to_queue(key: str, node: dict[str, Any]) -> str:
    """Why an enqueue node's old queue setting is refused, and where it goes now."""
    queue = node.get("queue")
    where = f"queues.{queue}" if isinstance(queue, str) and queue else "the queue's settings"
    return (
        f"'{key}' is now a setting of the queue: move '{key}' to {where} "
        "(queues are declared once, at the top of the file)"
    )


def _unknown_keys(e: _Error) -> Iterator[Message]:
    allowed = list(e.schema.get("properties", {}))
    moved = e.schema.get("x-moved-to-queue", ())
    name = field_name(e.path)
    for key in e.value if isinstance(e.value, dict) else ():
        if key in allowed:
            continue
        if key in moved:
            yield (*e.path, key), True, _moved_to_queue(key, e.value)
            continue
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        where = f" in '{name}'" if name else ""
        message = f"unknown key '{key}'{where}; {hint}expected one of: {', '.join(allowed)}"
        yield (*e.path, key), True, message


def _missing_keys(e: _Error) -> Iterator[Message]:
    for key in e.rule:
        if isinstance(e.value, dict) and key in e.value:
            continue
        about = _resolve(e.schema.get("properties", {}).get(key, {})).get("description", "")
        about = f": {about[0].lower()}{about[1:].rstrip('.')}" if 0 < len(about) < 120 else ""
        yield e.say(f"is missing '{key}'{about}")


def _not_in_enum(e: _Error) -> Iterator[Message]:
    options = [str(v) for v in e.rule]
    close = difflib.get_close_matches(str(e.value), options, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    what = "unknown node type" if e.path and e.path[-1] == "type" else "unknown value"
    got = describe_value(e.value)
    yield e.path, False, f"{what} {got}; {hint}expected one of: {', '.join(options)}"


def _bad_key_name(e: _Error) -> Iterator[Message]:
    context = {
        "options": "option key",
        "nodes": "node id",
        "weekly": "day",
        "config": "config name",
        "values": "variable name",
        "queues": "queue name",
    }.get(str(e.path[-1]) if e.path else "", "key")
    expected = _expected(e.schema)
    yield (*e.path, str(e.value)), True, f"{context} '{e.value}' is not valid: expected {expected}"


def _no_branch(e: _Error) -> Iterator[Message]:
    required_only = [
        b["required"][0] for b in e.rule if set(b) == {"required"} and len(b["required"]) == 1
    ]
    if required_only and isinstance(e.value, dict):
        present = [k for k in required_only if k in e.value]
        keys = " or ".join(f"'{k}'" for k in required_only)
        if present:
            both = " and ".join(f"'{k}'" for k in present)
            yield e.say(f"has {both}; keep only one of {keys}")
        else:
            yield e.say(f"needs {keys}")
        return
    if "x-expected" in e.schema:  # the branches together mean one thing, said as a whole
        yield e.say(f"must be {e.schema['x-expected']}, got {describe_value(e.value)}")
        return
    best = _best(list(e.error.context or []), e.value)
    if best is not None and best.validator not in ("anyOf", "oneOf"):
        yield from _messages(best, e.path[: len(e.path) - len(e.error.absolute_path)])
        return
    yield e.say(f"must be {_expected(e.schema)}, got {describe_value(e.value)}")


def _wrong_value(e: _Error) -> Iterator[Message]:
    yield e.say(f"must be {_expected(e.schema)}, got {describe_value(e.value)}")


def _out_of_range(e: _Error) -> Iterator[Message]:
    word = "at least" if e.error.validator == "minimum" else "at most"
    yield e.say(f"must be {word} {e.rule}, got {e.value}")


def _too_short(e: _Error) -> Iterator[Message]:
    yield e.say("must not be empty")


def _too_long(e: _Error) -> Iterator[Message]:
    yield e.say(f"is too long ({len(e.value)} characters; at most {e.rule})")


def _too_few(e: _Error) -> Iterator[Message]:
    yield e.say(f"needs at least {e.rule} entry")


def _too_many(e: _Error) -> Iterator[Message]:
    yield e.say(f"has more than {e.rule} entries")


_HANDLERS: dict[str, Callable[[_Error], Iterator[Message]]] = {
    "additionalProperties": _unknown_keys,
    "required": _missing_keys,
    "enum": _not_in_enum,
    "anyOf": _no_branch,
    "oneOf": _no_branch,
    "type": _wrong_value,
    "pattern": _wrong_value,
    "const": _wrong_value,
    "minimum": _out_of_range,
    "maximum": _out_of_range,
    "minLength": _too_short,
    "maxLength": _too_long,
    "minItems": _too_few,
    "minProperties": _too_few,
    "maxItems": _too_many,
    "maxProperties": _too_many,
}


def _messages(error: ValidationError, prefix: Path = ()) -> Iterator[Message]:
    """(where, whether it points at a key, message) for one schema error."""
    e = _Error(
        (*prefix, *error.absolute_path),
        error.instance,
        _resolve(_schema_of(error)),
        error.validator_value,
        error,
    )
    if "propertyNames" in error.absolute_schema_path and e.path:
        yield from _bad_key_name(e)
        return
    handler = _HANDLERS.get(str(error.validator))
    if handler is None:
        yield e.say(error.message)
        return
    yield from handler(e)


def _errors(document: Any) -> Iterator[tuple[ValidationError, Path]]:
    yield from ((error, ()) for error in _document_validator().iter_errors(document))
    nodes = document.get("nodes") if isinstance(document, dict) else None
    if not isinstance(nodes, dict):
        return
    for node_id, node in nodes.items():
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            continue
        validator = _kind_validator(node["type"])
        if validator is not None:
            yield from ((error, ("nodes", node_id)) for error in validator.iter_errors(node))


def schema_errors(document: Any, marks: Marks) -> Iterator[tuple[Path, int, int, str]]:
    """Every schema violation in `document` as (path, line, column, message)."""
    seen: set[tuple[Path, str]] = set()
    for error, prefix in _errors(document):
        for path, is_key, text in _messages(error, prefix):
            if (path, text) in seen:  # 'required' reports each missing key once per key
                continue
            seen.add((path, text))
            mark = marks.key(path) if is_key else marks.value(path)
            where = f"node '{path[1]}': " if len(path) >= 2 and path[0] == "nodes" else ""
            yield path, mark.line, mark.column, where + text[0].lower() + text[1:]
