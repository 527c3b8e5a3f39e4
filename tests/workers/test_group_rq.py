"""A group's RQ bookkeeping (``workers/reliable.py``: the take, prepare and finish scripts) leaves Redis
as RQ's own one-job path leaves it: while the jobs run, and after. Real worker and Redis, in-process,
with plain test functions (no database)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from redis.connection import PythonRespSerializer
from rq import Callback, Queue, Retry
from rq.job import Job

from trackgate.schemas.jobs import MsgspecJSONSerializer
from trackgate.workers.packed_job import PackedJob
from trackgate.workers.reliable import Grouping, ReliableWorker, processing_key

FUNC = f"{__name__}.observed"
SEEN: dict[str, dict] = {}
"""Per job id, what Redis held about the job while it ran."""
RDB: list[redis.Redis] = []
WORKER: list[str] = []


def observed(job_id: str) -> None:
    """The job function run alone, by RQ: notes what Redis holds about its job while it runs."""
    SEEN[job_id] = snapshot(RDB[0], job_id, WORKER[0])


def observe_group(jobs: list[Job]) -> None:
    """The grouping's one call for several jobs: notes the same, for each job, while they run."""
    for job in jobs:
        observed(job.args[0])


def _norm(value: Any, job_id: str, worker: str) -> Any:
    """A value with the job's and the worker's names and every time made comparable."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    text = text.replace(job_id, "JOB").replace(worker, "WORKER")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "TIME", text)
    text = re.sub(r"^\d{9,}(\.\d+)?$", "TIME", text)  # a timestamp (execution hashes, stream entries)
    return re.sub(r"\b[0-9a-f]{32}\b", "EXEC", text)  # an execution id


def _ttl(rdb: Any, key: bytes) -> int:
    ttl = int(rdb.ttl(key))
    return ttl if ttl < 0 else round(ttl, -1)  # a few seconds apart between two runs


def snapshot(rdb: Any, job_id: str, worker: str) -> dict:
    """Everything Redis holds that names the job: its keys (type, TTL, content) and its entries in
    other keys (registries, the worker's sets and lists), with names and times normalized."""
    out: dict = {}
    for key in sorted(rdb.scan_iter(count=1000)):
        name = _norm(key, job_id, worker)
        kind = rdb.type(key).decode()
        own = job_id.encode() in key
        if kind == "hash":
            fields = rdb.hgetall(key)
            if own:
                out[name] = (
                    kind,
                    _ttl(rdb, key),
                    sorted(
                        (_norm(k, job_id, worker), "DATA" if k == b"data" and v else _norm(v, job_id, worker))
                        for k, v in fields.items()  # (the data names the job, compressed)
                    ),
                )
            elif key == f"rq:worker:{worker}".encode():
                out[name] = (kind, (fields.get(b"state") or b"").decode())
        elif kind == "zset":
            members = [
                (_norm(m, job_id, worker), round(score - time.time(), -1))
                for m, score in rdb.zrange(key, 0, -1, withscores=True)
                if own or job_id.encode() in m
            ]
            if members:
                out[name] = (kind, _ttl(rdb, key) if own else None, members)
        elif kind in ("set", "list"):
            items = rdb.smembers(key) if kind == "set" else rdb.lrange(key, 0, -1)
            mine = sorted(_norm(m, job_id, worker) for m in items if job_id.encode() in m)
            if mine:
                out[name] = (kind, mine)
        elif kind == "stream" and own:
            entries = [
                sorted((_norm(k, job_id, worker), _norm(v, job_id, worker)) for k, v in e.items())
                for _, e in rdb.xrange(key)
            ]
            out[name] = (kind, _ttl(rdb, key), entries)
    return out


@pytest.fixture
def queue(rdb) -> Iterator[Queue]:
    SEEN.clear()
    RDB[:] = [rdb]
    yield Queue("q", connection=rdb, serializer=MsgspecJSONSerializer)
    RDB.clear()


def grouping(max_jobs: int, run=observe_group) -> Grouping:
    return Grouping(FUNC, run=run, size=lambda job: 1, max_jobs=max_jobs, max_size=1000)


def drain(rdb: redis.Redis, queue: Queue, max_jobs: int, run=observe_group) -> ReliableWorker:
    worker = ReliableWorker(
        [queue], connection=rdb, serializer=MsgspecJSONSerializer, grouping=grouping(max_jobs, run)
    )
    WORKER[:] = [worker.name]
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    assert rdb.llen(processing_key(worker.name)) == 0
    return worker


def enqueue_jobs(queue: Queue, prefix: str, n: int) -> list[str]:
    """``n`` jobs; every third keeps its result (RQ's result, finished registry: the recorded words
    then include the job's zlib data, which the replay script takes as ARGV instead of JSON)."""
    ids = [f"{prefix}-{i}" for i in range(n)]
    for i, job_id in enumerate(ids):
        queue.enqueue(
            FUNC,
            job_id,
            job_id=job_id,
            result_ttl=500 if i % 3 == 2 else 0,
            retry=Retry(max=3, interval=[1, 5, 15]),
            description=f"job {job_id}",
        )
    return ids


def test_while_a_group_runs_redis_holds_what_rqs_own_run_of_each_job_holds(rdb, queue):
    alone = enqueue_jobs(queue, "alone", 4)
    drain(rdb, queue, max_jobs=1)  # RQ's own path, one job at a time
    grouped = enqueue_jobs(queue, "grouped", 4)
    drain(rdb, queue, max_jobs=8)
    assert sorted(SEEN) == sorted(alone + grouped)
    # each job of the group: started, its execution, the registries and the worker's sets, as RQ's
    # own run of a job shows them (a job alone: the same id in the group at the same position)
    for one, other in zip(alone, grouped, strict=True):
        assert SEEN[other] == SEEN[one]
    job_hash = SEEN[grouped[1]]["rq:job:JOB"]
    assert ("status", "started") in job_hash[2] and ("worker_name", "WORKER") in job_hash[2]
    assert "rq:wip:q" in SEEN[grouped[1]]  # the started registry (what `rq info` counts)


def test_after_a_group_redis_holds_what_rqs_own_runs_leave(rdb, queue):
    alone = enqueue_jobs(queue, "alone", 6)
    worker = drain(rdb, queue, max_jobs=1)
    after_alone = {job_id: snapshot(rdb, job_id, worker.name) for job_id in alone}
    stats_alone = rdb.hgetall(f"rq:worker:{worker.name}")
    grouped = enqueue_jobs(queue, "grouped", 6)
    worker = drain(rdb, queue, max_jobs=8)
    for one, other in zip(alone, grouped, strict=True):
        assert snapshot(rdb, other, worker.name) == after_alone[one]
    # a kept result as RQ keeps it (its hash, its result, the finished registry); the others deleted
    kept = snapshot(rdb, grouped[2], worker.name)
    assert ("status", "finished") in kept["rq:job:JOB"][2]
    assert "rq:results:JOB" in kept and "rq:finished:q" in kept
    assert [key for key in snapshot(rdb, grouped[1], worker.name) if "JOB" in key] == []
    stats = rdb.hgetall(f"rq:worker:{worker.name}")
    assert stats[b"successful_job_count"] == stats_alone[b"successful_job_count"] == b"6"
    assert stats[b"state"] == stats_alone[b"state"]
    assert queue.started_job_registry.count == 0 and queue.finished_job_registry.count == 4


def test_a_job_given_a_dependent_while_its_group_ran_enqueues_it_as_rq_does(rdb, queue):
    """A dependent added to a grouped job (not the first: RQ finishes that one itself) while the group
    runs: the finish script leaves that job to RQ's own success path, which enqueues the dependent."""
    ids = enqueue_jobs(queue, "g", 3)

    def add_dependent(jobs: list[Job]) -> None:
        queue.enqueue(FUNC, "dependent", job_id="dependent", depends_on=ids[1], result_ttl=0)
        observe_group(jobs)

    drain(rdb, queue, max_jobs=8, run=add_dependent)
    assert "dependent" in SEEN  # enqueued by its dependency's success, then run by the burst worker
    assert not rdb.exists(f"rq:job:{ids[1]}") and queue.count == 0


@contextmanager
def commands_sent() -> Iterator[list[int]]:
    """Counts the Redis commands this thread packs (every command, alone or in a pipeline)."""
    count = [0]
    me = threading.get_ident()
    pack = PythonRespSerializer.pack

    def counted(self, *args):
        if threading.get_ident() == me:
            count[0] += 1
        return pack(self, *args)

    PythonRespSerializer.pack = counted  # type: ignore[method-assign]
    try:
        yield count
    finally:
        PythonRespSerializer.pack = pack  # type: ignore[method-assign]


@pytest.mark.parametrize("max_jobs", [8, 32])
def test_a_groups_bookkeeping_sends_as_many_commands_whatever_its_number_of_jobs(rdb, queue, max_jobs):
    """RQ's per-job commands (executions, registries, statuses, stats, deletes) go as the words of
    one script a step: a group of 30 jobs sends no more commands than a group of 3."""
    sent = {}
    for n in (3, 30):
        rdb.flushdb()
        for i in range(n):
            queue.enqueue(FUNC, f"n{n}-{i}", job_id=f"n{n}-{i}", result_ttl=0)
        with commands_sent() as count:
            drain(rdb, queue, max_jobs=max_jobs, run=lambda jobs: None)
        sent[n] = count[0]
    groups = -(-30 // max_jobs)  # 30 jobs take that many groups
    assert sent[30] <= groups * sent[3], sent


def test_a_taken_job_is_read_as_rqs_fetch_reads_it(rdb, queue):
    """The take script leaves out a hash's empty fields: every attribute RQ reads comes out the same."""
    first = queue.enqueue(FUNC, "first", job_id="first", result_ttl=0)
    queue.enqueue(
        FUNC,
        "rich",
        job_id="rich",
        result_ttl=30,
        failure_ttl=60,
        ttl=600,
        job_timeout=90,
        retry=Retry(max=2, interval=[3, 9]),
        meta={"k": "v"},
        description="rich job",
        on_success=Callback(observe_group),
    )
    queue.enqueue(FUNC, "plain", job_id="plain")
    worker = ReliableWorker([queue], connection=rdb, serializer=MsgspecJSONSerializer, grouping=grouping(8))
    dequeued = worker.queue_class.dequeue_any(
        [queue], None, connection=rdb, job_class=PackedJob, serializer=MsgspecJSONSerializer
    )
    assert dequeued is not None and dequeued[0].id == first.id
    assert worker.grouping is not None
    group, others = worker._take_group(dequeued[0], queue, worker.grouping)  # noqa: SLF001
    assert [job.id for job in group] == ["first", "rich", "plain"] and others == []
    for job in group[1:]:
        fetched = Job.fetch(job.id, connection=rdb, serializer=MsgspecJSONSerializer)
        assert job.to_dict() == fetched.to_dict()
        for name in ("created_at", "enqueued_at", "timeout", "ttl", "result_ttl", "failure_ttl", "meta"):
            assert getattr(job, name) == getattr(fetched, name), name
        assert (job.retries_left, job.retry_intervals) == (fetched.retries_left, fetched.retry_intervals)
        assert job._success_callback_name == fetched._success_callback_name  # noqa: SLF001
        assert job.get_status(refresh=False) == fetched.get_status(refresh=False)
