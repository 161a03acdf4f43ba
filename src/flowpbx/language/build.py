"""Schema-valid node data to typed nodes: one builder per node kind.

Builders also check what a schema cannot express (a text's braces, day ranges,
real calendar dates) and report it as located problems rather than raising.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from flowpbx.language.build_hours import build_hours
from flowpbx.language.building import (
    BuildContext,
    Builder,
    Invalid,
    optional_speech,
    speech,
    template,
)
from flowpbx.language.flow import (
    Case,
    CaseTest,
    DialNode,
    EnqueueNode,
    GotoNode,
    HangupNode,
    InputNode,
    MenuNode,
    Node,
    PauseNode,
    RecordNode,
    SayNode,
    SetNode,
    SwitchNode,
)
from flowpbx.language.yamlsource import Path

__all__ = ["BUILDERS", "BuildContext", "Invalid", "build_node", "speech"]


def _common(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> dict[str, Any]:
    """The fields every node has: its id, where it was written and its description."""
    return {
        "id": node_id,
        "mark": ctx.mark(("nodes", node_id)),
        "description": raw.get("description", ""),
    }


def _say(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    key = "text" if "text" in raw else "play"
    value = raw["text"] if key == "text" else {"play": raw["play"]}
    return SayNode(
        **_common(node_id, raw, ctx),
        speech=speech(value, ("nodes", node_id, key), raw, ctx),
        loop=raw.get("loop", 1),
        next=raw["next"],
    )


def _pause(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    return PauseNode(**_common(node_id, raw, ctx), seconds=raw["seconds"], next=raw["next"])


def _menu(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    return MenuNode(
        **_common(node_id, raw, ctx),
        prompt=speech(raw["prompt"], (*path, "prompt"), raw, ctx),
        options=MappingProxyType(dict(raw["options"])),
        timeout=raw.get("timeout", 5),
        retries=raw.get("retries", 2),
        no_input=optional_speech(raw, "no_input", path, ctx),
        invalid=optional_speech(raw, "invalid", path, ctx),
        exhausted=raw.get("exhausted", ""),
    )


def _input(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    min_digits = raw.get("min_digits", 1)
    max_digits = raw.get("max_digits")
    if max_digits is not None and min_digits > max_digits:
        ctx.error(
            (*path, "min_digits"),
            f"node '{node_id}': min_digits ({min_digits}) is more than max_digits ({max_digits})",
            "digits-range",
        )
        raise Invalid
    return InputNode(
        **_common(node_id, raw, ctx),
        prompt=speech(raw["prompt"], (*path, "prompt"), raw, ctx),
        variable=raw["variable"],
        min_digits=min_digits,
        max_digits=max_digits,
        finish_on_key=raw.get("finish_on_key", "#"),
        is_sensitive=raw.get("sensitive", False),
        timeout=raw.get("timeout", 5),
        retries=raw.get("retries", 2),
        no_input=optional_speech(raw, "no_input", path, ctx),
        invalid=optional_speech(raw, "invalid", path, ctx),
        next=raw["next"],
        exhausted=raw.get("exhausted", ""),
    )


def _dial(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    targets = raw["to"] if isinstance(raw["to"], list) else [raw["to"]]
    return DialNode(
        **_common(node_id, raw, ctx),
        targets=tuple(targets),
        caller_id=raw.get("caller_id"),
        timeout=raw.get("timeout", 30),
        record=raw.get("record", ctx.recording.dials),
        channels=ctx.recording.channels,
        answered=raw.get("answered"),
        no_answer=raw["no_answer"],
        busy=raw.get("busy", raw["no_answer"]),
        failed=raw.get("failed", raw["no_answer"]),
    )


def _enqueue(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    return EnqueueNode(
        **_common(node_id, raw, ctx),
        queue=raw["queue"],
        priority=raw.get("priority", 0),
        leave_key=raw.get("leave_key"),
        callback_key=raw.get("callback_key"),
        timed_out=raw.get("timed_out"),
        full=raw["full"],
        left=raw.get("left"),
        callback=raw.get("callback"),
        voice=raw.get("voice", ctx.voice),
        language=raw.get("language", ctx.language),
    )


def _record(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    return RecordNode(
        **_common(node_id, raw, ctx),
        prompt=optional_speech(raw, "prompt", ("nodes", node_id), ctx),
        max_length=raw.get("max_length", 120),
        timeout=raw.get("timeout", 5),
        beep=raw.get("beep", True),
        finish_on_key=raw.get("finish_on_key", "#"),
        transcribe=raw.get("transcribe", False),
        next=raw["next"],
    )


def _hangup(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    goodbye = optional_speech(raw, "text", ("nodes", node_id), ctx)
    return HangupNode(**_common(node_id, raw, ctx), goodbye=goodbye)


def _goto(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    return GotoNode(
        **_common(node_id, raw, ctx),
        target=raw["target"],
        limit=raw.get("limit"),
        exhausted=raw.get("exhausted"),
    )


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _set(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    path: Path = ("nodes", node_id)
    values = {
        name: template(_scalar_text(value), (*path, "values", name), ctx)
        for name, value in raw["values"].items()
    }
    return SetNode(**_common(node_id, raw, ctx), values=MappingProxyType(values), next=raw["next"])


def _case(raw: dict[str, Any]) -> Case:
    if "starts_with" in raw:
        return Case(CaseTest.STARTS_WITH, (_scalar_text(raw["starts_with"]),), raw["next"])
    values = raw["one_of"] if "one_of" in raw else [raw["equals"]]
    return Case(CaseTest.EQUALS, tuple(_scalar_text(v) for v in values), raw["next"])


def _switch(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node:
    return SwitchNode(
        **_common(node_id, raw, ctx),
        variable=raw["variable"],
        cases=tuple(_case(case) for case in raw["cases"]),
        default=raw["default"],
    )


BUILDERS: Mapping[str, Builder] = MappingProxyType(
    {
        "say": _say,
        "pause": _pause,
        "menu": _menu,
        "input": _input,
        "dial": _dial,
        "enqueue": _enqueue,
        "record": _record,
        "hangup": _hangup,
        "goto": _goto,
        "set": _set,
        "switch": _switch,
        "hours": build_hours,
    }
)


def build_node(node_id: str, raw: dict[str, Any], ctx: BuildContext) -> Node | None:
    """The typed node, or None after recording why it cannot be built."""
    try:
        return BUILDERS[raw["type"]](node_id, raw, ctx)
    except Invalid:
        return None
