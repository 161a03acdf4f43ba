"""Graph and meaning checks on a flow's typed nodes: what a JSON Schema cannot see.

Dangling references, unreachable nodes, menus with no path for silence, loops that never wait
for the caller, undefined variables and config names, time zones, voices, Twilio limits,
queues that are not declared (or not used), and recorded calls that callers are not told about.
"""

from __future__ import annotations

from flowpbx.errors import Problem
from flowpbx.language.graph_checks import (
    check_input_paths,
    check_loops,
    check_reachable,
    check_references,
)
from flowpbx.language.outline import Outline
from flowpbx.language.prompt_checks import check_menu_prompts
from flowpbx.language.queue_checks import (
    check_queue_declared,
    check_queue_keys,
    check_queue_outcomes,
    check_queue_used,
)
from flowpbx.language.recording_checks import (
    check_notice_heard,
    check_notice_kind,
    check_notice_named,
)
from flowpbx.language.value_checks import (
    check_config,
    check_hours,
    check_outcomes,
    check_twilio_limits,
    check_variables,
    check_voices,
    config_uses,
    queue_config_uses,
)

__all__ = ["CHECKS", "Outline", "config_uses", "queue_config_uses", "run_checks"]

CHECKS = (
    check_references,
    check_reachable,
    check_input_paths,
    check_loops,
    check_variables,
    check_config,
    check_hours,
    check_outcomes,
    check_twilio_limits,
    check_voices,
    check_queue_declared,
    check_queue_keys,
    check_queue_outcomes,
    check_queue_used,
    check_notice_kind,
    check_notice_named,
    check_notice_heard,
    check_menu_prompts,
)


def run_checks(outline: Outline) -> list[Problem]:
    """Every problem the graph and meaning checks find."""
    return [problem for check in CHECKS for problem in check(outline)]
