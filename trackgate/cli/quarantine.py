"""``trackgate quarantine``: events kept because they could not be accepted or stored as they are."""

from __future__ import annotations

import json

import click
import psycopg

from trackgate.cli.config import LIMIT, CliConfig, pass_cli_config
from trackgate.workers import quarantine as quarantine_store


@click.group("quarantine")
def quarantine() -> None:
    """Events kept because they could not be accepted or stored as they are."""


@quarantine.command("list")
@click.option("--source", default=None, help="Only this source id.")
@click.option("--status", type=click.Choice(["pending", "replayed"]), default=None)
@click.option("--limit", type=LIMIT, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line, with the raw payload.")
@pass_cli_config
def quarantine_list(
    cfg: CliConfig, source: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """Quarantined items, oldest first: source, dialect/version, status, code and reason."""
    with psycopg.connect(cfg.database_url, autocommit=True) as conn:
        rows = quarantine_store.list_rows(
            conn, source=source, status=status, limit=limit, with_payload=as_json
        )
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, default=str))
            continue
        version = f"/{row['dialect_version']}" if row["dialect_version"] else ""
        index = f" [{row['item_index']}]" if row["item_index"] is not None else ""
        created = f"{row['created_at']:%Y-%m-%d %H:%M:%S}"
        click.echo(
            f"{row['id']}  {created}  {row['source_id']}  {row['dialect']}{version}"
            f"  {row['status']}  {row['code'] or '-'}{index}  {row['reason']}"
        )


@quarantine.command("replay")
@click.option("--source", default=None, help="Only this source id.")
@click.option("--id", "row_id", type=int, default=None, help="Only this quarantine row.")
@pass_cli_config
def quarantine_replay(cfg: CliConfig, source: str | None, row_id: int | None) -> None:
    """Re-decode pending items with the current adapters and store those that now decode."""
    with psycopg.connect(cfg.database_url, autocommit=True) as conn:
        outcomes = quarantine_store.replay(conn, source=source, row_id=row_id, settings=cfg.settings)
        if row_id is not None and not outcomes:
            status = quarantine_store.row_status(conn, row_id)
            if status is None:
                raise click.ClickException(
                    f"no such row: quarantine has no row {row_id} (see `trackgate quarantine list`)"
                )
            raise click.ClickException(f"row {row_id} is {status}: only pending rows are replayed")
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.result] = counts.get(outcome.result, 0) + 1
        detail = f": {outcome.reason}" if outcome.reason else ""
        click.echo(f"{outcome.id}  {outcome.result}{detail}")
    summary = ", ".join(f"{n} {result}" for result, n in sorted(counts.items())) or "nothing pending"
    click.echo(f"replayed {len(outcomes)} row(s): {summary}")
