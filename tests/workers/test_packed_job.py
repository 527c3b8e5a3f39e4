"""The workers' job class (``workers/packed_job.py``): job data inflated when first read (ISA-L), jobs
weighed by their description; every job format a gateway has written is read and stored.
Real worker, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import zlib

import msgspec
import pytest
import redis.asyncio as aioredis
from rq import Queue
from rq.job import Job

from tests.helpers import make_event
from trackgate.gateway.publisher import BatchJob, Publisher
from trackgate.schemas.jobs import (
    PERSIST_FUNC,
    PERSIST_QUEUE,
    MsgspecJSONSerializer,
    PersistBatch,
    RefusedItem,
    described_size,
)
from trackgate.workers import jobs, packed_job
from trackgate.workers.packed_job import PackedJob, inflate
from trackgate.workers.worker import build_worker


def batch(batch_id: str, n: int) -> PersistBatch:
    return PersistBatch(batch_id=batch_id, events=[make_event(f"{batch_id}-{i}") for i in range(n)])


def queued_ids(rdb) -> list[str]:
    return [i.decode() for i in rdb.lrange(f"rq:queue:{PERSIST_QUEUE}", 0, -1)]


def fetch(rdb, job_id: str) -> PackedJob:
    job = PackedJob.fetch(job_id, connection=rdb, serializer=MsgspecJSONSerializer)
    assert isinstance(job, PackedJob)
    return job


def work(settings) -> None:
    build_worker(settings).work(burst=True, with_scheduler=False, logging_level="WARNING")


def stored_ids(db) -> list[str]:
    return sorted(r[0] for r in db.execute("SELECT message_id FROM events").fetchall())


def test_inflate_reads_zlib_at_any_level_and_takes_anything_else_as_is():
    data = msgspec.json.encode([PERSIST_FUNC, None, [batch("z", 3)], {}])
    for level in range(1, 10):
        assert inflate(zlib.compress(data, level)) == data
    assert inflate(data) == data  # TRACKGATE_JOB_COMPRESS_LEVEL=0: plain JSON


@pytest.mark.parametrize(
    "description, size",
    [
        ("persist_batch 0190-ab n_events=64 n_refused=2", 66),  # the publisher's
        ("persist_batch 0190-ab n_events=500 (replay file)", 500),  # the file replay's
        ("trackgate.workers.jobs.persist_batch(PersistBatch(batch_id='x', ...))", None),  # RQ's default
        (None, None),
    ],
)
def test_a_persist_jobs_size_is_read_from_its_description(description, size):
    assert described_size(description) == size


def test_a_fetched_job_is_inflated_only_when_its_data_is_read(rdb):
    queue = Queue(PERSIST_QUEUE, connection=rdb, serializer=MsgspecJSONSerializer)
    queue.enqueue(PERSIST_FUNC, batch("lazy", 2), job_id="lazy", result_ttl=0)
    job = fetch(rdb, "lazy")
    assert not job.inflated and job.origin == PERSIST_QUEUE  # the rest of the hash as RQ reads it
    assert job.func_name == PERSIST_FUNC and job.inflated
    assert [e.message_id for e in job.args[0].events] == ["lazy-0", "lazy-1"]
    job.save()  # RQ writes it back (a retry): the data inflated, compressed again, readable by RQ's Job
    assert Job.fetch("lazy", connection=rdb, serializer=MsgspecJSONSerializer).args[0].batch_id == "lazy"


def publish(redis_url: str, requests: list[list], refused: list[RefusedItem] | None = None) -> None:
    async def main() -> None:
        client = aioredis.from_url(redis_url)
        publisher = Publisher(client, timeout=5.0)
        await publisher.start()
        try:
            await asyncio.gather(*(publisher.publish(events) for events in requests))
        finally:
            await publisher.stop()
            await client.aclose()

    asyncio.run(main())


def test_the_publishers_jobs_are_weighed_without_inflating_them(redis_url, rdb):
    publish(redis_url, [[make_event(f"w{i}-{j}") for j in range(3)] for i in range(4)])
    fetched = [fetch(rdb, job_id) for job_id in queued_ids(rdb)]
    assert sum(jobs.job_size(job) for job in fetched) == 12
    assert not any(job.inflated for job in fetched)  # weighed from the description alone
    assert sum(jobs.batch_size(job.args[0]) for job in fetched) == 12  # and it agrees with the batch


@pytest.mark.parametrize("writer", ["rq", "batch-job-level-1", "plain", "publisher"])
def test_a_job_written_by_any_gateway_is_stored(settings, db, rdb, redis_url, writer):
    """Jobs as gateways wrote them before this worker: RQ's own enqueue (zlib level 6, RQ's description,
    size read from the batch), the publisher's RQ job class (zlib level 1), plain JSON (level 0), and
    the current publisher's template (zlib level 1, the size in the description)."""
    if writer == "publisher":
        publish(redis_url, [[make_event(f"{writer}-{i}")] for i in range(3)])
    else:
        level = {"rq": None, "batch-job-level-1": 1, "plain": 0}[writer]
        job_class = Job if level is None else type("OldJob", (BatchJob,), {"compress_level": level})
        queue = Queue(PERSIST_QUEUE, connection=rdb, serializer=MsgspecJSONSerializer, job_class=job_class)
        old = PersistBatch(batch_id=writer, events=[make_event(f"{writer}-{i}") for i in range(3)])
        queue.enqueue(PERSIST_FUNC, old, job_id=writer, result_ttl=0)
        raw = rdb.hget(f"rq:job:{writer}", "data")
        assert raw.startswith(b"[") == (level == 0)
    work(settings)
    assert stored_ids(db) == [f"{writer}-{i}" for i in range(3)]
    assert rdb.llen(f"rq:queue:{PERSIST_QUEUE}") == 0


def test_a_job_put_back_by_the_group_take_is_not_inflated(settings, db, rdb, monkeypatch):
    """The group take weighs the jobs behind the first by their descriptions: one that would take the
    group over its event cap goes back to its queue, its data never inflated nor decoded."""
    queue = Queue(PERSIST_QUEUE, connection=rdb, serializer=MsgspecJSONSerializer)
    for name, n in (("first", 10), ("big", 15), ("last", 5)):
        queue.enqueue(
            PERSIST_FUNC,
            batch(name, n),
            job_id=name,
            result_ttl=0,
            description=f"persist_batch {name} n_events={n} n_refused=0",
        )
    inflated: list[int] = []

    def counting(stored: bytes) -> bytes:
        inflated.append(len(stored))
        return inflate(stored)

    monkeypatch.setattr(packed_job, "inflate", counting)
    work(msgspec.structs.replace(settings, worker_group_jobs=4, worker_group_events=20))
    assert len(stored_ids(db)) == 30
    assert len(inflated) == 3  # each job once: "big" and "last" went back unread after "first"


def test_a_jobs_timestamps_are_read_as_rqs_str_to_date_reads_them():
    """``parse_stamp`` (``fromisoformat``) for RQ's own format, RQ's ``str_to_date`` for anything
    else: the same value, the same errors."""
    from datetime import UTC, datetime, timedelta

    from rq.utils import str_to_date, utcformat

    from trackgate.workers.packed_job import parse_stamp

    start = datetime(2026, 12, 6, 23, 59, 59, 999_999, tzinfo=UTC)
    stamps = [utcformat(start + timedelta(microseconds=7919 * i)) for i in range(500)]
    stamps += ["0001-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z", "2026-02-03T04:05:06Z"]
    for stamp in stamps:
        for value in (stamp, stamp.encode()):
            parsed = parse_stamp(value)
            assert parsed == str_to_date(value) and parsed.tzinfo == UTC
    for bad in ("2026-02-30T00:00:00.000000Z", "2026-02-03T04:05:06.0000+1Z", "2026-02-03 04:05:06.000000Z"):
        with pytest.raises(ValueError):
            str_to_date(bad)
        with pytest.raises(ValueError):
            parse_stamp(bad)
