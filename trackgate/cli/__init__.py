"""The ``trackgate`` command (``trackgate.cli:main``; ``python -m trackgate`` runs the same).

One module per command group; this root only collects them. A new group is a module here with a
``click.Group`` and one line in ``COMMANDS``. Shared setup (the settings, read once, and the URLs a
command needs) is ``trackgate.cli.config``; workers modules are imported directly, as the composition
root may import every part.
"""

from __future__ import annotations

from typing import Any

import click

from trackgate.cli.config import one_line_errors
from trackgate.cli.convert import convert
from trackgate.cli.destinations import destinations
from trackgate.cli.events import events
from trackgate.cli.profiles import profiles
from trackgate.cli.quarantine import quarantine
from trackgate.cli.replay import replay
from trackgate.cli.serve import migrate, serve, worker
from trackgate.cli.sources import sources
from trackgate.cli.up import up


class _Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # every subcommand runs inside this call: an unreachable server is one line, wherever it shows
        with one_line_errors():
            return super().invoke(ctx)


@click.group(cls=_Root)
def main() -> None:
    """trackgate: a multi-dialect tracking gateway."""


COMMANDS: tuple[click.Command, ...] = (
    up,
    migrate,
    serve,
    worker,
    sources,
    destinations,
    events,
    profiles,
    quarantine,
    replay,
    convert,
)
for _command in COMMANDS:
    main.add_command(_command)

__all__ = ["main"]
