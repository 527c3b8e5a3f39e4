"""Storing canonical events in PostgreSQL: dedupe, then COPY, in one transaction.

For each batch: first ``INSERT INTO event_dedupe ... ON CONFLICT DO NOTHING RETURNING`` claims the
(source, message id) pairs never seen before, then only those events are COPYed into ``events``. A
second worker racing on the same pair waits on the first's index entry and gets nothing back, so an
event is stored once however often it is delivered, within the dedupe window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import psycopg
from psycopg.types.json import Json

from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PersistBatch
from trackgate.workers import (
    quarantine,  # a cycle (its replay stores through here): attributes used at call time
)

log = logging.getLogger(__name__)

COLUMNS = (
    "id",
    "source_id",
    "message_id",
    "dialect",
    "dialect_version",
    "type",
    "name",
    "user_id",
    "anonymous_id",
    "group_id",
    "group_ids",
    "previous_id",
    "properties",
    "traits",
    "context",
    "integrations",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "enrichment",
    "raw",
    "batch_id",
)
_QUOTED = ", ".join(f'"{column}"' for column in COLUMNS)
COPY_SQL = f"COPY events ({_QUOTED}) FROM STDIN"
CLAIM_SQL = (  # the ids as two JSON arrays: parsed by PostgreSQL in C, ~2x cheaper than text[] parameters
    "INSERT INTO event_dedupe (source_id, message_id, claimed_at)"
    " SELECT source_id, message_id, now()"
    " FROM ROWS FROM (json_array_elements_text(%s), json_array_elements_text(%s)) AS u(source_id, message_id)"
    " ON CONFLICT DO NOTHING RETURNING source_id, message_id"
)

_encode = msgspec.json.encode
_created_partitions: set[tuple[int, int]] = set()


def event_row(event: Event, batch_id: str) -> tuple:
    return (
        event.id,
        event.source_id,
        event.message_id,
        event.dialect,
        event.dialect_version,
        event.type,
        event.name,
        event.user_id,
        event.anonymous_id,
        event.group_id,
        event.group_ids or None,
        event.previous_id,
        _encode(event.properties).decode(),
        _encode(event.traits).decode(),
        _encode(event.context).decode(),
        _encode(event.integrations).decode(),
        event.timestamp,
        event.original_timestamp,
        event.sent_at,
        event.received_at,
        _encode(event.enrichment).decode(),
        event.raw,
        batch_id,
    )


Apply = Callable[[psycopg.Connection, list[Event]], None]
"""What runs on the events a batch stored for the first time, inside the transaction that stored them."""


def store_batch(
    conn: psycopg.Connection,
    batch: PersistBatch,
    max_quarantine: int | None = None,
    apply: Apply | None = None,
    new: list[Event] | None = None,
) -> int:
    """Store the batch's events not stored before; returns how many were new (appended to ``new``
    once committed: the events to forward).

    ``apply(conn, new_events)``, when given, runs in the same transaction as the dedupe claim, with
    only the events this call stored: its changes commit exactly once per event, however often the
    batch is delivered (a re-run job finds its events claimed and applies nothing).

    If PostgreSQL refuses a value (a data error), the batch is stored event by event instead, and
    each event it still refuses goes to ``quarantine`` with the reason: one bad event never holds
    back the others of its job, and none is dropped.
    """
    try:
        return _store(conn, batch.batch_id, batch.events, apply, new)
    except REFUSED as exc:
        log.warning(
            "batch_refused batch_id=%s sqlstate=%s; storing event by event", batch.batch_id, exc.sqlstate
        )
    stored = 0
    for event in batch.events:
        try:
            stored += _store(conn, batch.batch_id, [event], apply, new)
        except REFUSED as exc:
            # the reason without PostgreSQL's CONTEXT line, which quotes the refused value
            reason = f"{exc.sqlstate}: {exc.diag.message_primary}"
            quarantine.insert_event(conn, event, batch.batch_id, reason, exc.sqlstate, max_quarantine)
            log.warning("event_quarantined source_id=%s batch_id=%s", event.source_id, batch.batch_id)
    return stored


REFUSED = (psycopg.DataError, psycopg.errors.ProgramLimitExceeded)
"""What PostgreSQL refuses because of a value in one event (not an outage): quarantined, not retried."""


def _store(
    conn: psycopg.Connection,
    batch_id: str,
    batch_events: list[Event],
    apply: Apply | None = None,
    new: list[Event] | None = None,
) -> int:
    unique: dict[tuple[str, str], Event] = {}
    for event in batch_events:
        unique.setdefault((event.source_id, event.message_id), event)
    if not unique:
        return 0
    ensure_partitions(conn, {(e.received_at.year, e.received_at.month) for e in unique.values()})
    # Claim in key order: two workers claiming overlapping batches then take the index locks in the
    # same order and one waits for the other instead of deadlocking.
    events = [unique[key] for key in sorted(unique)]
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            CLAIM_SQL,
            (Json([e.source_id for e in events], _encode), Json([e.message_id for e in events], _encode)),
        )
        claimed = set(cur.fetchall())
        if claimed:
            with cur.copy(COPY_SQL) as copy:
                write = copy.write_row
                for key, event in unique.items():
                    if key in claimed:
                        write(event_row(event, batch_id))
            if apply is not None:
                apply(conn, [event for key, event in unique.items() if key in claimed])
    if new is not None:  # committed
        new.extend(event for key, event in unique.items() if key in claimed)
    return len(claimed)


def _month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def ensure_partitions(conn: psycopg.Connection, months: set[tuple[int, int]]) -> None:
    """Create the monthly partitions these months need (once per process per month).

    Runs in its own short transaction. If it cannot (the default partition already holds rows of that
    month), rows keep landing in the default partition, which is correct, only slower to scan.
    """
    for year, month in sorted(months - _created_partitions):
        start, end = _month_bounds(year, month)
        name = f"events_y{year:04d}m{month:02d}"
        try:
            with conn.transaction():
                # never queue behind a long query holding the parent: rows go to the default
                # partition meanwhile, and the next batch tries again
                conn.execute("SET LOCAL lock_timeout = '2s'")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events"
                    f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
        except psycopg.errors.CheckViolation:
            # the default partition already holds rows of that month: it keeps them, correctly
            log.warning("partition_skipped partition=%s reason=default_has_rows", name)
        except psycopg.Error as exc:
            log.warning("partition_create_failed partition=%s sqlstate=%s", name, exc.sqlstate)
            continue
        _created_partitions.add((year, month))


def prune_dedupe(conn: psycopg.Connection, days: int, chunk: int = 20_000) -> int:
    """Forget (source, message id) pairs stored more than ``days`` ago, in short transactions; returns
    how many. The window counts from the claim, so an imported historical event is remembered too."""
    total = 0
    while True:
        with conn.transaction():
            cur = conn.execute(
                "DELETE FROM event_dedupe WHERE ctid = ANY(ARRAY(SELECT ctid FROM event_dedupe"
                " WHERE claimed_at < now() - make_interval(days => %s) LIMIT %s))",
                (days, chunk),
            )
        total += cur.rowcount
        if cur.rowcount < chunk:
            return total
