"""Fan-out: which destinations get which newly stored events, and the forward jobs' ids and queueing.

For each destination that takes the events' source and passes its filters, the events in chunks of
what the destination's transport accepts per job: one delivery-log row and one RQ job on
``trackgate-forward`` per chunk, written and queued by ``outbox.py`` (the row in the store
transaction, the job after its commit). Queueing is all the persist path does, so a slow destination
never delays it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from rq import Queue, Retry

from trackgate.adapters import transports
from trackgate.schemas.destinations import FORWARD_FUNC, Destination, ForwardJob, accepts
from trackgate.schemas.event import Event

log = logging.getLogger(__name__)

JOB_TIMEOUT = 600
MAX_JOB_RAW_BYTES = 4 * 1024 * 1024

Planned = list[tuple[Destination, list[Event]]]


def chunks(events: list[Event], size: int) -> list[list[Event]]:
    out: list[list[Event]] = []
    current: list[Event] = []
    weight = 0
    for event in events:
        if current and (len(current) >= size or weight + len(event.raw) > MAX_JOB_RAW_BYTES):
            out.append(current)
            current, weight = [], 0
        current.append(event)
        weight += len(event.raw)
    if current:
        out.append(current)
    return out


def plan_deliveries(dests: list[Destination], events: list[Event]) -> Planned:
    planned: Planned = []
    for dest in dests:
        transport = transports.TRANSPORTS.get(dest.kind)
        if transport is None:
            continue
        selected = [e for e in events if dest.takes_source(e.source_id) and accepts(dest.filters, e)]
        planned.extend((dest, chunk) for chunk in chunks(selected, transport.job_events))
    return planned


def first_job_id(delivery_id: int) -> str:
    """The job id of a delivery's first forward job (queued after its commit, or by a sweep)."""
    return f"fwd-{delivery_id}"


def _job_id(delivery_id: int) -> str:
    # a job that queues itself again (retry, hold, pause) needs a new id: RQ deletes the running
    # job's key when it ends (result_ttl=0), which would take the new job with it
    return f"fwd-{delivery_id}-{uuid.uuid4().hex[:12]}"


def enqueue(
    queue: Queue,
    job: ForwardJob,
    *,
    at: float | None = None,
    pipeline: Any = None,
    job_id: str | None = None,
    unique: bool = False,
) -> None:
    """Queue one forward job (at ``at``, a Unix time, when given). ``unique`` raises RQ's
    ``DuplicateJobError`` if a job with ``job_id`` exists (and ignores ``pipeline``)."""
    options: dict[str, Any] = {
        "job_id": job_id or _job_id(job.delivery_id),
        "description": f"forward_batch delivery={job.delivery_id} destination={job.destination_id}",
        "result_ttl": 0,
        "job_timeout": JOB_TIMEOUT,
        # a crash of the job itself (PostgreSQL or Redis down), not a destination failure
        "retry": Retry(max=5, interval=[10, 60, 300, 900, 1800]),
    }
    if pipeline is not None:
        options["pipeline"] = pipeline
    if unique:
        options["unique"] = True
    if at is None:
        queue.enqueue(FORWARD_FUNC, job, **options)
    else:
        queue.enqueue_at(datetime.fromtimestamp(at, UTC), FORWARD_FUNC, job, **options)
