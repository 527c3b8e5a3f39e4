"""Quarantine: listing its rows and replaying them (``trackgate quarantine list|replay``).

The rows are written by ``workers/quarantine_rows.py`` (items a dialect answered 2xx to but could not
accept, and events PostgreSQL refused).

``replay`` re-decodes a pending row's raw item with the adapter as it is now (its ``decode_item``) and,
if it decodes, stores it through the persist pipeline (``workers/pipeline.py``: enrichment, dedupe by
message id, profiles, fan-out) and marks the row ``replayed``; if it is still refused, the row stays
pending with the new reason. A row PostgreSQL refused, of a dialect without ``decode_item``, is
retried from its canonical event.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import uuid_utils

from trackgate.adapters.base import AdapterError
from trackgate.adapters.registry import BY_NAME
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PersistBatch
from trackgate.schemas.request import RequestMeta
from trackgate.schemas.settings import Settings
from trackgate.workers import pipeline, quarantine_rows

log = logging.getLogger(__name__)

_decode_event = msgspec.json.Decoder(Event).decode


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


def row_status(conn: psycopg.Connection, row_id: int) -> str | None:
    """A quarantine row's status (pending, replayed), or None if there is no such row."""
    row = conn.execute("SELECT status FROM quarantine WHERE id = %s", (row_id,)).fetchone()
    return str(row[0]) if row else None


def _filters(
    *, source: str | None = None, status: str | None = None, row_id: int | None = None
) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
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
    names = [c.name for c in cur.description or ()]
    outcomes = []
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        outcome = _replay_one(conn, row, now or datetime.now(UTC), settings)
        outcomes.append(outcome)
        log.info("quarantine_replayed id=%s result=%s", outcome.id, outcome.result)
    return outcomes


def _redecode(row: dict[str, Any]) -> Event:
    """The row's event as the current adapter makes it; raises ``AdapterError`` if it still cannot."""
    codec = BY_NAME.get(row["dialect"])
    partial = codec.partial if codec is not None else None
    raw: str | None = row["raw"]
    if partial is not None and raw is not None:
        meta = RequestMeta(
            source_id=row["source_id"],
            dialect=row["dialect"],
            call="replay",
            received_at=row["received_at"] or row["created_at"],
            request_id=row["request_id"] or f"quarantine-{row['id']}",
        )
        event = partial.decode_item(meta, raw.encode(), row["item_index"] or 0)
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
    try:
        event = _redecode(row)
    except AdapterError as exc:
        return _still_refused(conn, row, exc.code, exc.message, now)
    batch = PersistBatch(batch_id=f"replay-{row['id']}", events=[event])
    done = pipeline.persist(conn, batch, settings, quarantine_refused_events=False)
    if done.refused:
        (refused,) = done.refused
        return _still_refused(conn, row, refused.code, refused.reason, now)
    quarantine_rows.mark_replayed(conn, row["id"], now, event.id if done.stored else None, event.message_id)
    return Outcome(row["id"], "stored" if done.stored else "duplicate", message_id=event.message_id)


def _still_refused(
    conn: psycopg.Connection, row: dict[str, Any], code: str, reason: str, now: datetime
) -> Outcome:
    quarantine_rows.mark_refused(conn, row["id"], code, reason, now)
    return Outcome(row["id"], "refused", reason=reason)
