"""The `flowpbx` command: validate flows, simulate a call, serve the webhooks, sign requests."""

from __future__ import annotations

import click

from flowpbx import __version__
from flowpbx.cli.apikey import apikey
from flowpbx.cli.db import db
from flowpbx.cli.graph import graph
from flowpbx.cli.history import history_writer
from flowpbx.cli.reload import reload
from flowpbx.cli.serve import serve
from flowpbx.cli.sign import sign
from flowpbx.cli.simulate import simulate
from flowpbx.cli.test_command import test
from flowpbx.cli.validate import validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowpbx")
def main() -> None:
    """flowpbx: data-driven IVR and call queues for Twilio Programmable Voice."""


main.add_command(validate)
main.add_command(simulate)
main.add_command(test)
main.add_command(serve)
main.add_command(reload)
main.add_command(sign)
main.add_command(db)
main.add_command(apikey)
main.add_command(history_writer)
main.add_command(graph)
