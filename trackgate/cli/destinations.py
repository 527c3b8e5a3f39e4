"""``trackgate destinations``: where stored events are forwarded."""

from __future__ import annotations

import json
import sys

import click
import msgspec

from trackgate.cli.config import CliConfig, pass_cli_config
from trackgate.schemas.destinations import Filters, SecretKeyMissing
from trackgate.workers import destinations as destination_store
from trackgate.workers.forward import trial


@click.group()
def destinations() -> None:
    """Manage destinations (where stored events are forwarded)."""


@destinations.command("add")
@click.argument("kind", type=click.Choice(destination_store.available_kinds()))
@click.option("--name", required=True, help="A unique name.")
@click.option("--url", default=None, help="Base URL (default: the vendor's own; required for webhook).")
@click.option("--credential", "credentials", multiple=True, metavar="NAME=VALUE", help="Repeatable.")
@click.option("--source", "sources_", multiple=True, help="Only this source (id or name; repeatable).")
@click.option("--include-type", multiple=True, help="Only these event types (repeatable).")
@click.option("--exclude-type", multiple=True, help="Never these event types (repeatable).")
@click.option("--include-name", multiple=True, help="Only events named so (glob; repeatable).")
@click.option("--exclude-name", multiple=True, help="Never events named so (glob; repeatable).")
@click.option("--consent", multiple=True, help="A consent category the event must grant (repeatable).")
@click.option("--require-consent", is_flag=True, help="Drop events that carry no consent information.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def destinations_add(
    cfg: CliConfig,
    kind: str,
    name: str,
    url: str | None,
    credentials: tuple[str, ...],
    sources_: tuple[str, ...],
    include_type: tuple[str, ...],
    exclude_type: tuple[str, ...],
    include_name: tuple[str, ...],
    exclude_name: tuple[str, ...],
    consent: tuple[str, ...],
    require_consent: bool,
    as_json: bool,
) -> None:
    """Add a destination of KIND (credentials are stored encrypted with TRACKGATE_SECRET_KEY)."""
    database_url = cfg.database_url
    creds = {}
    for item in credentials:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--credential")
        creds[key.strip()] = value
    filters = Filters(
        include_types=list(include_type),
        exclude_types=list(exclude_type),
        include_names=list(include_name),
        exclude_names=list(exclude_name),
        consent=list(consent),
        consent_required=require_consent,
    )
    try:
        source_ids = [destination_store.resolve_source(database_url, s)[0] for s in sources_]
        destination_id = destination_store.add_destination(
            database_url,
            cfg.settings.secret_key,
            kind=kind,
            name=name,
            base_url=url,
            credentials=creds,
            source_ids=source_ids,
            filters=filters,
        )
    except (destination_store.DestinationError, SecretKeyMissing) as exc:
        raise click.UsageError(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"id": destination_id, "kind": kind, "name": name}))
    else:
        click.echo(f"destination {destination_id} ({kind}, {name})")


@destinations.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def destinations_list(cfg: CliConfig, as_json: bool) -> None:
    """List destinations (credentials masked: never shown in full)."""
    rows = destination_store.list_destinations(cfg.database_url, cfg.settings.secret_key)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        state = "  (paused)" if row["paused"] else ""
        creds = ", ".join(f"{k}={v}" for k, v in row["credentials"].items())
        sources_shown = ",".join(row["sources"]) or "all sources"
        click.echo(
            f"{row['id']}  {row['kind']:<13} {row['name']}  {row['url']}  [{sources_shown}]  {creds}{state}"
        )


@destinations.command("remove")
@click.argument("destination")
@pass_cli_config
def destinations_remove(cfg: CliConfig, destination: str) -> None:
    """Remove a destination, its delivery log and dead letters (queued forwards to it are dropped)."""
    try:
        destination_id = destination_store.remove_destination(cfg.database_url, destination)
    except destination_store.DestinationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"removed {destination_id}")


@destinations.command("pause")
@click.argument("destination")
@pass_cli_config
def destinations_pause(cfg: CliConfig, destination: str) -> None:
    """Stop sending to a destination; its forwards wait (and keep queueing) until resumed."""
    try:
        destination_id = destination_store.set_paused(cfg.database_url, destination, True)
    except destination_store.DestinationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"paused {destination_id}")


@destinations.command("resume")
@click.argument("destination")
@pass_cli_config
def destinations_resume(cfg: CliConfig, destination: str) -> None:
    """Send to a paused destination again (waiting forwards go out within a minute)."""
    try:
        destination_id = destination_store.set_paused(cfg.database_url, destination, False)
    except destination_store.DestinationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"resumed {destination_id}")


@destinations.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def destinations_status(cfg: CliConfig, as_json: bool) -> None:
    """Per destination: delivered / retrying / dead forwards (events in brackets) and the last error."""
    rows = destination_store.status(cfg.database_url)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        state = " (paused)" if r["paused"] else ""
        click.echo(
            f"{r['name']} ({r['kind']}, {r['id']}){state}:"
            f" delivered {r['delivered']} [{r['delivered_events']}]"
            f"  retrying {r['retrying']} [{r['retrying_events']}]  dead {r['dead']} [{r['dead_events']}]"
        )
        if r["last_error"]:
            click.echo(f"  last error ({r['last_error_at']}): {r['last_error']}")


@destinations.command("test")
@click.argument("destination")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def destinations_test(cfg: CliConfig, destination: str, as_json: bool) -> None:
    """Send one synthetic event (a track named "trackgate test") to DESTINATION and print its answer;
    exit status 1 if it refused. Nothing is recorded; a paused destination is tried too."""
    try:
        answer = trial.try_destination(cfg.database_url, cfg.settings, destination)
    except destination_store.DestinationError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(answer)))
    else:
        status = f"HTTP {answer.status}" if answer.status is not None else answer.error
        verdict = "accepted" if answer.ok else "refused"
        click.echo(f"{answer.url}: {status} in {answer.seconds * 1000:.0f} ms ({verdict})")
        if answer.body.strip():
            click.echo(answer.body.strip())
    if not answer.ok:
        sys.exit(1)
