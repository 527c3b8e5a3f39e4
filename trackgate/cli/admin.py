"""``trackgate admin``: API keys for the operator endpoints (``/debugger``; issue 12's API later)."""

from __future__ import annotations

import json

import click

from trackgate import api_keys
from trackgate.cli.config import CliConfig, pass_cli_config
from trackgate.schemas.destinations import SecretKeyMissing


@click.group()
def admin() -> None:
    """Administer trackgate: API keys."""


@admin.command("create-key")
@click.option("--label", default=None, help="A note to tell keys apart (who or what it is for).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def create_key(cfg: CliConfig, label: str | None, as_json: bool) -> None:
    """Create an admin API key and print it (the only time it is shown). Send it as X-API-KEY; the
    /debugger page asks for it."""
    try:
        created = api_keys.create_key(cfg.settings, cfg.database_url, label=label)
    except SecretKeyMissing as exc:
        raise click.ClickException(str(exc).replace("destination credentials are", "API keys are")) from exc
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": created.id,
                    "role": created.role,
                    "key": created.key,
                    "created_at": created.created_at.isoformat(),
                }
            )
        )
        return
    click.echo(f"admin API key {created.id} (shown once; send it as X-API-KEY):")
    click.echo(created.key)
