"""Fan-out: which destinations get which newly stored events, and enqueuing their forward jobs.

For each destination that takes the events' source and passes its filters, the events in chunks of
what the destination's transport accepts per job; one delivery-log row and one RQ job on
``trackgate-forward`` per chunk. Enqueuing is all it does, so a slow destination never delays the
persist queue.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from rq import Queue, Retry

from trackgate.adapters import transports
from trackgate.schemas.destinations import FORWARD_FUNC, Destination, ForwardJob, accepts
from trackgate.schemas.event import Event
from trackgate.schemas.settings import Settings
from trackgate.workers.forward import resources

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


def enqueue_deliveries(
    conn: psycopg.Connection, connection: redis.Redis, batch_id: str, planned: Planned
) -> list[int]:
    """One delivery-log row and one forward job per (destination, chunk); returns the delivery ids."""
    if not planned:
        return []
    queue = resources.forward_queue(connection)
    now = resources.clock()
    # the jobs are written before the rows commit: if Redis refuses them, no row claims a forward
    # that will never run
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO deliveries (destination_id, batch_id, n_events) VALUES (%s, %s, %s) RETURNING id",
            [(dest.id, batch_id, len(chunk)) for dest, chunk in planned],
            returning=True,
        )
        ids: list[int] = []
        while True:
            row = cur.fetchone()
            assert row is not None  # one row per INSERT ... RETURNING
            ids.append(row[0])
            if not cur.nextset():
                break
        with connection.pipeline() as pipe:
            for delivery_id, (dest, chunk) in zip(ids, planned, strict=True):
                job = ForwardJob(delivery_id=delivery_id, destination_id=dest.id, events=chunk, first_at=now)
                enqueue(queue, job, pipeline=pipe)
            pipe.execute()
    return ids


def fan_out(conn: psycopg.Connection, settings: Settings, batch_id: str, events: list[Event]) -> int:
    """Queue the forwarding of newly stored ``events``; returns how many forward jobs.

    A failure here is logged, not raised: the events are stored, and a re-run of the persist job
    would find them stored already and forward nothing. ``trackgate replay events`` sends them.
    """
    if not events:
        return 0
    try:
        return _fan_out(conn, settings, batch_id, events)
    except Exception:  # noqa: BLE001 - the events are stored: a fan-out failure must not fail the job
        log.exception(
            "forward_fanout_failed batch_id=%s n_events=%d (send them with `trackgate replay events`)",
            batch_id,
            len(events),
        )
        return 0


def _fan_out(conn: psycopg.Connection, settings: Settings, batch_id: str, events: list[Event]) -> int:
    dests = resources.destinations(conn)
    if not dests:
        return 0
    connection = resources.redis_connection(settings)
    try:
        ids = enqueue_deliveries(conn, connection, batch_id, plan_deliveries(dests, events))
    except psycopg.errors.ForeignKeyViolation:  # a destination removed since the cache was filled
        resources.forget_destinations()
        dests = resources.destinations(conn)
        ids = enqueue_deliveries(conn, connection, batch_id, plan_deliveries(dests, events))
    if ids:
        log.info("forward_queued batch_id=%s n_jobs=%d", batch_id, len(ids))
    return len(ids)


def _job_id(delivery_id: int) -> str:
    return f"fwd-{delivery_id}-{uuid.uuid4().hex[:12]}"


def enqueue(queue: Queue, job: ForwardJob, *, at: float | None = None, pipeline: Any = None) -> None:
    """Queue one forward job (at ``at``, a Unix time, when given)."""
    options: dict[str, Any] = {
        "job_id": _job_id(job.delivery_id),
        "description": f"forward_batch delivery={job.delivery_id} destination={job.destination_id}",
        "result_ttl": 0,
        "job_timeout": JOB_TIMEOUT,
        # a crash of the job itself (PostgreSQL or Redis down), not a destination failure
        "retry": Retry(max=5, interval=[10, 60, 300, 900, 1800]),
    }
    if pipeline is not None:
        options["pipeline"] = pipeline
    if at is None:
        queue.enqueue(FORWARD_FUNC, job, **options)
    else:
        queue.enqueue_at(datetime.fromtimestamp(at, UTC), FORWARD_FUNC, job, **options)
