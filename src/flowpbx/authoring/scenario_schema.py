"""The scenario file's JSON Schema, shipped in the package, and its errors said plainly, each
with the path of the key or value it is about."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from flowpbx.language.schema import describe_value
from flowpbx.language.yamlsource import Path


@cache
def scenario_schema() -> dict[str, Any]:
    """The scenario schema as shipped inside the installed package."""
    text = resources.files("flowpbx").joinpath("data/scenario.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(scenario_schema())


def _where(path: Path) -> str:
    """`path` as an author would say it: scenario 2, step 3."""
    words: list[str] = []
    for before, part in zip((None, *path), path, strict=False):
        if isinstance(part, int) and before == "scenarios":
            words.append(f"scenario {part + 1}")
        elif isinstance(part, int) and before == "steps":
            words.append(f"step {part + 1}")
        elif isinstance(part, str) and part not in ("scenarios", "steps"):
            words.append(f"'{part}'")
    return ", ".join(words)


def _missing_colon(value: Any, schema: Mapping[str, Any]) -> bool:
    """Whether `value` is a step written without its ':', like '- press 1'."""
    return isinstance(value, str) and value.partition(" ")[0] in schema.get("properties", {})


def _messages(error: ValidationError) -> Iterator[tuple[Path, bool, str]]:
    """(where, whether it points at a key, message) for one schema error."""
    path: Path = tuple(error.absolute_path)
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    value = error.instance
    rule: Any = error.validator_value
    where = _where(path)
    prefix = f"{where}: " if where else ""
    match error.validator:
        case "additionalProperties":
            allowed = list(schema.get("properties", {}))
            for key in value if isinstance(value, dict) else ():
                if key in allowed:
                    continue
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'? " if close else ""
                yield (
                    (*path, key),
                    True,
                    f"{prefix}unknown key '{key}'; {hint}expected one of: {', '.join(allowed)}",
                )
        case "required":
            for key in rule:
                if isinstance(value, dict) and key not in value:
                    yield path, False, f"{prefix}'{key}' is missing"
        case "enum":
            options = [str(v) for v in rule]
            close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            got = describe_value(value)
            yield (
                path,
                False,
                f"{prefix}unknown value {got}; {hint}expected one of: " + ", ".join(options),
            )
        case "type" if _missing_colon(value, schema):
            word, _, rest = str(value).partition(" ")
            yield path, False, f"{prefix}a ':' is missing after '{word}': write - {word}: {rest}"
        case "maxProperties" if isinstance(value, dict):
            keys = ", ".join(value)
            yield (
                path,
                False,
                (
                    f"{prefix}has {len(value)} keys ({keys}); a step does one thing: put each on "
                    "its own line starting with '- '"
                ),
            )
        case _:
            text = schema.get("errorMessage") or error.message
            shown = not isinstance(value, (dict, list))
            got = f" (got {describe_value(value)})" if shown else ""
            yield path, False, f"{prefix}{text}{got}"


def schema_messages(document: Any) -> Iterator[tuple[Path, bool, str]]:
    """Every schema violation in a scenario file: (path, whether at a key, message), each
    message said once."""
    seen: set[tuple[Path, str]] = set()
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.path)))
    for error in errors:
        for path, is_key, text in _messages(error):
            if (path, text) not in seen:
                seen.add((path, text))
                yield path, is_key, text
