"""The author guide works as written: its recipe for option 5 gives a valid flow that callers
can use, its diagram is the shipped flow's, its commands exist, and it explains every message
the checks give."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from authoring_recipe import block, guide, scenarios_with_option_5, seguros_with_option_5
from conftest import FLOWS, ROOT
from flowpbx.cli import main
from flowpbx.language.loader import check_file, check_text

INVALID = ROOT / "tests" / "flows" / "invalid"


def test_option_5_recipe_gives_a_valid_flow_with_no_warning() -> None:
    """Following the recipe leaves no error and no warning."""
    report = check_text(seguros_with_option_5(), "seguros.yaml")
    assert report.problems == ()
    assert report.flow is not None
    assert report.flow.nodes["menu_principal"].options["5"] == "viaje"  # type: ignore[union-attr]


def test_option_5_recipe_is_heard_in_the_simulation(tmp_path: Path) -> None:
    """The guide's simulate command plays option 5: the department's name, its number, and
    its voicemail when nobody answers."""
    (tmp_path / "seguros.yaml").write_text(seguros_with_option_5(), "utf-8")
    args = [
        "simulate",
        "seguros",
        "--flows",
        str(tmp_path),
        "--digits",
        "5,no-answer,message",
        "--at",
        "2026-12-02 10:00",
        "--no-events",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Ha elegido seguros de viaje." in result.output
    assert "dials: +34912345682" in result.output
    assert "step 3: buzon_viaje" in result.output


def test_option_5_recipe_scenarios_pass_with_full_coverage(tmp_path: Path) -> None:
    """The guide's scenarios for option 5, added to the shipped ones, pass and keep every
    node and outcome covered."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "seguros.yaml").write_text(seguros_with_option_5(), "utf-8")
    (tmp_path / "tests" / "seguros.yaml").write_text(scenarios_with_option_5(), "utf-8")
    args = ["test", "--flows", str(tmp_path), "--min-coverage", "100"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "seguros: 31/31 nodes (100%), 57/57 outcomes (100%)" in result.output
    assert "38 scenarios: 38 passed, 0 failed" in result.output


def test_removing_option_5_but_not_the_prompt_fails_the_check() -> None:
    """The guide's promise: a prompt that still says "pulse 5" without the option is an
    error."""
    text = seguros_with_option_5().replace("      5: viaje\n", "", 1)
    report = check_text(text, "seguros.yaml")
    assert [p.code for p in report.errors] == ["menu-prompt-key"]


def test_guide_diagram_is_the_shipped_flow() -> None:
    """The Mermaid diagram in the guide is what `flowpbx graph seguros` draws today."""
    result = CliRunner().invoke(main, ["graph", str(FLOWS / "seguros.yaml")])
    assert result.exit_code == 0, result.output
    assert block("mermaid") == result.output


def _commands() -> set[tuple[str, ...]]:
    """Every `scripts/flowpbx ...` command line written in the guide's code blocks."""
    found = set()
    for written in guide().splitlines():
        line = written.split("  #")[0].strip()
        if line.startswith("scripts/flowpbx "):
            found.add(tuple(shlex.split(line)[1:]))
    return found


def test_guide_commands_exist_with_their_options() -> None:
    """Each command the guide shows is a flowpbx command, and each option it uses is one of
    that command's options."""
    commands = _commands()
    assert {c[0] for c in commands} >= {"validate", "simulate", "graph", "test", "reload"}
    for command in commands:
        sub = main.commands.get(command[0])
        assert sub is not None, f"the guide uses 'flowpbx {command[0]}', which does not exist"
        options = {
            name
            for param in sub.params
            for name in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
        }
        for word in command[1:]:
            if word.startswith("-"):
                assert word in options, f"'flowpbx {command[0]}' has no option {word}"


@pytest.mark.parametrize("path", sorted(INVALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_guide_explains_every_problem_code(path: Path) -> None:
    """Every problem code a test flow produces has its entry in the guide's last section."""
    section = guide().split("## 9. Every message", 1)[1]
    for problem in check_file(path).problems:
        assert f"`{problem.code}`" in section, f"{problem.code} ({problem}) is not in the guide"
