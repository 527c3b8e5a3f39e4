"""The persist pipeline, written once: enrich → store + profiles (retried on a conflict) → quarantine
of what PostgreSQL refused and of the items the gateway could not accept → fan-out to destinations.

The RQ job (``jobs.persist_batch``) and the quarantine replay call :func:`persist`; the file replay
enqueues persist jobs, so it runs here too. Each step is idempotent: the dedupe claim makes the store
and the profile changes happen once per event, quarantine rows have unique keys, and fan-out only
sees the events this call stored for the first time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg

from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PersistBatch
from trackgate.schemas.settings import Settings
from trackgate.workers import enrich, profiles, quarantine_rows, store
from trackgate.workers.forward import fanout
from trackgate.workers.store import RefusedEvent

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 5
"""Times a batch is stored again at once when PostgreSQL aborted it for a deadlock or a serialization
failure (profile updates racing another worker's merge); after that the job fails and RQ retries it."""
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
    if settings is not None:
        enrich.enrich_batch(conn, batch.events, settings)
    bound = settings.quarantine_max_per_source if settings is not None else None
    result = _store(conn, batch)
    n_quarantined = 0
    if quarantine_refused_events:
        n_quarantined += quarantine_rows.insert_events(conn, result.refused, batch.batch_id, bound)
    # items answered 2xx but refused: kept, once
    n_quarantined += quarantine_rows.store_refused(conn, batch, bound)
    n_jobs = 0
    if settings is not None:
        n_jobs = fanout.fan_out(conn, settings, batch.batch_id, result.stored)
    return Persisted(result.stored, result.refused, n_quarantined, n_jobs)


def _store(conn: psycopg.Connection, batch: PersistBatch) -> store.Stored:
    """Store and apply to profiles in one transaction, again at once after a deadlock or a
    serialization failure (up to ``CONFLICT_RETRIES`` times; then the error reaches the job)."""
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            return store.store_batch(conn, batch, apply=profiles.apply)
        except CONFLICTS as exc:
            if attempt == CONFLICT_RETRIES:
                raise
            log.warning(
                "batch_conflict batch_id=%s sqlstate=%s attempt=%d", batch.batch_id, exc.sqlstate, attempt
            )
    raise AssertionError("unreachable")  # the loop returns or raises
