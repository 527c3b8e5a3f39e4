"""The worker's multi-job drain (``workers/reliable.py`` ``Grouping``, ``pipeline.persist_group``):
queued persist jobs stored several to a transaction, each acknowledged only after the commit, and a
failing job among others isolated by running each job alone. Real worker, PostgreSQL and Redis."""

from __future__ import annotations

import msgspec
import psycopg
import psycopg_pool
import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from tests.helpers import make_event, rows
from trackgate.schemas.jobs import PERSIST_FUNC, PERSIST_QUEUE, MsgspecJSONSerializer, PersistBatch
from trackgate.workers.reliable import processing_key
from trackgate.workers.worker import build_worker, unreachable


@pytest.fixture
def queue(rdb) -> Queue:
    return Queue(PERSIST_QUEUE, connection=rdb, serializer=MsgspecJSONSerializer)


def enqueue(queue: Queue, batch_id: str, n: int, **fields) -> Job:
    events = [make_event(f"{batch_id}-{i}", **fields) for i in range(n)]
    return queue.enqueue(
        PERSIST_FUNC, PersistBatch(batch_id=batch_id, events=events), job_id=batch_id, result_ttl=0
    )


def work(settings, rdb) -> str:
    worker = build_worker(settings)
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    assert rdb.llen(processing_key(worker.name)) == 0  # every job's end recorded, none left behind
    return worker.name


def transactions(db) -> dict[str, set[str]]:
    """Per batch id, the transactions (xmin) that wrote its events."""
    found: dict[str, set[str]] = {}
    for batch_id, xmin in db.execute("SELECT batch_id, xmin::text FROM events").fetchall():
        found.setdefault(batch_id, set()).add(xmin)
    return found


def stored_ids(db) -> list[str]:
    return sorted(r[0] for r in db.execute("SELECT message_id FROM events").fetchall())


def test_queued_jobs_are_stored_in_one_transaction_and_each_job_finishes(settings, db, rdb, queue):
    jobs = [enqueue(queue, f"grouped-{i}", 3) for i in range(5)]
    work(settings, rdb)
    by_batch = transactions(db)
    assert sorted(by_batch) == [f"grouped-{i}" for i in range(5)]  # each row keeps its own batch id
    assert len(set().union(*by_batch.values())) == 1  # one transaction for all five jobs
    assert len(stored_ids(db)) == 15
    for job in jobs:  # finished: RQ deletes a job kept for 0 s only when it succeeded
        assert not rdb.exists(job.key)
    assert rdb.llen(queue.key) == 0 and FailedJobRegistry(queue=queue).count == 0
    # nothing of the jobs is left in Redis: hashes, executions, registries (as RQ's own delete leaves it)
    assert list(rdb.scan_iter("*grouped-*")) == []
    assert queue.started_job_registry.count == 0
    assert [k for k in rdb.scan_iter("rq:execution*")] == []


def test_a_group_holds_at_most_the_configured_jobs_and_events(settings, db, rdb, queue):
    for i in range(6):
        enqueue(queue, f"b{i}", 10)
    small = msgspec.structs.replace(settings, worker_group_jobs=4, worker_group_events=20)
    work(small, rdb)
    xmins = transactions(db)
    # 20 events reached after two jobs: groups of two (the event cap) rather than four (the job cap)
    assert len(set().union(*xmins.values())) == 3
    assert len(stored_ids(db)) == 60


def test_one_failing_job_among_others_fails_alone_and_the_others_are_stored_once(settings, db, rdb, queue):
    good = [enqueue(queue, f"b{i}", 2) for i in range(2)]
    # a job whose argument is no batch at all: the group's call raises before storing anything
    poison = queue.enqueue(PERSIST_FUNC, {"not": "a batch"}, job_id="poison", result_ttl=0)
    good += [enqueue(queue, f"b{i}", 2) for i in range(2, 4)]
    work(settings, rdb)
    assert stored_ids(db) == sorted(f"b{i}-{j}" for i in range(4) for j in range(2))  # once each
    by_batch = transactions(db)
    # the group failed, so each job ran alone: one transaction per job
    assert len(set().union(*by_batch.values())) == 4
    assert FailedJobRegistry(queue=queue).get_job_ids() == [poison.id]
    assert poison.get_status(refresh=True) == JobStatus.FAILED
    for job in good:
        assert not rdb.exists(job.key)


def test_an_event_postgresql_refuses_in_a_group_is_quarantined_and_its_neighbours_stored(
    settings, db, rdb, queue
):
    """The refused value fails the group's transaction (nothing of it stored); each job then runs
    alone, and the bad event's own job stores its good events and quarantines the bad one."""
    enqueue(queue, "b0", 2)
    bad = make_event("bad-1", properties={"x": "a\x00b"})  # NUL in jsonb: refused by PostgreSQL
    queue.enqueue(
        PERSIST_FUNC,
        PersistBatch(batch_id="b1", events=[make_event("b1-ok"), bad]),
        job_id="b1",
        result_ttl=0,
    )
    enqueue(queue, "b2", 2)
    work(settings, rdb)
    assert stored_ids(db) == ["b0-0", "b0-1", "b1-ok", "b2-0", "b2-1"]
    assert [(r["message_id"], r["batch_id"]) for r in rows(db)] == [("bad-1", "b1")]
    assert FailedJobRegistry(queue=queue).count == 0


def test_an_event_in_two_jobs_of_one_group_is_stored_once(settings, db, rdb, queue):
    """A retried delivery group-committed twice (same source and message id in two jobs)."""
    queue.enqueue(
        PERSIST_FUNC,
        PersistBatch(batch_id="b0", events=[make_event("m-1"), make_event("m-2")]),
        job_id="b0",
        result_ttl=0,
    )
    queue.enqueue(
        PERSIST_FUNC,
        PersistBatch(batch_id="b1", events=[make_event("m-2", id="other-id"), make_event("m-3")]),
        job_id="b1",
        result_ttl=0,
    )
    work(settings, rdb)
    assert stored_ids(db) == ["m-1", "m-2", "m-3"]
    assert len(set().union(*transactions(db).values())) == 1


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (psycopg_pool.PoolTimeout("no connection within 5 s"), True),
        (psycopg.OperationalError("connection refused"), True),  # client side: no SQLSTATE
        (psycopg.errors.AdminShutdown(), True),
        (redis.ConnectionError("refused"), True),
        (psycopg.errors.DeadlockDetected(), False),  # an OperationalError, but maybe one job's
        (psycopg.errors.OutOfMemory(), False),  # out of lock memory: smaller transactions may pass
        (psycopg.errors.UntranslatableCharacter(), False),
        (msgspec.ValidationError("not a batch"), False),
    ],
)
def test_only_an_unreachable_server_fails_a_groups_jobs_without_running_each_alone(exc, expected):
    assert unreachable(exc) is expected


def test_a_job_that_would_take_a_group_over_the_event_cap_waits_for_the_next_one(settings, db, rdb, queue):
    for i, n in enumerate((15, 10, 10, 5)):
        enqueue(queue, f"b{i}", n)
    capped = msgspec.structs.replace(settings, worker_group_jobs=4, worker_group_events=20)
    work(capped, rdb)
    per_transaction: dict[str, int] = {}
    for (xmin,) in db.execute("SELECT xmin::text FROM events").fetchall():
        per_transaction[xmin] = per_transaction.get(xmin, 0) + 1
    # 15 alone (15 + 10 > 20), then 10 + 10, then 5: never more than the cap in one transaction
    assert sorted(per_transaction.values()) == [5, 15, 20]
    assert len(stored_ids(db)) == 40


def test_a_groups_jobs_count_in_the_workers_stats(settings, db, rdb, queue):
    """RQ's worker stats (``rq info``, the dashboard): each grouped job counts as a successful job, and
    the time each ran adds to the worker's working time."""
    for i in range(5):
        enqueue(queue, f"stats-{i}", 2)
    name = work(settings, rdb)
    stats = rdb.hgetall(f"rq:worker:{name}")
    assert int(stats[b"successful_job_count"]) == 5
    assert float(stats[b"total_working_time"]) > 0
    assert len(set().union(*transactions(db).values())) == 1  # they did run as one group
