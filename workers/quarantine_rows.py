"""Quarantine rows: writing what was acknowledged but could not be stored as it is (a leaf module).

Two kinds of rows, one table (``0002``, ``0005``):

- items a dialect answered 2xx to but could not accept (``decode_partial``'s refused items, e.g. a
  Commanders Act event without ``event_name``): the raw item, the dialect version, the code and reason;
- events PostgreSQL refused (a value it cannot hold): the canonical event and its raw message.

Every row has a unique ``item_key`` (``item:<key the publisher gave it>`` / ``event:<event id>``), so a
retried job never quarantines the same thing twice. Each source keeps at most
``TRACKGATE_QUARANTINE_MAX_PER_SOURCE`` rows (default 10,000): beyond it, replayed rows go first, then
the oldest pending ones, with a ``quarantine_trimmed`` warning.

Every text of a row (key, ids, code, reason, raw, the event's JSON) is made storable first
(``workers/storable.py``: NUL and lone surrogates become U+FFFD), so the quarantine itself never
refuses what it is there to keep. ``raw`` is a ``text`` column: it is kept verbatim but for those.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from trackgate.schemas.jobs import PersistBatch, RefusedItem
from trackgate.workers import storable
from trackgate.workers.store import REFUSED, RefusedEvent

log = logging.getLogger(__name__)

DEFAULT_MAX_PER_SOURCE = 10_000
REASON_CHARS = 2000
_encode = msgspec.json.encode

INSERT_SQL = (
    "INSERT INTO quarantine (item_key, source_id, message_id, dialect, dialect_version, code, reason,"
    " item_index, raw, event, request_id, received_at, batch_id)"
    " VALUES (%s, %s, %s, COALESCE(NULLIF(%s, ''), (SELECT dialect FROM sources WHERE id = %s), ''),"
    " %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (item_key) DO NOTHING"
)
TRIM_SQL = (
    "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE source_id = %s"
    " ORDER BY (status = 'pending') DESC, id DESC OFFSET %s)"
)

Row = tuple[Any, ...]


def _event_row(refused: RefusedEvent, batch_id: str | None) -> Row:
    event = refused.event
    text = storable.text
    try:
        as_json = _encode(event).decode()
    except UnicodeEncodeError:  # a lone surrogate in a JSON value
        as_json = _encode(storable.json_values(event)).decode()
    source_id = text(event.source_id)
    return (
        text(f"event:{event.id}"),
        source_id,
        text(event.message_id),
        text(event.dialect),
        source_id,
        text(event.dialect_version),
        text(refused.code),
        text(refused.reason[:REASON_CHARS]),
        None,
        text(event.raw),
        as_json,  # JSON escapes a NUL (``\u0000``): text holds it
        None,
        event.received_at,
        text(batch_id),
    )


def _item_row(item: RefusedItem, batch_id: str) -> Row:
    text = storable.text
    source_id = text(item.source_id)
    return (
        text(f"item:{item.key}"),
        source_id,
        text(item.message_id),
        text(item.dialect),
        source_id,
        text(item.version),
        text(item.code),
        text(item.reason[:REASON_CHARS]),
        item.index,
        text(item.raw),
        None,
        text(item.request_id),
        item.received_at,
        text(batch_id),
    )


def insert_events(
    conn: psycopg.Connection,
    refused: Sequence[RefusedEvent],
    batch_id: str | None,
    max_per_source: int | None = None,
) -> int:
    """Events PostgreSQL refused (``store.Stored.refused``): kept once, however often their job runs.
    Returns how many rows were new."""
    if not refused:
        return 0
    new = _insert(conn, [_event_row(r, batch_id) for r in refused], max_per_source)
    for r in refused:
        log.warning("event_quarantined source_id=%s batch_id=%s", r.event.source_id, batch_id)
    return new


def store_refused(conn: psycopg.Connection, batch: PersistBatch, max_per_source: int | None = None) -> int:
    """The batch's refused items into quarantine (once each); returns how many rows were new."""
    if not batch.refused:
        return 0
    new = _insert(conn, [_item_row(item, batch.batch_id) for item in batch.refused], max_per_source)
    if new:
        log.warning("items_quarantined batch_id=%s n_items=%d", batch.batch_id, new)
    return new


def _insert(conn: psycopg.Connection, rows: list[Row], max_per_source: int | None) -> int:
    """The rows in one transaction; if PostgreSQL still refuses one (a value no cleaning foresaw),
    each alone, so one row never keeps the others out (nor fails its job: it is logged)."""
    sources = {row[1] for row in rows}
    try:
        return _insert_all(conn, rows, sources, max_per_source)
    except REFUSED as exc:
        log.warning("quarantine_batch_refused sqlstate=%s; inserting row by row", exc.sqlstate)
    new = 0
    for row in rows:
        try:
            new += _insert_all(conn, [row], {row[1]}, max_per_source)
        except REFUSED as exc:
            log.error("quarantine_insert_refused item_key=%r sqlstate=%s", row[0], exc.sqlstate)
    return new


def _insert_all(
    conn: psycopg.Connection, rows: list[Row], sources: set[str], max_per_source: int | None
) -> int:
    new = 0
    with conn.transaction(), conn.cursor() as cur:
        for row in rows:
            cur.execute(INSERT_SQL, row)
            new += cur.rowcount
        trim(conn, sources, max_per_source)
    return new


def trim(conn: psycopg.Connection, source_ids: Iterable[str], max_per_source: int | None) -> int:
    """Keep at most ``max_per_source`` rows per source: replayed rows are dropped first, then the
    oldest pending ones. Returns how many rows were dropped."""
    keep = max_per_source or DEFAULT_MAX_PER_SOURCE
    dropped = 0
    for source_id in sorted(set(source_ids)):
        n = conn.execute(TRIM_SQL, (source_id, keep)).rowcount
        if n:
            log.warning("quarantine_trimmed source_id=%s n_dropped=%d max_per_source=%d", source_id, n, keep)
            dropped += n
    return dropped


def mark_replayed(
    conn: psycopg.Connection, row_id: int, now: datetime, event_id: str | None, message_id: str
) -> None:
    conn.execute(
        "UPDATE quarantine SET status = 'replayed', replayed_at = %s, last_attempt_at = %s,"
        " attempts = attempts + 1, event_id = %s, message_id = %s WHERE id = %s",
        (now, now, storable.text(event_id), storable.text(message_id), row_id),
    )


def mark_refused(conn: psycopg.Connection, row_id: int, code: str, reason: str, now: datetime) -> None:
    conn.execute(
        "UPDATE quarantine SET code = %s, reason = %s, attempts = attempts + 1, last_attempt_at = %s"
        " WHERE id = %s",
        (storable.text(code), storable.text(reason[:REASON_CHARS]), now, row_id),
    )
