"""What node builders share: where values were written, the flow's defaults, the problems
found so far, and the pieces every builder uses (texts and spoken messages)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowpbx.errors import Mark, Problem, Severity
from flowpbx.language.flow import Node, RecordingPolicy, Speech
from flowpbx.language.templates import Template, TemplateError, parse_template
from flowpbx.language.yamlsource import Marks, Path


class Invalid(Exception):
    """Raised inside a builder after its problems are recorded: the node is not built."""


@dataclass
class BuildContext:
    """What builders share: where values were written, flow defaults and found problems."""

    file: str
    marks: Marks
    voice: str
    language: str
    recording: RecordingPolicy = field(default_factory=RecordingPolicy)
    problems: list[Problem] = field(default_factory=list)

    def error(self, path: Path, message: str, code: str, *, key: bool = False) -> None:
        mark = self.marks.key(path) if key else self.marks.value(path)
        self.problems.append(
            Problem(self.file, mark.line, mark.column, Severity.ERROR, code, message)
        )

    def mark(self, path: Path) -> Mark:
        return self.marks.value(path)


Builder = Callable[[str, dict[str, Any], BuildContext], Node]


def template(value: str, path: Path, ctx: BuildContext) -> Template:
    try:
        return parse_template(value)
    except TemplateError as exc:
        ctx.error(
            path,
            f"node '{path[1]}': {exc.message}" if path[0] == "nodes" else exc.message,
            "bad-text",
        )
        raise Invalid from exc


def speech(value: Any, path: Path, raw: dict[str, Any], ctx: BuildContext) -> Speech:
    """A message (text, or {play: url}) in the node's voice and language."""
    voice = raw.get("voice", ctx.voice)
    language = raw.get("language", ctx.language)
    if isinstance(value, dict):
        return Speech(None, value["play"], voice, language)
    return Speech(template(value, path, ctx), None, voice, language)


def optional_speech(raw: dict[str, Any], key: str, path: Path, ctx: BuildContext) -> Speech | None:
    return speech(raw[key], (*path, key), raw, ctx) if key in raw else None
