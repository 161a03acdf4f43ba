"""`python -m flowpbx.cli`: the same as the `flowpbx` command."""

from flowpbx.cli import main

main()
