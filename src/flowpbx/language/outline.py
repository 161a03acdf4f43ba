"""What the checks look at: the nodes that could be built, where each value was written, and
helpers that turn a finding into a located problem."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flowpbx.errors import Problem, Severity
from flowpbx.language.flow import (
    Node,
    QueueSpec,
    RecordingPolicy,
    Speech,
)
from flowpbx.language.yamlsource import Marks, Path

NODE_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
TRANSCRIBE_MAX_SECONDS = 120


@dataclass(frozen=True)
class Outline:
    """What the checks look at: every node id and queue written, and the nodes and queues that
    could be built."""

    file: str
    marks: Marks
    node_ids: frozenset[str]
    nodes: Mapping[str, Node]
    entry: str | None
    on_error_next: str | None
    on_error_speech: Speech | None
    config: Mapping[str, str | None]
    recording: RecordingPolicy
    language: str
    is_complete: bool
    broken: Mapping[str, object]
    """Raw data of the nodes that could not be built, for the checks that can still use it."""
    queue_names: frozenset[str]
    """Every queue declared under `queues`, even one whose settings could not be read."""
    queues: Mapping[str, QueueSpec]
    """The declared queues whose settings could be read, by name."""


def problem(
    outline: Outline, path: Path, severity: Severity, code: str, message: str, *, key: bool = False
) -> Problem:
    mark = outline.marks.key(path) if key else outline.marks.value(path)
    return Problem(outline.file, mark.line, mark.column, severity, code, message)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
