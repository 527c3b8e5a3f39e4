"""``trackgate admin``: API keys for the operator endpoints (``/debugger``) and the TinyTrail API
(a key is a user of ``/api/v1/users``): create, list, revoke."""

from __future__ import annotations

import json

import click
import msgspec

from trackgate import api_keys
from trackgate.cli.config import CliConfig, pass_cli_config
from trackgate.schemas.destinations import SecretKeyMissing
from trackgate.sources import announce_change


@click.group()
def admin() -> None:
    """Administer trackgate: API keys."""


@admin.command("create-key")
@click.option("--label", default=None, help="A note to tell keys apart (who or what it is for).")
@click.option(
    "--role",
    type=click.Choice(["admin", "user"]),
    default=None,
    help="What it may do. [default: user with --account, else admin]",
)
@click.option(
    "--account", default=None, help="The account (id or name) of a user key; an admin key may have one."
)
@click.option("--email", default=None, help="A label the TinyTrail API shows as the user's email.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def create_key(
    cfg: CliConfig, label: str | None, role: str | None, account: str | None, email: str | None, as_json: bool
) -> None:
    """Create an API key and print it (the only time it is shown; an admin sees it again with GET
    /api/v1/users/ID/api-key). Send it as X-API-KEY; the /debugger page asks for an admin one."""
    role = role or ("user" if account else "admin")  # a key named for an account sees that account only
    try:
        account_id = api_keys.resolve_account(cfg.database_url, account) if account else None
        created = api_keys.create_key(
            cfg.settings, cfg.database_url, role=role, label=label, account_id=account_id, email=email
        )
    except SecretKeyMissing as exc:
        raise click.ClickException(str(exc).replace("destination credentials are", "API keys are")) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
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
    click.echo(f"{created.role} API key {created.id} (shown once; send it as X-API-KEY):")
    click.echo(created.key)


@admin.command("list-keys")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def list_keys(cfg: CliConfig, as_json: bool) -> None:
    """List the API keys (never the keys themselves): id, role, account, label or email, state."""
    rows = api_keys.list_keys(cfg.database_url)
    if as_json:
        click.echo(json.dumps([msgspec.to_builtins(row) for row in rows]))
        return
    if not rows:
        click.echo("no API keys (trackgate admin create-key makes one)")
    for row in rows:
        account = f"account {row.account or row.account_id}" if row.account_id else "no account"
        note = row.email or row.label or ""
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        click.echo(f"{row.id}  {row.role:<5}  {account}  {state}  {note}".rstrip())


@admin.command("revoke-key")
@click.argument("key_id")
@pass_cli_config
def revoke_key(cfg: CliConfig, key_id: str) -> None:
    """Revoke an API key by its id (every running gateway is told: it stops working at once)."""
    if not api_keys.revoke(cfg.database_url, key_id):
        raise click.ClickException(f"no active API key {key_id} (see trackgate admin list-keys)")
    announce_change(cfg.settings.redis_url)  # without Redis: the gateways' 5 s cache
    click.echo(f"revoked {key_id}")
