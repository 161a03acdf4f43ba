"""A flow file's `queues` section to typed queue settings, and how two declarations of one
queue differ.

A queue is declared once per file, but several flows may send callers to the same queue (the
same Twilio queue, the same agents): their declarations must then agree, or callers would wait
under different rules depending on the number they called.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flowpbx.language.building import BuildContext
from flowpbx.language.flow import QueueSpec, QueueStrategy

_NOT_SETTINGS = frozenset({"name", "mark", "description"})
_SETTINGS = tuple(f.name for f in dataclasses.fields(QueueSpec) if f.name not in _NOT_SETTINGS)
"""The settings that change how a queue behaves: every field but its name, where it is
declared and its description."""


def build_queues(
    raw: Any, ctx: BuildContext, broken: frozenset[str] = frozenset()
) -> dict[str, QueueSpec]:
    """The queues of schema-valid `queues` data, by name; `broken` names the ones the schema
    refused (reported already), which are left out."""
    if not isinstance(raw, dict):
        return {}
    return {
        name: _build_queue(name, settings or {}, ctx)
        for name, settings in raw.items()
        if name not in broken and isinstance(settings, dict | None)
    }


def _build_queue(name: str, raw: dict[str, Any], ctx: BuildContext) -> QueueSpec:
    settings: dict[str, Any] = {key: raw[key] for key in _SETTINGS if key in raw}
    if "strategy" in settings:
        settings["strategy"] = QueueStrategy(settings["strategy"])
    if settings.get("hold_music") == "":
        settings["hold_music"] = None  # "" is written for silence
    return QueueSpec(
        name=name,
        mark=ctx.marks.key(("queues", name)),
        description=raw.get("description", ""),
        **settings,
    )


def _shown(setting: str, value: object) -> str:
    """A setting's value as a flow author would write it."""
    if value is None:
        return '"" (silence)' if setting == "hold_music" else "~ (no limit)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def differences(there: QueueSpec, here: QueueSpec) -> list[str]:
    """The settings in which two declarations of a queue differ: 'max_wait 600 there, 300 here'."""
    return [
        f"{setting} {_shown(setting, getattr(there, setting))} there, "
        f"{_shown(setting, getattr(here, setting))} here"
        for setting in _SETTINGS
        if getattr(there, setting) != getattr(here, setting)
    ]


def conflict(there_file: str, there: QueueSpec, here: QueueSpec) -> str | None:
    """Why `here` may not declare its queue as it does, when `there_file` declared it first as
    `there` (None when both agree); the message is shown at `here`'s own file and line."""
    changed = differences(there, here)
    if not changed:
        return None
    return (
        f"queue '{here.name}' is declared with other settings in {there_file}:{there.mark.line} "
        f"({'; '.join(changed)}); a queue used by several flows must have the same settings "
        "in each"
    )
