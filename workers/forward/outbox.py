"""The forwarding outbox: a forward is written with the events it carries, queued after the commit,
and swept up if that queueing did not happen.

- :func:`write` runs inside the store transaction (``store.store_batch(..., outbox=...)``): one
  statement inserts the ``deliveries`` rows (status ``queued``, ``enqueued_at`` NULL) and the event ids
  each carries (``delivery_events``). The forward intent commits with the events, or not at all.
- :func:`enqueue` runs after the commit: one Redis pipeline queues the forward jobs (job id
  ``fwd-<delivery id>``, so a second enqueue of the same delivery is recognisable), then the rows are
  marked ``enqueued_at``.
- :func:`sweep` runs in every worker every few seconds (:class:`Sweeper`, and at the start of persist
  jobs): it claims the rows still queued and unmarked ``SWEEP_GRACE`` seconds after their commit
  (``FOR UPDATE SKIP LOCKED``, so workers sweep side by side), reads their events back from
  PostgreSQL and queues their jobs, unless a job with that id exists already (the worker died after
  queueing, before marking).

So a Redis failure or a killed worker between the commit and the enqueue delays a forward by
``SWEEP_GRACE`` to ``SWEEP_GRACE + SWEEP_EVERY`` seconds; it never loses it. Forwarding stays
at-least-once: a job that sent a request and died before recording it sends it again on its retry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg
import redis
from psycopg.types.json import Json
from rq.exceptions import DuplicateJobError
from rq.job import Job

from trackgate.schemas.destinations import ForwardJob
from trackgate.schemas.event import Event
from trackgate.schemas.settings import Settings
from trackgate.workers.forward import resources
from trackgate.workers.forward.fanout import Planned, first_job_id
from trackgate.workers.forward.fanout import enqueue as enqueue_job
from trackgate.workers.runtime import WorkerRuntime
from trackgate.workers.store import COLUMNS, row_fields

log = logging.getLogger(__name__)

SWEEP_EVERY = 5.0
"""Seconds between two sweeps of one worker process."""
SWEEP_GRACE = 15.0
"""A delivery is left to the job that wrote it for this long after its commit; then a sweep queues it."""
SWEEP_LIMIT = 500
"""Deliveries claimed by one sweep (the next sweep takes the rest)."""

EVENT_COLUMNS = ", ".join(f'"{c}"' for c in COLUMNS)
"""The ``events`` columns :func:`event_from_row` reads, in order."""

_encode = msgspec.json.encode


@dataclass(frozen=True, slots=True)
class Written:
    """A delivery written by :func:`write`: its id, its destination and the events it carries."""

    delivery_id: int
    destination_id: str
    events: list[Event]


# One statement: the delivery ids are drawn first (the rows of destinations removed meanwhile are
# skipped by the join), both tables take their rows, and (ord, id) says which planned chunk got which.
_WRITE_SQL = """
WITH planned AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('deliveries', 'id')) AS id, p.*
    FROM json_to_recordset(%(planned)s::json) AS p(
        ord int, destination_id text, event_ids uuid[], received_from timestamptz, received_to timestamptz)
), delivery AS (
    INSERT INTO deliveries (id, destination_id, batch_id, n_events)
    SELECT p.id, p.destination_id, %(batch_id)s, cardinality(p.event_ids)
    FROM planned p JOIN destinations d ON d.id = p.destination_id
    RETURNING id
), carried AS (
    INSERT INTO delivery_events (delivery_id, destination_id, event_ids, received_from, received_to)
    SELECT p.id, p.destination_id, p.event_ids, p.received_from, p.received_to
    FROM planned p JOIN delivery USING (id)
)
SELECT p.ord, p.id FROM planned p JOIN delivery USING (id)
"""


def write(conn: psycopg.Connection, batch_id: str, planned: Planned) -> list[Written]:
    """Insert the delivery rows of ``planned`` (one per destination and chunk) and the event ids they
    carry, in the caller's transaction; returns them, less those whose destination is gone."""
    if not planned:
        return []
    rows = [
        {
            "ord": ord_,
            "destination_id": dest.id,
            "event_ids": [e.id for e in chunk],
            "received_from": min(e.received_at for e in chunk),
            "received_to": max(e.received_at for e in chunk),
        }
        for ord_, (dest, chunk) in enumerate(planned)
    ]
    cur = conn.execute(_WRITE_SQL, {"planned": Json(rows, _dumps), "batch_id": batch_id})
    ids: dict[int, int] = dict(cur.fetchall())
    return [Written(ids[ord_], dest.id, chunk) for ord_, (dest, chunk) in enumerate(planned) if ord_ in ids]


def _dumps(value: Any) -> str:
    return _encode(value).decode()


def enqueue(conn: psycopg.Connection, connection: redis.Redis, written: list[Written]) -> None:
    """Queue the forward jobs of committed deliveries (one Redis pipeline), then mark them enqueued.

    Raises if Redis refuses them: the rows stay unmarked and a sweep queues them. A failure to mark
    them is only logged: a sweep finds their jobs and marks them."""
    if not written:
        return
    queue = resources.forward_queue(connection)
    now = resources.clock()
    with connection.pipeline() as pipe:
        for w in written:
            job = ForwardJob(
                delivery_id=w.delivery_id, destination_id=w.destination_id, events=w.events, first_at=now
            )
            enqueue_job(queue, job, pipeline=pipe, job_id=first_job_id(w.delivery_id))
        pipe.execute()
    try:
        _mark_enqueued(conn, [w.delivery_id for w in written])
    except psycopg.Error as exc:
        log.warning("forward_mark_failed n_deliveries=%d sqlstate=%s", len(written), exc.sqlstate)


def enqueue_or_defer(
    conn: psycopg.Connection, settings: Settings, batch_id: str, written: list[Written]
) -> None:
    """:func:`enqueue` after a store: a failure is logged, not raised (the events are stored and
    their deliveries written; a sweep queues them within ``SWEEP_GRACE + SWEEP_EVERY`` seconds)."""
    if not written:
        return
    try:
        enqueue(conn, resources.redis_connection(settings), written)
    except Exception as exc:  # noqa: BLE001 - the events are stored: the job must not fail now
        log.warning(
            "forward_enqueue_deferred batch_id=%s n_jobs=%d error=%s: %s (a sweep queues them)",
            batch_id,
            len(written),
            type(exc).__name__,
            str(exc)[:200],
        )
        return
    log.info("forward_queued batch_id=%s n_jobs=%d", batch_id, len(written))


def enqueue_deliveries(
    conn: psycopg.Connection, connection: redis.Redis, batch_id: str, planned: Planned
) -> list[int]:
    """Write ``planned`` deliveries in a transaction of their own, then queue them (a replay's
    chunk); returns the delivery ids. Raises if Redis refuses the jobs: the rows are committed
    and a sweep queues them."""
    with conn.transaction():
        written = write(conn, batch_id, planned)
    enqueue(conn, connection, written)
    return [w.delivery_id for w in written]


def _mark_enqueued(conn: psycopg.Connection, ids: list[int]) -> None:
    with conn.transaction():
        # a lost mark costs a sweep a Redis lookup, not a second send: no need to wait for the WAL flush
        conn.execute(
            "WITH async AS (SELECT set_config('synchronous_commit', 'off', true))"
            " UPDATE deliveries SET enqueued_at = now() FROM async"
            " WHERE id = ANY(%s) AND enqueued_at IS NULL",
            (ids,),
        )


def mark_taken(conn: psycopg.Connection, delivery_id: int) -> None:
    """Mark a delivery enqueued from its own job (which re-queues itself under another id without
    changing its status: paused destination, another job probing): a sweep must not queue it again."""
    with conn.transaction():
        conn.execute(
            "UPDATE deliveries SET enqueued_at = now() WHERE id = %s AND enqueued_at IS NULL", (delivery_id,)
        )


# --- the sweep -----------------------------------------------------------------------------------


def sweep(
    conn: psycopg.Connection,
    connection: redis.Redis,
    *,
    grace: float | None = None,
    limit: int = SWEEP_LIMIT,
    max_rounds: int = 10,
) -> int:
    """Queue the deliveries still waiting for their first enqueue ``grace`` seconds after their
    commit, ``limit`` per transaction, again while a round finds a full ``limit`` (at most
    ``max_rounds``); returns how many jobs it queued. ``conn`` must not be in a transaction."""
    grace = SWEEP_GRACE if grace is None else grace
    n_queued = 0
    for _ in range(max_rounds):
        n_rows, queued = _sweep_round(conn, connection, grace, limit)
        n_queued += queued
        if n_rows < limit:
            break
    return n_queued


def _sweep_round(
    conn: psycopg.Connection, connection: redis.Redis, grace: float, limit: int
) -> tuple[int, int]:
    """One claim of at most ``limit`` deliveries: (how many it claimed, how many jobs it queued)."""
    queue = resources.forward_queue(connection)
    n_queued = 0
    with conn.transaction():
        rows = conn.execute(
            "SELECT d.id, d.destination_id, e.event_ids, e.received_from, e.received_to"
            " FROM deliveries d JOIN delivery_events e ON e.delivery_id = d.id"
            " WHERE d.enqueued_at IS NULL AND d.status = 'queued'"
            " AND d.created_at < now() - make_interval(secs => %s)"
            " ORDER BY d.created_at LIMIT %s FOR UPDATE OF d SKIP LOCKED",
            (grace, limit),
        ).fetchall()
        if not rows:
            return 0, 0
        with connection.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.exists(Job.key_for(first_job_id(row[0])))
            found = pipe.execute()
        now = resources.clock()
        gone: list[int] = []
        for (delivery_id, destination_id, event_ids, lo, hi), exists in zip(rows, found, strict=True):
            if exists:  # queued by the job that wrote it, which died before marking it
                continue
            events = load_events(conn, [str(i) for i in event_ids], lo, hi)
            if not events:
                gone.append(delivery_id)
                continue
            job = ForwardJob(
                delivery_id=delivery_id, destination_id=destination_id, events=events, first_at=now
            )
            try:
                enqueue_job(queue, job, job_id=first_job_id(delivery_id), unique=True)
            except DuplicateJobError:  # queued meanwhile by the job that wrote it
                continue
            n_queued += 1
        conn.execute("UPDATE deliveries SET enqueued_at = now() WHERE id = ANY(%s)", ([r[0] for r in rows],))
        if gone:
            conn.execute(
                "UPDATE deliveries SET status = 'dead', last_error = 'its events are no longer stored',"
                " updated_at = now() WHERE id = ANY(%s)",
                (gone,),
            )
    log.info("forward_swept n_deliveries=%d n_queued=%d n_gone=%d", len(rows), n_queued, len(gone))
    return len(rows), n_queued


def load_events(
    conn: psycopg.Connection, ids: list[str], received_from: datetime, received_to: datetime
) -> list[Event]:
    """Stored events by id, in the order of ``ids`` (missing ones left out); ``received_from`` and
    ``received_to`` bound their arrival times (the BRIN index on ``events.received_at``)."""
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE received_at BETWEEN %s AND %s AND id = ANY(%s::uuid[])",
        (received_from, received_to, ids),
    ).fetchall()
    by_id = {str(row[0]): event_from_row(row) for row in rows}
    return [by_id[i] for i in ids if i in by_id]


def event_from_row(row: tuple[Any, ...]) -> Event:
    """The canonical event of an ``events`` row read with :data:`EVENT_COLUMNS`."""
    values = row_fields(row)
    values.pop("batch_id")
    values["id"] = str(values["id"])
    values["group_ids"] = values["group_ids"] or []
    for key in (
        "name",
        "user_id",
        "anonymous_id",
        "group_id",
        "previous_id",
        "original_timestamp",
        "sent_at",
    ):
        if values[key] is None:
            values.pop(key)
    if isinstance(values["raw"], dict | list):  # psycopg loads json; the canonical raw is text
        values["raw"] = json.dumps(values["raw"])
    return msgspec.convert(values, Event)


# --- who sweeps ----------------------------------------------------------------------------------

_last_sweep = 0.0
_sweep_lock = threading.Lock()


def sweep_due(every: float | None = None) -> bool:
    """Whether this process is due a sweep (then the next ``every`` seconds are not)."""
    global _last_sweep
    every = SWEEP_EVERY if every is None else every
    with _sweep_lock:
        now = time.monotonic()
        if now - _last_sweep < every:
            return False
        _last_sweep = now
        return True


def sweep_if_due(conn: psycopg.Connection, connection: redis.Redis) -> int:
    """A sweep at most every ``SWEEP_EVERY`` seconds per process; failures are logged, not raised
    (the next one tries again)."""
    if not sweep_due():
        return 0
    try:
        return sweep(conn, connection)
    except (psycopg.Error, redis.RedisError) as exc:
        log.warning("forward_sweep_failed error=%s: %s", type(exc).__name__, str(exc)[:200])
        return 0


class Sweeper(threading.Thread):
    """Sweeps every ``SWEEP_EVERY`` seconds while its worker runs, busy or idle (a daemon thread:
    it ends with the process). Uses the worker's pool and the forwarding Redis client."""

    def __init__(self, rt: WorkerRuntime):
        super().__init__(name="trackgate-outbox-sweeper", daemon=True)
        self.rt = rt
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(SWEEP_EVERY):
            try:
                connection = resources.redis_connection(self.rt.settings)
                with self.rt.pool.connection() as conn:
                    sweep_if_due(conn, connection)
            except Exception:  # noqa: BLE001 - the thread must outlive a bad turn
                log.exception("forward_sweeper_error")

    def stop(self) -> None:
        self.stopped.set()


def start_sweeper(rt: WorkerRuntime) -> Sweeper:
    sweeper = Sweeper(rt)
    sweeper.start()
    return sweeper
