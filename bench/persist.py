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
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import redis
import redis.asyncio as aioredis

from bench.cpu import CpuMeter
from trackgate.gateway.publisher import Publisher
from trackgate.schemas import metrics
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PERSIST_QUEUE
from trackgate.schemas.settings import ServerSettings, tune_gc
from trackgate.workers import applier_process, profiles_outbox, runtime, store
from trackgate.workers.worker import build_worker, start_profile_applier

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
    profile_lag: ProfileLag | None = None
    """How far the worker's profiles trailed its store (a worker run)."""

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
            linger=0,  # every client's request at once: the jobs of (d) and (h) as at every step
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
        conn.execute(
            "TRUNCATE events, event_dedupe, profiles, profile_ids, groups, group_members, profile_outbox"
        )
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


def drain(
    settings: ServerSettings, profile: Profile | None = None
) -> tuple[float, float, float | None, ProfileLag]:
    """Run one burst worker until the queue is empty and its profile applier has applied every
    event; returns the seconds it took (setup excluded), the worker's CPU seconds and its PostgreSQL
    backends' (``bench.cpu.CpuMeter``: the applier's connection is one of them), and how far the
    profiles trailed.

    Under the GC settings of a ``trackgate worker`` process (``workers.worker.run`` calls
    ``tune_gc``), restored after: with the interpreter's defaults the collector's passes over the
    decoded jobs cost a quarter of the worker's CPU, which the real worker does not pay."""
    worker = build_worker(settings)
    runtime.current().pool.wait(timeout=30)
    # as ``workers.worker.run`` does: profiles are applied beside the store, by an applier process of
    # the worker's (its CPU counted with the worker's; its lag read from the metrics files it writes
    # into a directory of this drain's), or by a thread on a connection of the worker's pool
    # (TRACKGATE_PROFILE_APPLIER=thread); the meter counts a backend that connects meanwhile from 0
    lag_dir = (
        tempfile.mkdtemp(prefix="bench-applier-metrics-") if settings.profile_applier == "process" else ""
    )
    applier = start_profile_applier(settings, metrics_path=lag_dir or None)
    children: list[int] = []
    if isinstance(applier, applier_process.ApplierProcess):
        if not applier.ready:
            raise RuntimeError("the profile applier process did not start")
        children = [applier.pid] if applier.pid else []
    meter = CpuMeter(settings.database_url, children=children)
    thresholds = gc.get_threshold()
    tune_gc()
    lag = lag_snapshot(lag_dir)
    try:
        stop_profile = profile() if profile else None
        meter.start()
        started = time.perf_counter()
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
        stored = time.perf_counter()
        if not applier.settle(timeout=600):  # counted: the events' profiles are applied too
            raise RuntimeError("the profile applier did not finish within 600 s")
        elapsed = time.perf_counter() - started
        python, postgres = meter.stop()
        if stop_profile is not None:
            stop_profile()
        profile_lag = lag_since(lag, settled_after_s=elapsed - (stored - started), path=lag_dir)
    finally:
        profiles_outbox.stop_applier()
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        if lag_dir:
            shutil.rmtree(lag_dir, ignore_errors=True)
    runtime.current().close()
    return elapsed, python, postgres, profile_lag


@dataclass
class ProfileLag:
    """How far profiles trailed the store in a drain, from the worker's ``trackgate_profile_lag_seconds``
    (outbox row written → applied): rows, their mean lag, the bucket bound under which 99% fell, and
    the seconds from the last job's end to the last profile applied."""

    rows: int = 0
    mean_s: float = 0.0
    p99_at_most_s: float = 0.0
    settled_after_s: float = 0.0


LagSnapshot = tuple[float, float, dict[float, float]]
"""The lag histogram's (count, sum, {bucket bound: cumulative count})."""


def lag_snapshot(path: str = "") -> LagSnapshot:
    """This process's lag histogram, or with ``path`` the one an applier process wrote there."""
    count = total = 0.0
    buckets: dict[float, float] = {}
    for family in _lag_families(path):
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    return count, total, buckets


def _lag_families(path: str) -> list:
    if not path:
        return list(metrics.worker().profile_lag.collect())
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    collector = MultiProcessCollector(CollectorRegistry(auto_describe=False), path=path)
    return [f for f in collector.collect() if f.name == "trackgate_profile_lag_seconds"]


def lag_since(before: LagSnapshot, settled_after_s: float, path: str = "") -> ProfileLag:
    count, total, buckets = lag_snapshot(path)
    rows = int(count - before[0])
    p99 = 0.0
    for bound in sorted(buckets):
        if buckets[bound] - before[2].get(bound, 0.0) >= 0.99 * rows:
            p99 = bound
            break
    return ProfileLag(rows, (total - before[1]) / rows if rows else 0.0, p99, settled_after_s)


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
    seconds, python, postgres, lag = drain(settings, profile)
    n = stored_count(settings.database_url)
    with psycopg.connect(settings.database_url) as conn:
        rows, _, _ = profiles_outbox.pending(conn)
    if rows:
        raise RuntimeError(f"{rows} profile outbox rows left after the worker's applier settled")
    with redis.Redis.from_url(settings.redis_url) as r:
        left = r.llen(f"rq:queue:{PERSIST_QUEUE}")
        failed = sum(r.zcard(f"rq:{k}:{PERSIST_QUEUE}") for k in ("wip", "failed", "scheduled"))
    if n != len(events) or left or failed:
        raise RuntimeError(
            f"worker stored {n} of {len(events)} events "
            f"({left} jobs left, {failed} failed, retrying or in progress)"
        )
    return Timed(f"worker, {per_request}-event requests", len(events), seconds, jobs, python, postgres, lag)


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
