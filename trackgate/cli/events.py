"""``trackgate events``: look at stored events."""

from __future__ import annotations

import json

import click
import psycopg

from trackgate.cli.config import LIMIT, CliConfig, pass_cli_config

_SUMMARY = ("received_at", "source_id", "dialect", "type", "name", "user_id", "anonymous_id", "message_id")


@click.group()
def events() -> None:
    """Look at stored events."""


@events.command("list")
@click.option("--limit", type=LIMIT, default=20, show_default=True)
@pass_cli_config
def events_list(cfg: CliConfig, limit: int) -> None:
    """The most recently received events, newest first, one JSON line each."""
    with psycopg.connect(cfg.database_url) as conn:
        rows = conn.execute(
            "SELECT received_at, source_id, dialect, type, name, user_id, anonymous_id, message_id"
            " FROM events ORDER BY received_at DESC LIMIT %s",
            (limit,),
        ).fetchall()
    for row in rows:
        click.echo(json.dumps(dict(zip(_SUMMARY, row, strict=True)), default=str))
