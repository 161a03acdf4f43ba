"""What the commands share: exit codes, failing with a message, finding a flow file."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def fail(message: str, code: int) -> NoReturn:
    """Print `message` on stderr and exit with `code`."""
    click.echo(message, err=True)
    sys.exit(code)


def flow_file(flow: str, flows_dir: Path) -> Path:
    """FLOW is a file, or the name of a flow in the flows folder."""
    path = Path(flow)
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml"):
        raise click.UsageError(f"there is no flow file {path}")
    for suffix in (".yaml", ".yml"):
        candidate = flows_dir / f"{flow}{suffix}"
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in flows_dir.glob("*.y*ml")) if flows_dir.is_dir() else []
    close = difflib.get_close_matches(flow, names, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    known = f"; the flows there are: {', '.join(names)}" if names else ""
    raise click.UsageError(f"no flow '{flow}' in {flows_dir}/{hint}{known}")


flows_folder = click.option(
    "--flows",
    "flows_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of flow files (default FLOWPBX_FLOWS_DIR or flows/).",
)
"""The folder of flows a command serves or checks (`flowpbx serve`, `flowpbx reload`)."""

flow_name_folder = click.option(
    "--flows",
    "flows_dir",
    type=click.Path(path_type=Path),
    default=Path("flows"),
    show_default=True,
    help="Folder to find FLOW in when it is a name.",
)
"""Where a FLOW given by name is looked up (`flowpbx simulate`, `flowpbx graph`)."""


def text_or_json(
    help_text: str = "Output for people (text) or machines (json).",
) -> Callable[[F], F]:
    """The `--format text|json` option of the commands that report (`validate`, `test`,
    `simulate`)."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help=help_text,
    )
