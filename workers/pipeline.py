"""The persist pipeline, written once: store (each new event enriched as its COPY row is written) +
profile outbox row + forward intents (one transaction, retried on a conflict) → quarantine of what
PostgreSQL refused and of the items the gateway could not accept → forward jobs queued → the live
debug feed (``debug_feed.py``, only while someone watches) → the profile outbox applied
(``profiles_outbox.py``: by the worker's applier thread, or here).

The RQ job (``jobs.persist_batch``) and the quarantine replay call :func:`persist`; the file replay
enqueues persist jobs, so it runs here too. Each step is idempotent: the dedupe claim makes the store,
the profile outbox rows and the forward intents (``forward/outbox.py``) happen once per event, an
outbox row is applied once (it is deleted in the transaction that applies it), and
quarantine rows have unique keys. The forward intents commit with the events; their jobs are queued
after the commit, and if that fails (Redis, a killed worker) a sweep queues them a few seconds later.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from trackgate.schemas import metrics
from trackgate.schemas.destinations import Destination
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PersistBatch
from trackgate.schemas.settings import Settings
from trackgate.workers import aggregate, debug_feed, enrich, profiles_outbox, quarantine_rows, store
from trackgate.workers.forward import fanout, outbox, resources
from trackgate.workers.store import RefusedEvent

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 5
"""Times a batch is stored again at once when PostgreSQL aborted it for a deadlock or a serialization
failure; after that the job fails and RQ retries it."""
CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


@dataclass(frozen=True, slots=True)
class Persisted:
    """What one :func:`persist` did."""

    stored: list[Event] = field(default_factory=list)
    """Stored for the first time (and handed to fan-out)."""
    refused: list[RefusedEvent] = field(default_factory=list)
    """Refused by PostgreSQL (quarantined unless the caller keeps them itself)."""
    n_quarantined: int = 0
    """New quarantine rows (refused events and refused items)."""
    n_forward_jobs: int = 0
    """Deliveries written with the events (their jobs queued now, or by a sweep)."""

    @property
    def n_stored(self) -> int:
        return len(self.stored)


def persist(
    conn: psycopg.Connection,
    batch: PersistBatch,
    settings: Settings | None,
    *,
    quarantine_refused_events: bool = True,
) -> Persisted:
    """Run the pipeline on one batch; ``conn`` is not in a transaction (each step has its own).

    Without ``settings`` (a replay not configured for it) there is no enrichment and no fan-out.
    ``quarantine_refused_events=False`` returns the events PostgreSQL refused instead of adding
    quarantine rows for them (the quarantine replay updates the row it came from).
    """
    dests, prepared = _before_store(conn, batch.events, settings)
    result = _store(conn, batch, dests, prepared.rows if prepared is not None else None)
    if prepared is not None:
        prepared.finish()
    persisted = _after_store(conn, batch, result, settings, quarantine_refused_events)
    profiles_outbox.after_commit(conn, sum(result.applied))
    return persisted


def persist_group(
    conn: psycopg.Connection, batches: list[PersistBatch], settings: Settings
) -> list[Persisted]:
    """Several queued batches through the pipeline with ONE store transaction (the worker's multi-job
    drain, ``workers/reliable.py``): enrichment once over all their events, one dedupe claim and COPY
    (each row keeps its batch id), the profile outbox row and forward intents in that transaction; then
    each batch's quarantine rows, forward jobs and debug feed, as :func:`persist` does; then the profile
    outbox applied once for the group.

    Raises on any failure (a value PostgreSQL refuses, a conflict): nothing of the group is stored
    then, and the caller runs each batch alone through :func:`persist`, which isolates the bad one.
    A failure after the commit is safe to run again the same way: the events are claimed."""
    if len(batches) == 1:
        return [persist(conn, batches[0], settings)]
    dests, prepared = _before_store(conn, [event for batch in batches for event in batch.events], settings)

    def intents(conn: psycopg.Connection, part: int, new: list[Event]) -> list[outbox.Written]:
        return outbox.write(conn, batches[part].batch_id, fanout.plan_deliveries(dests, new))

    results = store.store_group(
        conn,
        [(batch.batch_id, batch.events) for batch in batches],
        apply=apply_stored,
        outbox=intents if dests else None,
        rows_of=prepared.rows if prepared is not None else None,
    )
    if prepared is not None:
        prepared.finish()
    persisted = [_after_store(conn, b, r, settings) for b, r in zip(batches, results, strict=True)]
    profiles_outbox.after_commit(conn, sum(n for result in results for n in result.applied))
    return persisted


def _before_store(
    conn: psycopg.Connection, events: list[Event], settings: Settings | None
) -> tuple[list[Destination], enrich.Prepared | None]:
    """The outbox sweep when due, the enrichment's reads; returns the destinations (read before the
    store transaction, as they commit on their own) and the batch's enrichment, prepared: the store
    enriches each new event as it writes its row (``rows_of=prepared.rows``: the chain's Python runs
    while PostgreSQL parses the rows already sent), and ``prepared.finish()`` after it the rest of the
    batch (events stored before, which no row reached), so every event is enriched once the store
    returns. (A group whose store fails is run again batch by batch, and those runs enrich its events
    again, as the chain before the transaction did.)"""
    if settings is None:
        return [], None
    if settings.redis_url:
        # deliveries whose jobs were never queued (Redis failed, a worker died after its commit)
        outbox.sweep_if_due(conn, resources.redis_connection(settings))
    prepared = enrich.prepare_batch(conn, events, settings)
    return resources.destinations(conn), prepared


def _after_store(
    conn: psycopg.Connection,
    batch: PersistBatch,
    result: store.Stored,
    settings: Settings | None,
    quarantine_refused_events: bool = True,
) -> Persisted:
    """After the store transaction committed: metrics, quarantine rows, forward jobs, debug feed."""
    bound = settings.quarantine_max_per_source if settings is not None else None
    _count_stored(batch, result)
    n_refused_events = 0
    if quarantine_refused_events:
        n_refused_events = quarantine_rows.insert_events(conn, result.refused, batch.batch_id, bound)
    # items answered 2xx but refused: kept, once
    n_refused_items = quarantine_rows.store_refused(conn, batch, bound)
    counted = metrics.worker()
    counted.quarantined.labels("store").inc(n_refused_events)
    counted.quarantined.labels("gateway").inc(n_refused_items)
    if settings is not None:
        outbox.enqueue_or_defer(conn, settings, batch.batch_id, result.outbox)
        if settings.redis_url:  # the live debugger's feed, only while someone watches
            connection = resources.redis_connection(settings)
            debug_feed.publish(connection, batch, (e.id for e in result.stored), result.refused)
    return Persisted(result.stored, result.refused, n_refused_events + n_refused_items, len(result.outbox))


def _count_stored(batch: PersistBatch, result: store.Stored) -> None:
    """The committed store's numbers, per dialect: stored, and duplicates (events of the batch neither
    stored now nor refused: stored before, or twice in the batch); the lag of each stored event; the
    profiles and groups written."""
    counted = metrics.worker()
    now = datetime.now(UTC)
    offered = Counter(event.dialect for event in batch.events)
    stored = Counter(event.dialect for event in result.stored)
    refused = Counter(r.event.dialect for r in result.refused)
    for dialect, n in offered.items():
        if stored[dialect]:
            counted.stored.labels(dialect).inc(stored[dialect])
        duplicates = n - stored[dialect] - refused[dialect]
        if duplicates > 0:
            counted.duplicate.labels(dialect).inc(duplicates)
    metrics.observe_all(
        counted.store_lag, [max(0.0, (now - e.received_at).total_seconds()) for e in result.stored]
    )


def apply_stored(conn: psycopg.Connection, new: list[Event]) -> int:
    """What runs on the events a transaction stored for the first time, inside it: the mark of each
    closed day a late event fell on (its report aggregates are rebuilt), and the profile outbox's row
    (applied after the commit, ``profiles_outbox.py``); returns how many events that row holds."""
    aggregate.mark_late(conn, new)
    return profiles_outbox.write(conn, new)


def _store(
    conn: psycopg.Connection, batch: PersistBatch, dests: list[Destination], rows_of: store.RowsOf | None
) -> store.Stored:
    """Store, write the profile outbox row and the forward intents to ``dests`` in one transaction, again
    at once after a deadlock or a serialization failure (up to ``CONFLICT_RETRIES`` times; then the
    error reaches the job)."""

    def intents(conn: psycopg.Connection, new: list[Event]) -> list[outbox.Written]:
        return outbox.write(conn, batch.batch_id, fanout.plan_deliveries(dests, new))

    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            return store.store_batch(
                conn, batch, apply=apply_stored, outbox=intents if dests else None, rows_of=rows_of
            )
        except CONFLICTS as exc:
            if attempt == CONFLICT_RETRIES:
                raise
            log.warning(
                "batch_conflict batch_id=%s sqlstate=%s attempt=%d", batch.batch_id, exc.sqlstate, attempt
            )
    raise AssertionError("unreachable")  # the loop returns or raises
