"""The ``trackgate`` command (``trackgate.cli:main``; ``python -m trackgate`` runs the same).

One module per command group; this root only collects them. A new group is a module here with a
``click.Group`` and one line in ``COMMANDS``. Shared setup (the settings, read once, and the URLs a
command needs) is ``trackgate.cli.config``; workers modules are imported directly, as the composition
root may import every part.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from trackgate.cli import (
    admin,
    convert,
    destinations,
    events,
    profiles,
    quarantine,
    replay,
    reports,
    secret_key,
    serve,
    sources,
    up,
)
from trackgate.cli.config import CliConfig, one_line_errors


class _Root(click.Group):
    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's own ``main``, but a usage error (a bad option or value) is one line naming what to
        do, not click's four (usage, hint, blank, error)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # a group called alone: its help, as click does
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            click.echo(f"Error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)  # click.Exit (--help, ctx.exit(n)) returns its code

    def invoke(self, ctx: click.Context) -> Any:
        # every subcommand runs inside this call: an unreachable server is one line, wherever it shows
        with one_line_errors():
            return super().invoke(ctx)


@click.group(cls=_Root)
@click.version_option(package_name="trackgate", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """trackgate: a multi-dialect tracking gateway."""
    # one CliConfig for the invocation, on the root context: options of the root (none yet) set it up
    ctx.ensure_object(CliConfig)


# modules, not their commands, are bound here: ``trackgate.cli.up`` stays the module
COMMANDS: tuple[click.Command, ...] = (
    up.up,
    serve.migrate,
    serve.serve,
    serve.worker,
    sources.sources,
    destinations.destinations,
    events.events,
    profiles.profiles,
    quarantine.quarantine,
    replay.replay,
    convert.convert,
    admin.admin,
    secret_key.secret_key,
    reports.reports,
)
for _command in COMMANDS:
    main.add_command(_command)

__all__ = ["main"]
