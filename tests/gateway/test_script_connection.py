"""The publisher on its own connection (``gateway/script_connection.py``), as the app runs it, against the
real Redis: jobs written and read back, a flushed script cache, a killed connection, a hung Redis (an
error reply: ``test_publisher.py``, on both clients)."""

from __future__ import annotations

import asyncio
import time

import redis

from tests.gateway.test_publisher import event, job_events, jobs, with_publisher
from trackgate.gateway.errors import Unavailable
from trackgate.gateway.publisher import Publisher
from trackgate.gateway.script_connection import ScriptConnection


def _ids(rdb: redis.Redis) -> list[str]:
    return sorted(e.message_id for job in jobs(rdb) for e in job_events(job))


def test_grouped_jobs_are_written_and_read_back(redis_url, rdb):
    async def scenario(publisher: Publisher):
        await asyncio.gather(*(publisher.publish([event(f"m-{i}")]) for i in range(100)))
        await publisher.publish([event("alone")])

    with_publisher(redis_url, scenario, script=True)
    assert 2 <= len(jobs(rdb)) < 20
    assert _ids(rdb) == sorted([*(f"m-{i}" for i in range(100)), "alone"])


def test_a_flushed_script_cache_and_a_killed_connection_cost_no_request(redis_url, rdb):
    async def scenario(publisher: Publisher):
        await publisher.publish([event("first")])
        await asyncio.to_thread(rdb.script_flush)  # NOSCRIPT: EVAL loads it again
        await publisher.publish([event("second")])
        connection = publisher._client
        assert isinstance(connection, ScriptConnection)
        own_id = await connection._call("CLIENT", "ID")
        await asyncio.to_thread(rdb.client_kill_filter, _id=own_id)  # only its connection: as a restart
        await publisher.publish([event("third")])

    with_publisher(redis_url, scenario, script=True)
    assert _ids(rdb) == ["first", "second", "third"]


def test_a_hung_redis_fails_start_up_reads_and_writes_within_the_timeout(silent_redis):
    async def scenario(publisher: Publisher):
        return await asyncio.gather(
            *(publisher.publish([event(f"m-{i}")]) for i in range(10)), return_exceptions=True
        )

    started = time.perf_counter()
    results = with_publisher(silent_redis, scenario, script=True, timeout=0.5)
    assert all(isinstance(r, Unavailable) for r in results), results
    assert time.perf_counter() - started < 5
