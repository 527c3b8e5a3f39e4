"""RQ entry points: thin functions, referenced by dotted path from ``schemas.jobs``."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from trackgate.schemas.jobs import persist_batch_from_arg
from trackgate.workers import enrich, forward, profiles, quarantine, runtime, store

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 5
"""Times a batch is stored again at once when PostgreSQL aborted it for a deadlock or a serialization
failure (profile updates racing another worker's merge); after that the job fails and RQ retries it."""
CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def persist_batch(payload: Any) -> None:
    """Store one group-committed batch and apply its new events to profiles, in one transaction.
    Safe to run twice: dedupe makes it idempotent, profile changes included."""
    batch = persist_batch_from_arg(payload)
    rt = runtime.current()
    with rt.pool.connection() as conn:
        enrich.enrich_batch(conn, batch.events, rt.settings)
        bound = rt.settings.quarantine_max_per_source
        new: list = []  # what this job stored, to forward
        for attempt in range(1, CONFLICT_RETRIES + 1):
            try:
                stored = store.store_batch(conn, batch, bound, apply=profiles.apply, new=new)
                break
            except CONFLICTS as exc:
                if attempt == CONFLICT_RETRIES:
                    raise
                log.warning(
                    "batch_conflict batch_id=%s sqlstate=%s attempt=%d", batch.batch_id, exc.sqlstate, attempt
                )
        quarantine.store_refused(conn, batch, bound)  # items answered 2xx but refused: kept, once
        forward.fan_out(conn, rt.settings, batch.batch_id, new)
        if rt.prune_due():
            pruned = store.prune_dedupe(conn, rt.settings.dedupe_days)
            log.info("dedupe_pruned n_rows=%d", pruned)
    log.info("batch_stored batch_id=%s n_events=%d n_stored=%d", batch.batch_id, len(batch.events), stored)


def forward_batch(payload: Any) -> None:
    """Send one chunk of stored events to one destination (retries schedule themselves)."""
    forward.forward_batch(payload)
