"""``trackgate replay events``: a source's stored events forwarded to one destination, in timestamp
order, resumable from a checkpoint (keyset on ``("timestamp", id)``)."""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime

import click
import msgspec
import psycopg

from trackgate.adapters import transports
from trackgate.schemas.destinations import accepts
from trackgate.schemas.event import Event
from trackgate.schemas.settings import Settings
from trackgate.workers import destinations as destination_table
from trackgate.workers.forward import fanout
from trackgate.workers.replay.progress import Progress, checkpoint, redis_for, save_checkpoint
from trackgate.workers.store import COLUMNS

# --- stored events -----------------------------------------------------------------------------

_EVENT_COLUMNS = ", ".join(f'"{c}"' for c in COLUMNS)
_event_fields = [c for c in COLUMNS if c != "batch_id"]


def _row_event(row: tuple) -> Event:
    values = dict(zip(COLUMNS, row, strict=True))
    values.pop("batch_id")
    values["id"] = str(values["id"])
    values["group_ids"] = values["group_ids"] or []
    for key in (
        "name",
        "user_id",
        "anonymous_id",
        "group_id",
        "previous_id",
        "original_timestamp",
        "sent_at",
    ):
        if values[key] is None:
            values.pop(key)
    if isinstance(values["raw"], dict | list):  # psycopg loads json; the canonical raw is text
        values["raw"] = json.dumps(values["raw"])
    return msgspec.convert(values, Event)


def replay_events(
    settings: Settings,
    source: str,
    start: datetime,
    end: datetime,
    destination: str,
    restart: bool = False,
    chunk: int = 2000,
    out=None,
) -> dict[str, int]:
    """Forward the source's stored events with ``start <= timestamp < end`` to ``destination`` (its
    filters apply), in timestamp order; a checkpoint after each chunk lets an interrupted run resume."""
    assert settings.database_url
    connection = redis_for(settings)
    counts = {"events": 0, "jobs": 0, "skipped": 0}
    with psycopg.connect(settings.database_url) as conn:
        dest = destination_table.load(conn, settings.secret_key, destination_table.resolve(conn, destination))
        assert dest is not None
        src = conn.execute("SELECT id FROM sources WHERE id = %s OR name = %s", (source, source)).fetchall()
        if len(src) != 1:
            raise ValueError(f"no single source {source!r}" + (" (use its id)" if src else ""))
        source_id = src[0][0]
        key = f"events:{source_id}:{dest.id}:{start.isoformat()}:{end.isoformat()}"
        position, done, saved = (0, False, {}) if restart else checkpoint(conn, key)
        if done:
            click.echo(f"already replayed ({saved}); --restart sends them again", file=out or sys.stderr)
            return {"events": 0, "jobs": 0, "skipped": 0}
        count_row = conn.execute(
            'SELECT count(*) FROM events WHERE source_id = %s AND "timestamp" >= %s AND "timestamp" < %s',
            (source_id, start, end),
        ).fetchone()
        total = count_row[0] if count_row else 0
        conn.commit()
        progress = Progress("replay events", total, counts, out=out)
        progress.update(position)
        counts["events"] = saved.get("events", 0)
        counts["jobs"] = saved.get("jobs", 0)
        transport = transports.TRANSPORTS[dest.kind]
        batch_prefix = "replay-" + hashlib.sha256(key.encode()).hexdigest()[:16]
        with conn.cursor(name="trackgate_replay") as cur:
            cur.itersize = chunk
            # keyset, not OFFSET: events that arrive meanwhile (a late client time inside the range)
            # must not shift a resumed run onto rows it sent or past rows it never sent
            after = saved.get("after")
            resume = ' AND ("timestamp", id) > (%s, %s::uuid)' if after else ""
            cur.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE source_id = %s"
                f' AND "timestamp" >= %s AND "timestamp" < %s{resume} ORDER BY "timestamp", id',
                (source_id, start, end, *(after or ())),
            )
            while True:
                rows = cur.fetchmany(chunk)
                if not rows:
                    break
                events = [_row_event(r) for r in rows]
                selected = [e for e in events if accepts(dest.filters, e)]
                counts["skipped"] += len(events) - len(selected)
                planned = [(dest, c) for c in fanout.chunks(selected, transport.job_events)]
                with psycopg.connect(settings.database_url) as wconn:
                    ids = fanout.enqueue_deliveries(wconn, connection, f"{batch_prefix}-{position}", planned)
                    position += len(rows)
                    counts["events"] += len(selected)
                    counts["jobs"] += len(ids)
                    last = dict(zip(COLUMNS, rows[-1], strict=True))
                    after = [last["timestamp"].isoformat(), str(last["id"])]
                    save_checkpoint(wconn, key, position, False, {**counts, "after": after})
                progress.update(len(rows))
        conn.commit()
        save_checkpoint(conn, key, position, True, counts)
        progress.close()
    connection.close()
    return counts
