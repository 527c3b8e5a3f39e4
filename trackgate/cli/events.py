"""``trackgate events``: look at stored events (``list``, ``show``) and watch them arrive (``tail``)."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from datetime import datetime
from typing import Any

import click
import msgspec
import psycopg
import redis

from trackgate.cli.config import LIMIT, CliConfig, pass_cli_config
from trackgate.cli.times import when
from trackgate.schemas import debug_feed
from trackgate.schemas.debug_feed import Filters, Seen
from trackgate.workers.store import COLUMNS, row_fields  # every column of an events row, as stored

_SUMMARY = (
    "id",
    "received_at",
    "source_id",
    "dialect",
    "type",
    "name",
    "user_id",
    "anonymous_id",
    "message_id",
)
_COLORS = {"stored": "green", "duplicate": "yellow", "quarantined": "red", "refused": "red"}


@click.group()
def events() -> None:
    """Look at stored events, or watch them arrive."""


def _source_ids(conn: psycopg.Connection, source: str) -> list[str]:
    """A source given by id or by name (every dialect's source of that name)."""
    rows = conn.execute("SELECT id FROM sources WHERE id = %s OR name = %s", (source, source)).fetchall()
    if not rows:
        raise click.ClickException(f"no source {source!r} (give its id or name: `trackgate sources list`)")
    return [row[0] for row in rows]


def _like(glob: str) -> str:
    """A name glob (``sign*``, ``page_?``) as a LIKE pattern."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column, value in row.items():
        if column == "raw" and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[column] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _line(row: dict[str, Any]) -> str:
    who = row["user_id"] or (f"anon {row['anonymous_id']}" if row["anonymous_id"] else "-")
    received = row["received_at"].isoformat(sep=" ", timespec="milliseconds")
    return (
        f"{received}  {row['source_id']}  {row['dialect']:<13} {row['type']:<9} {row['name'] or '-'}  {who}"
        f"  {row['id']}"
    )


_FILTER_OPTIONS = (
    click.option("--source", default=None, help="Only this source (id or name)."),
    click.option("--type", "event_type", default=None, help="Only this type (track, page, identify, ...)."),
    click.option("--name", default=None, help="Only names matching this glob (sign*)."),
    click.option("--user", default=None, help="Only this user id or anonymous id."),
)


def _with_filters(command: Any) -> Any:
    for option in reversed(_FILTER_OPTIONS):
        command = option(command)
    return command


@events.command("list")
@_with_filters
@click.option("--since", default=None, help="Received at or after: an ISO time or an age (30m, 2h, 7d).")
@click.option("--until", default=None, help="Received before: an ISO time or an age.")
@click.option("--limit", type=LIMIT, default=20, show_default=True)
@click.option("--full", is_flag=True, help="The whole canonical event, enrichment and raw payload included.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line (for scripts).")
@pass_cli_config
def events_list(
    cfg: CliConfig,
    source: str | None,
    event_type: str | None,
    name: str | None,
    user: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    full: bool,
    as_json: bool,
) -> None:
    """The most recently received events, newest first."""
    start = when(since) if since else None
    end = when(until) if until else None
    columns = COLUMNS if full else _SUMMARY
    where: list[str] = []
    params: list[Any] = []
    with psycopg.connect(cfg.database_url) as conn:
        if source:
            where.append("source_id = ANY(%s)")
            params.append(_source_ids(conn, source))
        if event_type:
            where.append("type = %s")
            params.append(event_type)
        if name:
            where.append("name LIKE %s")
            params.append(_like(name))
        if user:
            where.append("(user_id = %s OR anonymous_id = %s)")
            params += [user, user]
        if start:
            where.append("received_at >= %s")
            params.append(start)
        if end:
            where.append("received_at < %s")
            params.append(end)
        quoted = ", ".join(f'"{c}"' for c in columns)
        sql = (
            f"SELECT {quoted} FROM events WHERE {' AND '.join(where) or 'TRUE'}"
            " ORDER BY received_at DESC, id DESC LIMIT %s"
        )
        found = conn.execute(sql, (*params, limit)).fetchall()  # type: ignore[call-overload]
    rows = [row_fields(r) if full else dict(zip(columns, r, strict=True)) for r in found]
    for row in rows:
        if as_json:
            click.echo(json.dumps(_jsonable(row), default=str))
        elif full:
            click.echo(json.dumps(_jsonable(row), default=str, indent=2))
        else:
            click.echo(_line(row))


@events.command("show")
@click.argument("event_id")
@click.option("--json", "as_json", is_flag=True, help="One line of JSON (for scripts).")
@pass_cli_config
def events_show(cfg: CliConfig, event_id: str, as_json: bool) -> None:
    """One stored event, whole: the canonical fields, its enrichment and the raw payload."""
    try:
        uuid.UUID(event_id)
    except ValueError:
        raise click.ClickException(
            f"{event_id!r} is not an event id (a UUID, as `trackgate events list` shows)"
        ) from None
    quoted = ", ".join(f'"{c}"' for c in COLUMNS)
    with psycopg.connect(cfg.database_url) as conn:
        found = conn.execute(f"SELECT {quoted} FROM events WHERE id = %s", (event_id,)).fetchone()  # type: ignore[call-overload]
    if found is None:
        raise click.ClickException(f"no event {event_id!r} (ids are in `trackgate events list`)")
    row = _jsonable(row_fields(found))
    click.echo(json.dumps(row, default=str, indent=None if as_json else 2))


def tail_line(seen: Seen) -> str:
    """One colored line of ``events tail``."""
    at = seen.at.astimezone().strftime("%H:%M:%S.%f")[:-3]
    who = seen.user_id or (f"anon {seen.anonymous_id}" if seen.anonymous_id else "")
    parts = [
        at,
        click.style(f"{seen.kind.upper():<11}", fg=_COLORS[seen.kind], bold=True),
        seen.source_id or "(no source)",
        f"{seen.dialect:<13}",
    ]
    if seen.kind == "refused":
        parts.append(f"{seen.status} {seen.path}")
    else:
        parts += [f"{seen.type or '-':<9}", seen.name or "-", who or "-"]
    if seen.reason:
        parts.append(click.style(f"{seen.code}: {seen.reason}", fg="red"))
    return "  ".join(parts)


@events.command("tail")
@_with_filters
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line (the feed's line as is).")
@click.option(
    "--max-events", type=click.IntRange(min=1), default=None, help="Stop after this many (default: Ctrl-C)."
)
@pass_cli_config
def events_tail(
    cfg: CliConfig,
    source: str | None,
    event_type: str | None,
    name: str | None,
    user: str | None,
    as_json: bool,
    max_events: int | None,
) -> None:
    """Events as the workers store them (new, duplicate, quarantined) and requests the gateway refuses,
    live, one colored line each. The feed is written only while someone watches (this command, or the
    /debugger page), so it starts with what arrives from now on."""
    sources: frozenset[str] = frozenset()
    if source:
        if source.startswith("src_"):
            sources = frozenset([source])
        else:
            with psycopg.connect(cfg.database_url) as conn:
                sources = frozenset(_source_ids(conn, source))
    filters = Filters(sources=sources, type=event_type, name=name, user=user)
    client = redis.Redis.from_url(cfg.redis_url, socket_timeout=10)
    try:
        _follow(client, filters, as_json, max_events)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


def _follow(client: redis.Redis, filters: Filters, as_json: bool, max_events: int | None) -> None:
    client.set(debug_feed.WATCHERS, b"1", ex=debug_feed.WATCH_TTL_SECONDS)
    refreshed = time.monotonic()
    newest = debug_feed.entries(client.xrevrange(debug_feed.STREAM, count=1))
    last = newest[0][0] if newest else "0-0"
    shown = 0
    while True:
        if time.monotonic() - refreshed >= debug_feed.WATCH_REFRESH_SECONDS:
            client.set(debug_feed.WATCHERS, b"1", ex=debug_feed.WATCH_TTL_SECONDS)
            refreshed = time.monotonic()
        found = client.xread({debug_feed.STREAM: last}, count=100, block=1000)
        for entry_id, data in debug_feed.entries(found):
            last = entry_id
            try:
                seen = debug_feed.decode(data)
            except msgspec.DecodeError:
                continue
            if not filters.matches(seen):
                continue
            click.echo(data.decode() if as_json else tail_line(seen))
            shown += 1
            if max_events is not None and shown >= max_events:
                return
