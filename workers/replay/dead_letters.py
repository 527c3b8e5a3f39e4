"""``trackgate replay dead-letters``: dead letters re-sent through the normal forward path, each
claimed (``dead`` → ``replaying``) so a concurrent or repeated run re-sends it once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import psycopg

from trackgate.schemas.destinations import ForwardJob, Part
from trackgate.schemas.settings import Settings
from trackgate.workers import destinations as destination_table
from trackgate.workers.forward import fanout, resources
from trackgate.workers.replay.progress import Progress, redis_for

# --- dead letters ------------------------------------------------------------------------------


def replay_dead_letters(
    settings: Settings,
    destination: str | None = None,
    since: datetime | None = None,
    out=None,
) -> dict[str, int]:
    """Re-send every dead letter (of ``destination``, dead-lettered since ``since``) through the normal
    forward path: it is retried until the destination takes it, or dead again if still refused."""
    assert settings.database_url
    connection = redis_for(settings)
    queue = resources.forward_queue(connection)
    counts = {"requeued": 0, "events": 0}
    with psycopg.connect(settings.database_url) as conn:
        destination_id = destination_table.resolve(conn, destination) if destination else None
        where = ["status = 'dead'"]
        params: list[Any] = []
        if destination_id:
            where.append("destination_id = %s")
            params.append(destination_id)
        if since:
            where.append("created_at >= %s")
            params.append(since)
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT id FROM dead_letters WHERE {' AND '.join(where)} ORDER BY id", params
            ).fetchall()
        ]
        conn.commit()
        progress = Progress("replay dead-letters", len(ids), counts, out=out)
        now = resources.clock()
        for dead_letter_id in ids:
            # claim it: a concurrent or repeated run re-sends each dead letter once
            with conn.transaction():
                row = conn.execute(
                    "UPDATE dead_letters SET status = 'replaying', updated_at = now()"
                    " WHERE id = %s AND status = 'dead'"
                    " RETURNING delivery_id, destination_id, route, items, n_events",
                    (dead_letter_id,),
                ).fetchone()
                if row is None:
                    continue
                conn.execute(
                    "UPDATE deliveries SET status = 'retrying', next_attempt_at = NULL, updated_at = now()"
                    " WHERE id = %s",
                    (row[0],),
                )
                job = ForwardJob(
                    delivery_id=row[0],
                    destination_id=row[1],
                    parts=[Part(row[2], msgspec.json.decode(row[3]))],
                    first_at=now,
                    dead_letter_id=dead_letter_id,
                )
                # enqueued inside the claim's transaction: if Redis refuses, the row stays dead
                fanout.enqueue(queue, job)
            counts["requeued"] += 1
            counts["events"] += row[4]
            progress.update(1)
        progress.close()
    connection.close()
    return counts
