"""The reliable dequeue and the recovery of a dead worker's jobs, on real Redis, in-process."""

from __future__ import annotations

import os
import signal
import time

import pytest
from rq import Queue, Retry
from rq.job import JobStatus

from trackgate.schemas.jobs import MsgspecJSONSerializer
from trackgate.workers.reliable import (
    PUBSUB_WAKE,
    UNREADABLE_KEY,
    WORKERS_KEY,
    ReliableWorker,
    alive_key,
    dead_workers,
    processing_key,
    queue_class_for,
    recover_worker,
)

CALLS: list[str] = []


def note(text: str) -> None:
    CALLS.append(text)


def boom() -> None:
    raise RuntimeError("boom")


@pytest.fixture
def queues(rdb):
    CALLS.clear()
    return [Queue(n, connection=rdb, serializer=MsgspecJSONSerializer) for n in ("hi", "lo")]


def enqueue(queue: Queue, func, *args, retry: Retry | None = None):
    return queue.enqueue(func, *args, retry=retry, result_ttl=0)


def test_dequeue_moves_the_job_into_the_workers_list_in_queue_order(rdb, queues):
    hi, lo = queues
    low = enqueue(lo, note, "lo")
    high = enqueue(hi, note, "hi")
    cls = queue_class_for("w1")
    found = cls.dequeue_any(queues, timeout=None, connection=rdb, serializer=MsgspecJSONSerializer)
    assert found is not None
    job, queue = found
    assert (job.id, queue.name) == (high.id, "hi")
    assert rdb.lrange(processing_key("w1"), 0, -1) == [high.id.encode()]
    assert rdb.llen(hi.key) == 0 and rdb.llen(lo.key) == 1
    found = cls.dequeue_any(queues, timeout=1, connection=rdb, serializer=MsgspecJSONSerializer)
    assert found is not None
    job, queue = found
    assert (job.id, queue.name) == (low.id, "lo")
    assert cls.dequeue_any(queues, timeout=None, connection=rdb, serializer=MsgspecJSONSerializer) is None


def test_a_dequeued_id_whose_job_is_gone_is_dropped_from_the_list(rdb, queues):
    hi, _ = queues
    rdb.rpush(hi.key, "no-such-job")
    cls = queue_class_for("w1")
    assert cls.dequeue_any(queues, timeout=None, connection=rdb, serializer=MsgspecJSONSerializer) is None
    assert rdb.llen(processing_key("w1")) == 0


def test_an_unreadable_job_is_set_aside_not_lost_and_not_retried_forever(rdb, queues):
    hi, _ = queues
    job = enqueue(hi, note, "x")
    rdb.hset(job.key, "created_at", "garbage")  # RQ cannot even load it
    cls = queue_class_for("w1")
    assert cls.dequeue_any(queues, timeout=None, connection=rdb, serializer=MsgspecJSONSerializer) is None
    assert rdb.lrange(UNREADABLE_KEY, 0, -1) == [job.id.encode()]
    assert rdb.llen(processing_key("w1")) == 0


def test_a_job_leaves_the_list_when_it_ends_success_or_failure(rdb, queues):
    hi, _ = queues
    enqueue(hi, note, "ok")
    failing = enqueue(hi, boom, retry=Retry(max=1, interval=60))
    worker = ReliableWorker(queues, connection=rdb, serializer=MsgspecJSONSerializer)
    worker.work(burst=True, logging_level="ERROR")
    assert CALLS == ["ok"]
    assert rdb.llen(worker.processing_key) == 0
    assert failing.get_status() == JobStatus.SCHEDULED  # retried later, by RQ
    assert not rdb.exists(alive_key(worker.name))  # a clean stop says so at once
    assert worker.name.encode() not in rdb.smembers(WORKERS_KEY)


def dead_worker_holding(rdb, job, status: JobStatus, name: str = "dead") -> str:
    rdb.lrem(f"rq:queue:{job.origin}", 1, job.id)
    rdb.rpush(processing_key(name), job.id)
    rdb.sadd(WORKERS_KEY, name)
    job.set_status(status)
    return name


def test_only_workers_without_a_sign_of_life_are_dead(rdb):
    rdb.sadd(WORKERS_KEY, "a", "b")
    rdb.set(alive_key("a"), "1", ex=10)
    assert dead_workers(rdb) == ["b"]
    assert dead_workers(rdb, exclude="b") == []


def test_a_popped_job_that_never_started_goes_back_to_the_front_untouched(rdb, queues):
    hi, _ = queues
    other = enqueue(hi, note, "other")
    job = enqueue(hi, note, "x", retry=Retry(max=2))
    name = dead_worker_holding(rdb, job, JobStatus.QUEUED)
    assert recover_worker(rdb, name, serializer=MsgspecJSONSerializer) == 1
    assert rdb.lrange(hi.key, 0, -1) == [job.id.encode(), other.id.encode()]
    assert hi.fetch_job(job.id).retries_left == 2
    assert rdb.llen(processing_key(name)) == 0
    assert name.encode() not in rdb.smembers(WORKERS_KEY)


def test_an_abandoned_started_job_is_retried_while_its_retries_last(rdb, queues):
    hi, _ = queues
    job = enqueue(hi, note, "x", retry=Retry(max=1))
    name = dead_worker_holding(rdb, job, JobStatus.STARTED)
    rdb.zadd(hi.started_job_registry.key, {f"{job.id}:exec1": 1e12})
    assert recover_worker(rdb, name, serializer=MsgspecJSONSerializer) == 1
    again = hi.fetch_job(job.id)
    assert again.get_status() == JobStatus.QUEUED and again.retries_left == 0
    assert rdb.lrange(hi.key, 0, -1) == [job.id.encode()]
    assert rdb.zcard(hi.started_job_registry.key) == 0  # RQ's cleanup will not act on it again
    # abandoned a second time: no retry left, so RQ's failed registry, as RQ itself would do
    dead_worker_holding(rdb, again, JobStatus.STARTED)
    assert recover_worker(rdb, name, serializer=MsgspecJSONSerializer) == 0
    assert hi.fetch_job(job.id).get_status() == JobStatus.FAILED
    assert job.id in hi.failed_job_registry.get_job_ids()
    assert rdb.llen(hi.key) == 0


@pytest.mark.parametrize("where", ["queued", "finished", "scheduled", "other_worker"])
def test_a_job_already_elsewhere_is_not_put_back_twice(rdb, queues, where):
    hi, _ = queues
    job = enqueue(hi, note, "x", retry=Retry(max=3))
    name = dead_worker_holding(rdb, job, JobStatus.QUEUED)
    if where == "queued":  # e.g. RQ's own cleanup already retried it
        rdb.rpush(hi.key, job.id)
    elif where == "finished":
        job.set_status(JobStatus.FINISHED)
    elif where == "scheduled":
        job.set_status(JobStatus.SCHEDULED)
    else:
        rdb.rpush(processing_key("alive"), job.id)
        rdb.sadd(WORKERS_KEY, "alive")
    assert recover_worker(rdb, name, serializer=MsgspecJSONSerializer) == 0
    assert rdb.llen(hi.key) == (1 if where == "queued" else 0)
    assert rdb.llen(processing_key(name)) == 0


def test_a_stopping_worker_does_not_wait_on_its_command_channel(rdb, queues):
    """redis-py 8.2 joins RQ's pubsub thread without a timeout, and RQ's thread then sleeps up to 60 s:
    every burst drain and shutdown could hang a minute. Ours wakes every PUBSUB_WAKE seconds."""
    worker = ReliableWorker(queues, connection=rdb, serializer=MsgspecJSONSerializer)
    worker.subscribe()
    assert worker.pubsub is not None
    worker.pubsub.unsubscribe()
    time.sleep(0.3)  # the thread reads the confirmation, then waits in its next read
    started = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - started < 1 + PUBSUB_WAKE


def test_a_stop_signal_while_the_worker_stops_is_noted_not_raised(rdb, queues, monkeypatch):
    """A SIGTERM that came as the worker was already tearing down escaped as StopRequested (a
    traceback at exit) and left its registration behind. Now it is noted, and teardown finishes."""
    worker = ReliableWorker(queues, connection=rdb, serializer=MsgspecJSONSerializer)
    worker.register_birth()
    worker.subscribe()
    unsubscribe = worker.unsubscribe

    def signalled_then_unsubscribe() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode: inside teardown
        unsubscribe()

    monkeypatch.setattr(worker, "unsubscribe", signalled_then_unsubscribe)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        worker._install_signal_handlers()  # what work() does first
        worker.teardown()
        assert signal.getsignal(signal.SIGTERM) == worker.request_force_stop
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
    assert not rdb.sismember(ReliableWorker.redis_workers_keys, worker.key)
    assert worker.pubsub_thread is not None and not worker.pubsub_thread.is_alive()
