"""kill -9 of a worker at each point of a job's life: every acknowledged event is stored, once, soon.

A worker that kills itself at a named point (``worker_proc.py``) takes the first job; a healthy worker
started right after it has to finish everything. ``TRACKGATE_FAULTS_OLD=1`` runs both as trackgate
ran them before the reliable dequeue, and these tests then fail: after_pop and after_register lose the
job for good, the others leave it waiting ~10 minutes.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.worker_proc import POINTS

STORED_WITHIN = 60.0
"""The promise: every acknowledged event stored within this many seconds of the kill."""
RERUN_WITHIN = 30.0
"""A killed worker's job runs again within this (the reliable worker's figure is ~ALIVE_TTL + 1 s)."""


CASES = [(point, "persist,forward") for point in POINTS] + [("after_pop", "persist"), ("in_store", "persist")]
"""Every point with both queues (as the README runs ``trackgate worker``), and the persist queue alone
(as compose runs it: RQ's own single-queue path, BLMOVE into its intermediate list, was already
recovered, but only after a minute and a maintenance round)."""


@pytest.mark.parametrize(("point", "queues"), CASES)
def test_kill_at_each_point_loses_and_doubles_nothing(faults, gateway, point, queues):
    crasher = faults.worker(point, queues)
    faults.wait_registered(1)
    faults.send(gateway, n_requests=5)
    assert len(faults.sent) == 50
    assert crasher.wait(timeout=30) == -signal.SIGKILL
    killed_at = time.monotonic()
    faults.worker(queues=queues)
    took = faults.wait_stored(STORED_WITHIN)
    rows, distinct = faults.counts()
    assert took is not None, f"{point}: {len(faults.sent) - distinct} of {len(faults.sent)} events not stored"
    assert rows == distinct == len(faults.sent)
    stored_after = time.monotonic() - killed_at
    # the killed job ran again to its end (its fan-out too, even where its rows had been committed)
    done_after = faults.wait_all_jobs_done(RERUN_WITHIN, since=killed_at)
    assert done_after is not None, (
        f"{point}: the killed worker's job did not run again within {RERUN_WITHIN}s"
    )
    print(f"fault={point} queues={queues} stored_after={stored_after:.1f}s jobs_done_after={done_after:.1f}s")
    assert faults.counts() == (len(faults.sent), len(faults.sent))  # the re-run stored nothing twice
    assert faults.rdb.zcard("rq:failed:trackgate-persist") == 0
    # every stored event reached the profile once: none lost with the killed applier, none applied twice
    assert faults.wait_profiles_applied(STORED_WITHIN) == {"USD": len(faults.sent)}


@pytest.mark.skipif(os.environ.get("TRACKGATE_FAULTS_OLD") == "1", reason="the old worker has no keeper")
def test_a_killed_workers_scheduled_retry_is_taken_over(faults, gateway):
    """A retry scheduled for later (PostgreSQL refused the first attempt) runs although the worker that
    held the scheduler lock was killed: another worker's keeper takes the lock over."""
    first = faults.worker()
    faults.wait_registered(1)
    deadline = time.monotonic() + 10
    while not faults.rdb.get("rq:scheduler-lock:trackgate-persist"):
        assert time.monotonic() < deadline, "the keeper took no scheduler lock"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    # a job that is due in 3 s, in the scheduled registry, as RQ's retry puts it there
    from datetime import UTC, datetime, timedelta

    from rq import Queue

    from trackgate.schemas.jobs import PERSIST_QUEUE, MsgspecJSONSerializer

    faults.send(gateway, n_requests=1)
    queue = Queue(PERSIST_QUEUE, connection=faults.rdb, serializer=MsgspecJSONSerializer)
    job_id = faults.rdb.lpop(queue.key)
    assert job_id is not None
    job = queue.fetch_job(job_id.decode())
    assert job is not None
    queue.schedule_job(job, datetime.now(UTC) + timedelta(seconds=3))
    faults.worker()
    took = faults.wait_stored(30)
    assert took is not None, "the scheduled retry never ran"
