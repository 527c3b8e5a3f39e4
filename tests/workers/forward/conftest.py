"""Fixtures for the forwarding tests: scheduled retries run at the injected clock's time (the secret key,
the clock, ``fsettings``, ``add`` and ``drain_forward`` are in tests/conftest.py)."""

from __future__ import annotations

import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry

from tests.helpers import next_scheduled, release_due
from trackgate.schemas.destinations import FORWARD_QUEUE
from trackgate.schemas.jobs import MsgspecJSONSerializer


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
