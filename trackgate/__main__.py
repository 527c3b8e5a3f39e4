"""``python -m trackgate``: the ``trackgate`` command."""

from trackgate.cli import main

main(prog_name="trackgate")
