"""RQ entry points: thin functions, referenced by dotted path from ``schemas.jobs`` (``PERSIST_FUNC``)
and ``schemas.destinations`` (``FORWARD_FUNC``)."""

from __future__ import annotations

import logging

from rq.job import Job

from trackgate.schemas.jobs import described_size, persist_batch_from_arg
from trackgate.workers import aggregate, pipeline, runtime, store
from trackgate.workers.forward import delivery, resources

log = logging.getLogger(__name__)


def persist_batch(payload: object) -> None:
    """Store one group-committed batch through the pipeline (``workers/pipeline.py``). Safe to run
    twice: dedupe makes it idempotent, profile changes and quarantine rows included."""
    batch = persist_batch_from_arg(payload)
    rt = runtime.current()
    with rt.pool.connection() as conn:
        done = pipeline.persist(conn, batch, rt.settings)
        if rt.settings.redis_url:  # the first job after midnight UTC queues the closed day's aggregation
            aggregate.schedule_daily(resources.redis_connection(rt.settings))
        if rt.prune_due():
            pruned = store.prune_dedupe(conn, rt.settings.dedupe_days)
            log.info("dedupe_pruned n_rows=%d", pruned)
    log.info(
        "batch_stored batch_id=%s n_events=%d n_stored=%d", batch.batch_id, len(batch.events), done.n_stored
    )


def persist_batches(payloads: list[object]) -> None:
    """Store several queued batches in one transaction (``pipeline.persist_group``): the worker's
    multi-job drain (``workers/reliable.py``'s ``Grouping``). Raises if any part fails; the worker
    then runs each job alone through :func:`persist_batch`."""
    batches = [persist_batch_from_arg(payload) for payload in payloads]
    rt = runtime.current()
    with rt.pool.connection() as conn:
        done = pipeline.persist_group(conn, batches, rt.settings)
        if rt.settings.redis_url:  # as persist_batch: the first job after midnight UTC queues the closed day
            aggregate.schedule_daily(resources.redis_connection(rt.settings))
        if rt.prune_due():
            pruned = store.prune_dedupe(conn, rt.settings.dedupe_days)
            log.info("dedupe_pruned n_rows=%d", pruned)
    for batch, result in zip(batches, done, strict=True):
        log.info(
            "batch_stored batch_id=%s n_events=%d n_stored=%d n_grouped=%d",
            batch.batch_id,
            len(batch.events),
            result.n_stored,
            len(batches),
        )


def batch_size(payload: object) -> int:
    """A persist job's weight in a group: its events and refused items."""
    batch = persist_batch_from_arg(payload)
    return len(batch.events) + len(batch.refused)


def job_size(job: Job) -> int:
    """A persist job's weight in a group, from its description when it states it (no inflating or
    decoding of a job that may go back to its queue), else from its batch (:func:`batch_size`)."""
    size = described_size(job.description)
    return batch_size(job.args[0]) if size is None else size


def forward_batch(payload: object) -> None:
    """Send one chunk of stored events to one destination (retries schedule themselves)."""
    delivery.forward_batch(runtime.current(), payload)
