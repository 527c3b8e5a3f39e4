"""Phase (d): events persisted per second by one worker, against a raw COPY of the same rows.

The events are made by the real Segment adapter from realistic batch bodies, enqueued by the real
``gateway.publisher.Publisher`` (group commit, RQ job format) with ``clients`` concurrent publishers of
``per_request`` events each, as the gateway's requests would, then drained by one burst
``workers.worker.build_worker(...)`` into PostgreSQL. The baseline COPYs the same events, turned into
rows by ``workers.store.event_row``, with ``workers.store.COPY_SQL`` in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import redis
import redis.asyncio as aioredis

from bench.cpu import CpuMeter
from trackgate.gateway.publisher import Publisher
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PERSIST_QUEUE
from trackgate.schemas.settings import ServerSettings, tune_gc
from trackgate.workers import runtime, store
from trackgate.workers.worker import build_worker

# starts a profiler for the measured window; what it returns stops it
Profile = Callable[[], Callable[[], object]]


@dataclass
class Timed:
    label: str
    events: int
    seconds: float
    jobs: int = 0
    python_cpu_s: float | None = None
    """CPU of this process meanwhile (the in-process worker, or the COPY's client)."""
    postgres_cpu_s: float | None = None
    """CPU of the bench database's PostgreSQL backends meanwhile (read from /proc: a local server)."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def enqueue(settings: ServerSettings, events: list[Event], *, clients: int, per_request: int) -> int:
    """Publish ``events`` through the real Publisher; returns the number of jobs queued."""

    async def main() -> None:
        client = aioredis.from_url(settings.redis_url)
        publisher = Publisher(
            client,
            max_batch_events=settings.max_batch_events,
            retries=settings.job_retries,
            timeout=30.0,
        )
        await publisher.start()
        requests = iter([events[i : i + per_request] for i in range(0, len(events), per_request)])

        async def one_client() -> None:
            for request in requests:
                await publisher.publish(request)

        try:
            await asyncio.gather(*(one_client() for _ in range(clients)))
        finally:
            await publisher.stop()
            await client.aclose()

    asyncio.run(main())
    with redis.Redis.from_url(settings.redis_url) as r:
        return r.llen(f"rq:queue:{PERSIST_QUEUE}")


def reset_tables(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE events, event_dedupe, profiles, profile_ids, groups, group_members")
        with contextlib.suppress(psycopg.Error):
            conn.execute("CHECKPOINT")  # start each timed run with no dirty buffers of the last one


def stored_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        assert row is not None  # count(*) answers one row
        return row[0]


def ensure_partitions(database_url: str, events: list[Event]) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        store.ensure_partitions(conn, {(e.received_at.year, e.received_at.month) for e in events})


def drain(settings: ServerSettings, profile: Profile | None = None) -> tuple[float, float, float | None]:
    """Run one burst worker until the queue is empty; returns the seconds it took (setup excluded),
    the worker's CPU seconds and its PostgreSQL backends' (``bench.cpu.CpuMeter``).

    Under the GC settings of a ``trackgate worker`` process (``workers.worker.run`` calls
    ``tune_gc``), restored after: with the interpreter's defaults the collector's passes over the
    decoded jobs cost a quarter of the worker's CPU, which the real worker does not pay."""
    worker = build_worker(settings)
    runtime.current().pool.wait(timeout=30)
    meter = CpuMeter(settings.database_url)
    thresholds = gc.get_threshold()
    tune_gc()
    try:
        stop_profile = profile() if profile else None
        meter.start()
        started = time.perf_counter()
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
        elapsed = time.perf_counter() - started
        python, postgres = meter.stop()
        if stop_profile is not None:
            stop_profile()
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    runtime.current().close()
    return elapsed, python, postgres


def raw_copy(
    database_url: str, events: list[Event], batch_id: str = "bench-copy"
) -> tuple[float, float, float | None]:
    """``event_row`` + COPY of every event in one transaction; returns seconds, this process's CPU
    seconds and the backend's (``bench.cpu.CpuMeter``)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        meter = CpuMeter(database_url)
        meter.start()
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur, cur.copy(store.COPY_SQL) as copy:
            write = copy.write_row
            row = store.event_row
            for event in events:
                write(row(event, batch_id))
        elapsed = time.perf_counter() - started
        return elapsed, *meter.stop()


def prebuilt_copy(
    database_url: str, events: list[Event], batch_id: str = "bench-copy"
) -> tuple[float, float]:
    """Rows built first (timed apart), then COPYed; returns (build seconds, copy seconds)."""
    started = time.perf_counter()
    rows = [store.event_row(e, batch_id) for e in events]
    built = time.perf_counter() - started
    with psycopg.connect(database_url, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur, cur.copy(store.COPY_SQL) as copy:
            write = copy.write_row
            for r in rows:
                write(r)
        return built, time.perf_counter() - started


def flush(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as r:
        r.flushdb()


def run_worker_phase(
    settings: ServerSettings,
    events: list[Event],
    *,
    clients: int,
    per_request: int,
    profile: Profile | None = None,
) -> Timed:
    """Enqueue ``events`` shaped as ``per_request``-event requests, drain them, check the table."""
    flush(settings.redis_url)
    reset_tables(settings.database_url)
    jobs = enqueue(settings, events, clients=clients, per_request=per_request)
    seconds, python, postgres = drain(settings, profile)
    n = stored_count(settings.database_url)
    with redis.Redis.from_url(settings.redis_url) as r:
        left = r.llen(f"rq:queue:{PERSIST_QUEUE}")
        failed = sum(r.zcard(f"rq:{k}:{PERSIST_QUEUE}") for k in ("wip", "failed", "scheduled"))
    if n != len(events) or left or failed:
        raise RuntimeError(
            f"worker stored {n} of {len(events)} events "
            f"({left} jobs left, {failed} failed, retrying or in progress)"
        )
    return Timed(f"worker, {per_request}-event requests", len(events), seconds, jobs, python, postgres)


def run_copy_phase(database_url: str, events: list[Event]) -> Timed:
    reset_tables(database_url)
    seconds, python, postgres = raw_copy(database_url, events)
    n = stored_count(database_url)
    if n != len(events):
        raise RuntimeError(f"raw COPY stored {n} of {len(events)} rows")
    return Timed("raw COPY (event_row + COPY, 1 txn)", len(events), seconds, 1, python, postgres)


def run_prebuilt_phase(database_url: str, events: list[Event]) -> tuple[Timed, Timed]:
    reset_tables(database_url)
    built, copied = prebuilt_copy(database_url, events)
    return (
        Timed("event_row only (no I/O)", len(events), built),
        Timed("COPY of prebuilt rows", len(events), copied, 1),
    )
