"""Deleting what a deleted website or account leaves behind (the TinyTrail API's deletes, issue 12).

The API answers at once: it removes the sources (collect stops: an unknown ``website_id`` is TinyTrail's
silent 204), the account and its keys in one transaction, in which it also queues this job
(``schemas.jobs.DELETE_FUNC``). The job then deletes the stored data in chunks of ``CHUNK_ROWS``, each its
own transaction, so a website with millions of events never holds one long transaction or lock:

- :data:`SOURCE_TABLES`: tables whose rows belong to one source by a ``source_id`` column (a table of
  daily aggregates adds itself here, unless it references ``sources (id) ON DELETE CASCADE``, which
  removes its rows with the source at once); ``events`` is deleted oldest first along its
  ``(source_id, timestamp)`` index;
- :data:`WORKSPACE_TABLES`: an account's profiles and groups (a workspace is an account).

Safe to run twice, and safe to run early: a source that still exists (the API's transaction rolled back,
or has not committed yet) is never touched; the job fails then and RQ retries it, until the retries run
out (nothing was deleted: the website was not).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import psycopg

from trackgate.schemas.jobs import DeleteData
from trackgate.workers import profiles_outbox, runtime

log = logging.getLogger(__name__)

CHUNK_ROWS = 5000

SOURCE_TABLES: list[str] = ["event_dedupe", "quarantine"]
"""Tables with a ``source_id`` column whose rows go with their source (besides ``events``, deleted by
its own index). Reports' aggregate tables (migration 0015) belong here unless they cascade from
``sources``: add the table's name."""

WORKSPACE_TABLES: list[str] = ["group_members", "groups", "profile_ids", "profiles"]
"""Tables with a ``workspace`` column whose rows go with a deleted account."""


class SourcesStillExist(Exception):
    """The job ran before the API's transaction committed (or it rolled back): RQ retries it."""


def delete_data(payload: Any) -> dict[str, int]:
    """RQ entry point: delete every row :class:`DeleteData` names; how many of each table."""
    job = payload if isinstance(payload, DeleteData) else msgspec.convert(payload, DeleteData)
    with runtime.current().pool.connection() as conn:
        counts = delete_everything(conn, job)
    log.info("data_deleted reason=%s n_sources=%d counts=%s", job.reason, len(job.source_ids), counts)
    return counts


def delete_everything(conn: psycopg.Connection, job: DeleteData) -> dict[str, int]:
    existing = conn.execute("SELECT id FROM sources WHERE id = ANY(%s)", (job.source_ids,)).fetchall()
    if existing:
        conn.rollback()
        raise SourcesStillExist(f"sources {', '.join(r[0] for r in existing)} still exist")
    if job.workspace is not None:
        found = conn.execute("SELECT 1 FROM accounts WHERE workspace = %s", (job.workspace,)).fetchone()
        if found is not None:
            conn.rollback()
            raise SourcesStillExist(f"the account of workspace {job.workspace} still exists")
    conn.commit()
    counts: dict[str, int] = {}
    for source_id in job.source_ids:
        counts["events"] = counts.get("events", 0) + delete_events(conn, source_id)
        for table in SOURCE_TABLES:
            counts[table] = counts.get(table, 0) + _delete_chunked(conn, table, "source_id", source_id)
    if job.workspace is not None:
        # profile work pending now (of its sources too) would otherwise write them again afterwards
        profiles_outbox.apply_written_before(conn)
        for table in WORKSPACE_TABLES:
            counts[table] = _delete_chunked(conn, table, "workspace", job.workspace)
    return counts


def delete_events(conn: psycopg.Connection, source_id: str) -> int:
    """A source's events, oldest first, about ``CHUNK_ROWS`` at a time (rows sharing the cut-off's
    timestamp go in the same chunk), each chunk committed."""
    total = 0
    while True:
        cut = conn.execute(
            'SELECT "timestamp" FROM events WHERE source_id = %s ORDER BY "timestamp" OFFSET %s LIMIT 1',
            (source_id, CHUNK_ROWS - 1),
        ).fetchone()
        if cut is None:
            total += conn.execute("DELETE FROM events WHERE source_id = %s", (source_id,)).rowcount
            conn.commit()
            return total
        total += conn.execute(
            'DELETE FROM events WHERE source_id = %s AND "timestamp" <= %s', (source_id, cut[0])
        ).rowcount
        conn.commit()


def _delete_chunked(conn: psycopg.Connection, table: str, column: str, value: str) -> int:
    """Rows of ``table`` whose ``column`` is ``value``, ``CHUNK_ROWS`` at a time, each chunk committed.
    ``table`` and ``column`` come from this module's lists, never from a request."""
    total = 0
    while True:
        deleted = conn.execute(
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {column} = %s"
            f" LIMIT {CHUNK_ROWS}))",
            (value,),
        ).rowcount
        conn.commit()
        total += deleted
        if deleted < CHUNK_ROWS:
            return total
