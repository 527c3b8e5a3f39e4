"""Fixtures for forwarding: a secret key, a movable clock, a forward worker, scheduled retries."""

from __future__ import annotations

import msgspec
import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry

from trackgate.schemas.destinations import FORWARD_QUEUE, Filters
from trackgate.schemas.jobs import MsgspecJSONSerializer
from trackgate.workers.destinations import add_destination
from trackgate.workers.forward import resources

SECRET_KEY = "test-secret-key-that-is-long-and-random-enough"
T0 = 1_900_000_000.0  # a fixed start for the injected clock


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def pytest_configure(config):
    config.addinivalue_line("markers", "horizon(seconds): the forward retry horizon for this test")


@pytest.fixture
def fsettings(settings, request):
    marker = request.node.get_closest_marker("horizon")
    horizon = marker.args[0] if marker else settings.forward_horizon_seconds
    return msgspec.structs.replace(settings, secret_key=SECRET_KEY, forward_horizon_seconds=horizon)


@pytest.fixture
def clock(monkeypatch):
    resources.reset()
    c = Clock(T0)
    monkeypatch.setattr(resources, "clock", c)
    monkeypatch.setattr(resources.rng, "random", lambda: 0.5)
    yield c
    resources.reset()


@pytest.fixture
def add(fsettings):
    def make(kind: str, name: str, url: str, credentials: dict | None = None, **options) -> str:
        filters = Filters(**options.pop("filters", {}))
        destination_id = add_destination(
            fsettings.database_url,
            fsettings.secret_key,
            kind=kind,
            name=name,
            base_url=url,
            credentials=credentials or {},
            source_ids=options.pop("source_ids", []),
            filters=filters,
        )
        resources.forget_destinations()
        return destination_id

    return make


@pytest.fixture
def drain_forward(fsettings):
    """Run every forward job that is due now (retries scheduled for later stay scheduled)."""

    def run() -> None:
        from trackgate.workers.worker import build_worker

        build_worker(fsettings, (FORWARD_QUEUE,)).work(
            burst=True, with_scheduler=False, logging_level="WARNING"
        )

    return run


@pytest.fixture
def quick_drain(fsettings, rdb):
    """Run the queued forward jobs as RQ would (same job data), without a worker's start-up cost:
    for the tests that move the clock through hundreds of retries."""
    from rq.job import Job

    from trackgate.workers import runtime

    queue = Queue(FORWARD_QUEUE, connection=rdb, serializer=MsgspecJSONSerializer)

    def run() -> None:
        if runtime._current is None or runtime._current.settings is not fsettings:
            runtime.configure(fsettings)
        while job_id := rdb.lpop(queue.key):
            job = Job.fetch(job_id.decode(), connection=rdb, serializer=MsgspecJSONSerializer)
            job.perform()
            job.delete()

    return run


@pytest.fixture
def scheduled(rdb):
    return ScheduledJobRegistry(FORWARD_QUEUE, connection=rdb, serializer=MsgspecJSONSerializer)


def next_scheduled(registry: ScheduledJobRegistry) -> float | None:
    first = registry.connection.zrange(registry.key, 0, 0, withscores=True)
    return first[0][1] if first else None


def release_due(registry: ScheduledJobRegistry, now: float) -> int:
    """What RQ's scheduler does, at the injected time: move the jobs due by ``now`` to the queue."""
    from rq.job import Job

    queue = Queue(FORWARD_QUEUE, connection=registry.connection, serializer=MsgspecJSONSerializer)
    ids = registry.get_jobs_to_schedule(int(now))
    for job in Job.fetch_many(ids, connection=registry.connection, serializer=MsgspecJSONSerializer):
        if job is not None:
            queue._enqueue_job(job)
            registry.remove(job.id)
    return len(ids)


@pytest.fixture
def run_until(clock, drain_forward, quick_drain, scheduled):
    """Drain (with a real worker), then jump the clock to each scheduled retry and run what is due,
    up to ``clock.t + span``."""

    def run(span: float) -> None:
        end = clock.t + span
        drain_forward()
        while True:
            due = next_scheduled(scheduled)
            if due is None or due > end:
                return
            clock.t = max(clock.t, due)
            release_due(scheduled, clock.t)
            quick_drain()

    return run
