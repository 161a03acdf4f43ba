"""Checks on what nodes say: variables and config names, opening hours, outcomes without their
trigger, Twilio's limits, voices and languages."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from functools import cache

from flowpbx.errors import Problem, Severity
from flowpbx.language.flow import (
    CONFIG_REFERENCE,
    DialNode,
    EnqueueNode,
    GotoNode,
    HangupNode,
    HoursNode,
    InputNode,
    MenuNode,
    Node,
    PauseNode,
    QueueSpec,
    RecordNode,
    SayNode,
    SetNode,
    Speech,
    SwitchNode,
)
from flowpbx.language.outline import TRANSCRIBE_MAX_SECONDS, Outline, did_you_mean, problem
from flowpbx.language.templates import BUILTIN_VARIABLES, Template
from flowpbx.language.voices import SPANISH_VOICES, suggest_voice, voice_language
from flowpbx.language.yamlsource import Path


def _speeches(node: Node) -> Iterator[tuple[Path, Speech]]:
    match node:
        case SayNode():
            yield ("text" if node.speech.text else "play",), node.speech
        case MenuNode() | InputNode():
            yield ("prompt",), node.prompt
            if node.no_input:
                yield ("no_input",), node.no_input
            if node.invalid:
                yield ("invalid",), node.invalid
        case RecordNode():
            if node.prompt:
                yield ("prompt",), node.prompt
        case HangupNode():
            if node.goodbye:
                yield ("text",), node.goodbye
        case _:
            return


def _templates(node: Node) -> Iterator[tuple[Path, Template]]:
    for path, speech in _speeches(node):
        if speech.text:
            yield path, speech.text
    if isinstance(node, SetNode):
        for name, value in node.values.items():
            yield ("values", name), value


def check_variables(outline: Outline) -> Iterator[Problem]:
    """Every variable a text or switch uses is set somewhere (or is caller, called, digits)."""
    if not outline.is_complete:
        return
    defined = set(BUILTIN_VARIABLES)
    for node in outline.nodes.values():
        if isinstance(node, InputNode):
            defined.add(node.variable)
        elif isinstance(node, SetNode):
            defined.update(node.values)
    uses: list[tuple[Path, str]] = []
    for node in outline.nodes.values():
        for path, text in _templates(node):
            uses.extend((("nodes", node.id, *path), name) for name in sorted(text.variables))
        if isinstance(node, SwitchNode):
            uses.append((("nodes", node.id, "variable"), node.variable))
    if outline.on_error_speech and outline.on_error_speech.text:
        uses.extend((("on_error", "text"), n) for n in outline.on_error_speech.text.variables)
    for path, name in uses:
        if name not in defined:
            where = f"node '{path[1]}': " if path[0] == "nodes" else ""
            yield problem(
                outline,
                path,
                Severity.ERROR,
                "unknown-variable",
                f"{where}variable '{name}' is never set{did_you_mean(name, defined)}; "
                "variables come from an input node, a set node, or are one of "
                + ", ".join(sorted(BUILTIN_VARIABLES)),
            )


def config_uses(node: Node) -> Iterator[tuple[Path, str]]:
    """Where a node may use ${NAME}: (path in the node, value as written)."""
    for path, speech in _speeches(node):
        if speech.play:
            yield (*path, "play") if path != ("play",) else path, speech.play
    if isinstance(node, DialNode):
        for i, target in enumerate(node.targets):
            yield ("to", i), target
        if node.caller_id:
            yield ("caller_id",), node.caller_id


def queue_config_uses(queue: QueueSpec) -> Iterator[tuple[Path, str]]:
    """Where a queue's settings may use ${NAME}: (path in the queue, value as written)."""
    if queue.hold_music:
        yield ("hold_music",), queue.hold_music


def _config_uses(outline: Outline) -> Iterator[tuple[Path, str, str]]:
    """Every place a value may use ${NAME}: (full path, who to name in messages, value)."""
    for node in outline.nodes.values():
        for path, value in config_uses(node):
            full: Path = ("nodes", node.id, *path)
            if isinstance(node, DialNode) and len(node.targets) == 1:
                full = ("nodes", node.id, "to")
            yield full, f"node '{node.id}'", value
    for queue in outline.queues.values():
        for path, value in queue_config_uses(queue):
            yield ("queues", queue.name, *path), f"queue '{queue.name}'", value


def check_config(outline: Outline) -> Iterator[Problem]:
    """Every ${NAME} is declared under config, and every config value is used."""
    used: set[str] = set()
    for path, who, value in _config_uses(outline):
        for name in CONFIG_REFERENCE.findall(value):
            used.add(name)
            if name in outline.config:
                continue
            yield problem(
                outline,
                path,
                Severity.ERROR,
                "unknown-config",
                f"{who}: '${{{name}}}' is not declared under 'config'"
                + did_you_mean(name, outline.config),
            )
    if outline.is_complete:
        for name in outline.config:
            if name not in used:
                yield problem(
                    outline,
                    ("config", name),
                    Severity.WARNING,
                    "unused-config",
                    f"config '{name}' is never used by a node or a queue",
                    key=True,
                )


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_hours(outline: Outline) -> Iterator[Problem]:
    """Time zones are real IANA names."""
    for node in outline.nodes.values():
        if not isinstance(node, HoursNode):
            continue
        try:
            zoneinfo.ZoneInfo(node.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            yield problem(
                outline,
                ("nodes", node.id, "timezone"),
                Severity.ERROR,
                "unknown-timezone",
                f"node '{node.id}': unknown time zone '{node.timezone}'"
                + did_you_mean(node.timezone, _timezones())
                + "; expected an IANA name like Europe/Madrid",
            )


# Outcomes that only some settings can produce: (node kind, setting, outcome, where a missing
# outcome is reported (None: the setting needs no outcome), what the outcome is for).
_PAIRED_OUTCOMES: tuple[tuple[type[Node], str, str, str | None, str], ...] = (
    (EnqueueNode, "leave_key", "left", "leave_key", "when the caller leaves the queue"),
    (EnqueueNode, "callback_key", "callback", None, "once a callback is asked for"),
    (GotoNode, "limit", "exhausted", "limit", "once the jump has been taken that often"),
)


def check_outcomes(outline: Outline) -> Iterator[Problem]:
    """Optional outcomes are given exactly when the node can produce them."""
    for node in outline.nodes.values():
        base: Path = ("nodes", node.id)
        for kind, setting, outcome, where, purpose in _PAIRED_OUTCOMES:
            if not isinstance(node, kind):
                continue
            is_set = getattr(node, setting) is not None
            has_outcome = bool(getattr(node, outcome))
            if is_set and not has_outcome and where:
                yield problem(
                    outline,
                    (*base, where),
                    Severity.ERROR,
                    "missing-outcome",
                    f"node '{node.id}': '{setting}' is set but '{outcome}' is not; "
                    f"say where the call goes {purpose}",
                    key=True,
                )
            if has_outcome and not is_set:
                yield problem(
                    outline,
                    (*base, outcome),
                    Severity.WARNING,
                    "unused-outcome",
                    f"node '{node.id}': '{outcome}' is never used without '{setting}'",
                    key=True,
                )


def check_twilio_limits(outline: Outline) -> Iterator[Problem]:
    """What Twilio refuses or does poorly: long or non-English transcriptions, one-key menus."""
    for node in outline.nodes.values():
        base: Path = ("nodes", node.id)
        if isinstance(node, RecordNode) and node.transcribe:
            if node.max_length > TRANSCRIBE_MAX_SECONDS:
                yield problem(
                    outline,
                    (*base, "max_length"),
                    Severity.ERROR,
                    "transcribe-length",
                    f"node '{node.id}': Twilio transcribes messages of at most "
                    f"{TRANSCRIBE_MAX_SECONDS} seconds, but max_length is {node.max_length}",
                )
            if not outline.language.startswith("en"):
                yield problem(
                    outline,
                    (*base, "transcribe"),
                    Severity.WARNING,
                    "transcribe-language",
                    f"node '{node.id}': Twilio transcribes English (en-US) only; "
                    f"this flow speaks {outline.language}",
                )
        if isinstance(node, PauseNode) and node.seconds > 60:
            yield problem(
                outline,
                (*base, "seconds"),
                Severity.WARNING,
                "long-pause",
                f"node '{node.id}': a {node.seconds}-second silence may make callers hang up",
            )


def _voices(outline: Outline) -> Iterator[tuple[Path, Speech]]:
    for node in outline.nodes.values():
        for path, speech in _speeches(node):
            yield ("nodes", node.id, *path), speech
    if outline.on_error_speech:
        yield ("on_error", "text"), outline.on_error_speech


def check_voices(outline: Outline) -> Iterator[Problem]:
    """Voices are ones Twilio knows, speaking the language they are given."""
    reported: set[tuple[str, str]] = set()
    spanish = ", ".join(SPANISH_VOICES)
    for path, speech in _voices(outline):
        if speech.text is None or (speech.voice, speech.language) in reported:
            continue
        reported.add((speech.voice, speech.language))
        target = _voice_path(outline, path)
        where = f"node '{target[1]}': " if target[0] == "nodes" else ""
        spoken = voice_language(speech.voice)
        if spoken is None:
            close = suggest_voice(speech.voice)
            hint = f" (did you mean '{close}'?)" if close else ""
            yield problem(
                outline,
                target,
                Severity.WARNING,
                "unknown-voice",
                f"{where}unknown voice '{speech.voice}'{hint}; Spanish voices are: {spanish}",
            )
        elif spoken != speech.language:
            yield problem(
                outline,
                target,
                Severity.WARNING,
                "voice-language",
                f"{where}voice '{speech.voice}' speaks {spoken}, but the language is "
                f"{speech.language}; Twilio may refuse to speak",
            )


def _voice_path(outline: Outline, text_path: Path) -> Path:
    """Where the voice of a text was chosen: on its node, else in the flow's defaults."""
    if text_path[0] == "nodes":
        node_path = text_path[:2]
        if (*node_path, "voice") in outline.marks.values:
            return (*node_path, "voice")
    if ("defaults", "voice") in outline.marks.values:
        return ("defaults", "voice")
    return text_path
