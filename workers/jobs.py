"""RQ entry points: thin functions, referenced by dotted path from ``schemas.jobs``."""

from __future__ import annotations

import logging
from typing import Any

from schemas.jobs import persist_batch_from_arg
from workers import enrich, forward, quarantine, runtime, store

log = logging.getLogger(__name__)


def persist_batch(payload: Any) -> None:
    """Store one group-committed batch. Safe to run twice: dedupe makes it idempotent."""
    batch = persist_batch_from_arg(payload)
    rt = runtime.current()
    with rt.pool.connection() as conn:
        enrich.enrich_batch(conn, batch.events, rt.settings)
        bound = rt.settings.quarantine_max_per_source
        new: list = []
        stored = store.store_batch(conn, batch, bound, new)
        quarantine.store_refused(conn, batch, bound)  # items answered 2xx but refused: kept, once
        forward.fan_out(conn, rt.settings, batch.batch_id, new)
        if rt.prune_due():
            pruned = store.prune_dedupe(conn, rt.settings.dedupe_days)
            log.info("dedupe_pruned n_rows=%d", pruned)
    log.info("batch_stored batch_id=%s n_events=%d n_stored=%d", batch.batch_id, len(batch.events), stored)


def forward_batch(payload: Any) -> None:
    """Send one chunk of stored events to one destination (retries schedule themselves)."""
    forward.forward_batch(payload)
