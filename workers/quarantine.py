"""Quarantine: what was acknowledged but could not be stored as it is, kept instead of lost.

Two kinds of rows, one table (``0002``, ``0005``):

- items a dialect answered 2xx to but could not accept (``decode_partial``'s refused items, e.g. a
  Commanders Act event without ``event_name``): the raw item, the dialect version, the code and reason;
- events PostgreSQL refused (a value it cannot hold): the canonical event and its raw message.

Every row has a unique ``item_key`` (``item:<key the publisher gave it>`` / ``event:<event id>``), so a
retried job never quarantines the same thing twice. Each source keeps at most
``TRACKGATE_QUARANTINE_MAX_PER_SOURCE`` rows (default 10,000): beyond it, replayed rows go first, then
the oldest pending ones, with a ``quarantine_trimmed`` warning.

``replay`` re-decodes a pending row's raw item with the adapter as it is now (its ``decode_item``) and,
if it decodes, stores it through the normal storage path (dedupe by message id, then COPY) and marks the
row ``replayed``; if it is still refused, the row stays pending with the new reason. A row PostgreSQL
refused, of a dialect without ``decode_item``, is retried from its canonical event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import uuid_utils

from trackgate.adapters.base import AdapterError
from trackgate.adapters.registry import ADAPTERS
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PersistBatch
from trackgate.schemas.request import RequestMeta
from trackgate.schemas.settings import Settings
from trackgate.workers import enrich, forward, profiles, store

log = logging.getLogger(__name__)

DEFAULT_MAX_PER_SOURCE = 10_000
_encode = msgspec.json.encode
_decode_event = msgspec.json.Decoder(Event).decode

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


def insert_event(
    conn: psycopg.Connection,
    event: Event,
    batch_id: str | None,
    reason: str,
    code: str | None = None,
    max_per_source: int | None = None,
) -> None:
    """An event PostgreSQL refused (``store.store_batch``): kept once, however often its job runs."""
    with conn.transaction():
        conn.execute(
            INSERT_SQL,
            (
                f"event:{event.id}",
                event.source_id,
                event.message_id,
                event.dialect,
                event.source_id,
                event.dialect_version,
                code,
                reason[:2000],
                None,
                event.raw,
                _encode(event).decode(),
                None,
                event.received_at,
                batch_id,
            ),
        )
        trim(conn, [event.source_id], max_per_source)


def store_refused(conn: psycopg.Connection, batch: PersistBatch, max_per_source: int | None = None) -> int:
    """The batch's refused items into quarantine (once each); returns how many rows were new."""
    if not batch.refused:
        return 0
    new = 0
    with conn.transaction(), conn.cursor() as cur:
        for item in batch.refused:
            cur.execute(
                INSERT_SQL,
                (
                    f"item:{item.key}",
                    item.source_id,
                    item.message_id,
                    item.dialect,
                    item.source_id,
                    item.version,
                    item.code,
                    item.reason[:2000],
                    item.index,
                    item.raw,
                    None,
                    item.request_id,
                    item.received_at,
                    batch.batch_id,
                ),
            )
            new += cur.rowcount
        trim(conn, {item.source_id for item in batch.refused}, max_per_source)
    if new:
        log.warning("items_quarantined batch_id=%s n_items=%d", batch.batch_id, new)
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


# --- list and replay (``trackgate quarantine``) ----------------------------------------------------

LIST_COLUMNS = (
    "id",
    "created_at",
    "source_id",
    "dialect",
    "dialect_version",
    "status",
    "code",
    "reason",
    "message_id",
    "item_index",
    "attempts",
    "replayed_at",
    "event_id",
)


def list_rows(
    conn: psycopg.Connection,
    *,
    source: str | None = None,
    status: str | None = None,
    limit: int = 100,
    with_payload: bool = False,
) -> list[dict[str, Any]]:
    """Rows, oldest first; ``with_payload`` adds ``raw`` (and ``event`` for PostgreSQL-refused rows)."""
    columns = LIST_COLUMNS + (("raw", "event") if with_payload else ())
    where, params = _filters(source=source, status=status)
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM quarantine WHERE {where} ORDER BY id LIMIT %s",
        (*params, limit),
    ).fetchall()
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _filters(
    *, source: str | None = None, status: str | None = None, row_id: int | None = None
) -> tuple[str, tuple]:
    clauses, params = ["TRUE"], []
    for column, value in (("source_id", source), ("status", status), ("id", row_id)):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    return " AND ".join(clauses), tuple(params)


class Outcome(msgspec.Struct):
    id: int
    result: str
    """``stored``, ``duplicate`` (already stored: dedupe), or ``refused`` (kept, with ``reason``)."""
    reason: str | None = None
    message_id: str | None = None


def replay(
    conn: psycopg.Connection,
    *,
    source: str | None = None,
    row_id: int | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> list[Outcome]:
    """Replay pending rows (of ``source``, or the one ``row_id``); ``conn`` must be autocommit. With
    ``settings`` each event also goes through enrichment and forwarding, as in a persist job."""
    where, params = _filters(source=source, status="pending", row_id=row_id)
    cur = conn.execute(
        "SELECT id, source_id, dialect, dialect_version, message_id, raw, event, request_id, received_at,"
        f" item_index, created_at FROM quarantine WHERE {where} ORDER BY id",
        params,
    )
    names = [c.name for c in cur.description]
    outcomes = []
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        outcome = _replay_one(conn, row, now or datetime.now(UTC), settings)
        outcomes.append(outcome)
        log.info("quarantine_replayed id=%s result=%s", outcome.id, outcome.result)
    return outcomes


def _redecode(row: dict[str, Any]) -> Event:
    """The row's event as the current adapter makes it; raises ``AdapterError`` if it still cannot."""
    adapter = ADAPTERS.get(row["dialect"])
    decode_item = getattr(adapter, "decode_item", None)
    raw: str | None = row["raw"]
    if decode_item is not None and raw is not None:
        meta = RequestMeta(
            source_id=row["source_id"],
            dialect=row["dialect"],
            call="replay",
            received_at=row["received_at"] or row["created_at"],
            request_id=row["request_id"] or f"quarantine-{row['id']}",
        )
        event = decode_item(meta, raw.encode(), row["item_index"] or 0)
        event.id = str(uuid_utils.uuid7())
        return event
    if row["event"] is not None:  # PostgreSQL refused it: the canonical event, as it was
        event = _decode_event(row["event"])
        event.id = event.id or str(uuid_utils.uuid7())
        return event
    raise AdapterError(
        "not_replayable", f"the {row['dialect'] or 'unknown'} adapter cannot re-decode a single item"
    )


def _replay_one(
    conn: psycopg.Connection, row: dict[str, Any], now: datetime, settings: Settings | None
) -> Outcome:
    """Store the row's event as a persist job would: enriched (the source's IP policy included),
    deduplicated, applied to profiles, and forwarded to the source's destinations."""
    batch_id = f"replay-{row['id']}"
    try:
        event = _redecode(row)
        new: list[Event] = []
        if settings is not None:
            enrich.enrich_batch(conn, [event], settings)
        stored = store._store(conn, batch_id, [event], apply=profiles.apply, new=new)
        if settings is not None:
            forward.fan_out(conn, settings, batch_id, new)
    except AdapterError as exc:
        return _still_refused(conn, row, exc.code, exc.message, now)
    except store.REFUSED as exc:
        return _still_refused(conn, row, exc.sqlstate or "data_error", str(exc.diag.message_primary), now)
    conn.execute(
        "UPDATE quarantine SET status = 'replayed', replayed_at = %s, last_attempt_at = %s,"
        " attempts = attempts + 1, event_id = %s, message_id = %s WHERE id = %s",
        (now, now, event.id if stored else None, event.message_id, row["id"]),
    )
    return Outcome(row["id"], "stored" if stored else "duplicate", message_id=event.message_id)


def _still_refused(
    conn: psycopg.Connection, row: dict[str, Any], code: str, reason: str, now: datetime
) -> Outcome:
    conn.execute(
        "UPDATE quarantine SET code = %s, reason = %s, attempts = attempts + 1, last_attempt_at = %s"
        " WHERE id = %s",
        (code, reason[:2000], now, row["id"]),
    )
    return Outcome(row["id"], "refused", reason=reason)
