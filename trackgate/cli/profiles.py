"""``trackgate profiles``: the identity state the workers keep per workspace."""

from __future__ import annotations

import click
import psycopg

from trackgate.cli.config import CliConfig, pass_cli_config
from trackgate.workers import profiles_read as profile_store


@click.group()
def profiles() -> None:
    """Look at profiles (identity state the workers keep per workspace)."""


@profiles.command("show")
@click.argument("user_id")
@click.option("--workspace", default=None, help="The workspace (default: any; needed if several match).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def profiles_show(cfg: CliConfig, user_id: str, workspace: str | None, as_json: bool) -> None:
    """Print the profile USER_ID resolves to (any of its ids works: user, anonymous, aliased): its ids,
    traits, counters, revenue and groups."""
    with psycopg.connect(cfg.database_url) as conn:
        try:
            found = profile_store.find_profile(conn, user_id, workspace)
        except profile_store.AmbiguousProfile as exc:
            raise click.UsageError(f"{exc}; pick one with --workspace") from exc
    if found is None:
        where = f" in workspace {workspace}" if workspace else ""
        raise click.ClickException(f"no profile for {user_id!r}{where}")
    click.echo(profile_store.profile_json(found) if as_json else profile_store.profile_text(found))
