"""`flowpbx graph FLOW`: a diagram of a flow, as Mermaid text (for markdown), Graphviz DOT, or
an SVG or PNG image drawn by Graphviz."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flowpbx.authoring.diagram import diagram
from flowpbx.authoring.dot import GraphvizError, GraphvizMissing, render, to_dot
from flowpbx.authoring.mermaid import to_mermaid
from flowpbx.cli.common import EXIT_PROBLEMS, EXIT_USAGE, fail, flow_file, flow_name_folder
from flowpbx.language.loader import check_file

FORMATS = ("mermaid", "dot", "svg", "png")
IMAGES = frozenset({"svg", "png"})


def _write(data: bytes, output: Path | None) -> None:
    if output is None:
        click.echo(data, nl=False)  # bytes go to stdout's binary buffer, as they are
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        fail(f"flowpbx graph: cannot write {output}: {exc.strerror or exc}", EXIT_USAGE)


@click.command(short_help="Draw a flow: Mermaid for markdown, DOT, SVG or PNG.")
@click.argument("flow")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="mermaid",
    show_default=True,
    help="mermaid and dot are text; svg and png are images drawn by Graphviz (needs 'dot').",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: standard output; png needs a file or a pipe).",
)
@flow_name_folder
def graph(flow: str, output_format: str, output: Path | None, flows_dir: Path) -> None:
    """Draw FLOW (a flow file, or a flow's name in --flows) as a diagram.

    Nodes show their id, kind and the start of what they say; arrows show the key pressed or
    the outcome. The entry is outlined, business hours are a rhombus, and nodes never reached
    or from which the call cannot end are marked. Paste Mermaid output into a ```mermaid block
    of a markdown file: GitHub and GitLab draw it.
    """
    path = flow_file(flow, flows_dir)
    if output is None and output_format == "png" and sys.stdout.isatty():
        raise click.UsageError("a png is binary: give --output FILE, or pipe it to a file")
    report = check_file(path)
    for problem in report.problems:
        click.echo(str(problem), err=True)
    if report.flow is None:
        fail(
            f"flowpbx graph: {path} has errors (above, with their line and column); fix them "
            f"and try again (flowpbx validate {path} lists them too)",
            EXIT_PROBLEMS,
        )
    drawn = diagram(report.flow)
    if output_format == "mermaid":
        _write(to_mermaid(drawn).encode(), output)
        return
    dot_text = to_dot(drawn)
    if output_format not in IMAGES:
        _write(dot_text.encode(), output)
        return
    try:
        image = render(dot_text, output_format)
    except GraphvizMissing as exc:
        fail(f"flowpbx graph: {exc}", EXIT_USAGE)
    except GraphvizError as exc:
        fail(f"flowpbx graph: {exc}", EXIT_PROBLEMS)
    _write(image, output)
