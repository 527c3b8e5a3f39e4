"""``trackgate replay events``: a source's stored events forwarded to one destination, in timestamp
order, resumable from a checkpoint (keyset on ``("timestamp", id)``) kept under the command's own
words, skipping what the destination was handed before (``delivery_events``) unless forced."""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime

import click
import psycopg

from trackgate.adapters import transports
from trackgate.schemas.destinations import accepts
from trackgate.schemas.settings import Settings
from trackgate.workers import destinations as destination_table
from trackgate.workers.forward import fanout, outbox
from trackgate.workers.replay.progress import Progress, checkpoint, redis_for, save_checkpoint
from trackgate.workers.store import COLUMNS

# --- stored events -----------------------------------------------------------------------------


def _forwarded(conn: psycopg.Connection, destination_id: str, ids: list[str]) -> set[str]:
    """Which of these events a delivery to the destination carries already (whatever became of it:
    delivered, on its way, or dead-lettered, which ``replay dead-letters`` sends)."""
    if not ids:
        return set()
    rows = conn.execute(
        "SELECT DISTINCT u::text FROM delivery_events d CROSS JOIN LATERAL unnest(d.event_ids) AS u"
        " WHERE d.destination_id = %s AND d.event_ids && %s::uuid[] AND u = ANY(%s::uuid[])",
        (destination_id, ids, ids),
    ).fetchall()
    return {row[0] for row in rows}


def replay_events(
    settings: Settings,
    source: str,
    start: datetime,
    end: datetime,
    destination: str,
    restart: bool = False,
    chunk: int = 2000,
    out=None,
    *,
    force: bool = False,
    words: str | None = None,
) -> dict[str, int]:
    """Forward the source's stored events with ``start <= timestamp < end`` to ``destination`` (its
    filters apply), in timestamp order; a checkpoint after each chunk lets an interrupted run resume.

    Idempotent at the receiver: an event that a delivery to this destination carries already (the
    live fan-out's, or an earlier replay's) is skipped, unless ``force``. ``words`` is the window as
    the command was given (``--from 1d``): the checkpoint's key, so that the same command resumes an
    interrupted run over the window that run resolved, whatever the time now (without it, the resolved
    times are the key). Once a run has finished, the same command runs again over a window resolved
    anew and sends only what was not forwarded (``restart`` drops an interrupted run's checkpoint).
    ``skipped`` counts the events left out by the destination's filters or forwarded before.
    """
    assert settings.database_url
    echo = out or sys.stderr
    connection = redis_for(settings)
    counts = {"events": 0, "jobs": 0, "skipped": 0}
    with psycopg.connect(settings.database_url) as conn:
        dest = destination_table.load(conn, settings.secret_key, destination_table.resolve(conn, destination))
        assert dest is not None
        src = conn.execute("SELECT id FROM sources WHERE id = %s OR name = %s", (source, source)).fetchall()
        if len(src) != 1:
            raise ValueError(f"no single source {source!r}" + (" (use its id)" if src else ""))
        source_id = src[0][0]
        window = words if words is not None else f"{start.isoformat()}:{end.isoformat()}"
        key = f"events:{source_id}:{dest.id}:{window}"
        position, done, saved = (0, False, {}) if restart else checkpoint(conn, key)
        if done:
            click.echo(
                f"an earlier run finished ({ {k: v for k, v in saved.items() if k in counts} });"
                + (" sending everything again (--force)" if force else " sending what it has not forwarded"),
                file=echo,
            )
            position, saved = 0, {}
        elif saved.get("window"):  # resuming: the window that run resolved, not the one resolved now
            start, end = (datetime.fromisoformat(t) for t in saved["window"])
            click.echo(
                f"resuming after {position} event(s) read ({start.isoformat()} - {end.isoformat()})",
                file=echo,
            )
        count_row = conn.execute(
            'SELECT count(*) FROM events WHERE source_id = %s AND "timestamp" >= %s AND "timestamp" < %s',
            (source_id, start, end),
        ).fetchone()
        total = count_row[0] if count_row else 0
        conn.commit()
        progress = Progress("replay events", total, counts, out=out)
        progress.update(position)
        for name in counts:
            counts[name] = saved.get(name, 0)
        transport = transports.TRANSPORTS[dest.kind]
        batch_prefix = "replay-" + hashlib.sha256(f"{key}:{start.isoformat()}".encode()).hexdigest()[:16]
        bounds = [start.isoformat(), end.isoformat()]
        with conn.cursor(name="trackgate_replay") as cur:
            cur.itersize = chunk
            # keyset, not OFFSET: events that arrive meanwhile (a late client time inside the range)
            # must not shift a resumed run onto rows it sent or past rows it never sent
            after = saved.get("after")
            resume = ' AND ("timestamp", id) > (%s, %s::uuid)' if after else ""
            cur.execute(
                f"SELECT {outbox.EVENT_COLUMNS} FROM events WHERE source_id = %s"
                f' AND "timestamp" >= %s AND "timestamp" < %s{resume} ORDER BY "timestamp", id',
                (source_id, start, end, *(after or ())),
            )
            while True:
                rows = cur.fetchmany(chunk)
                if not rows:
                    break
                events = [outbox.event_from_row(r) for r in rows]
                selected = [e for e in events if accepts(dest.filters, e)]
                with psycopg.connect(settings.database_url) as wconn:
                    if not force:
                        sent = _forwarded(wconn, dest.id, [e.id for e in selected])
                        selected = [e for e in selected if e.id not in sent]
                        wconn.commit()
                    counts["skipped"] += len(events) - len(selected)
                    planned = [(dest, c) for c in fanout.chunks(selected, transport.job_events)]
                    ids = outbox.enqueue_deliveries(wconn, connection, f"{batch_prefix}-{position}", planned)
                    position += len(rows)
                    counts["events"] += len(selected)
                    counts["jobs"] += len(ids)
                    last = dict(zip(COLUMNS, rows[-1], strict=True))
                    after = [last["timestamp"].isoformat(), str(last["id"])]
                    save_checkpoint(wconn, key, position, False, {**counts, "after": after, "window": bounds})
                progress.update(len(rows))
        conn.commit()
        save_checkpoint(conn, key, position, True, {**counts, "window": bounds})
        progress.close()
    connection.close()
    return counts
