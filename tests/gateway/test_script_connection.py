"""The publisher on its own connection (``gateway/script_connection.py``), as the app runs it, against the
real Redis: jobs written and read back, a flushed script cache, a killed connection, a hung Redis (an
error reply: ``test_publisher.py``, on both clients)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hiredis
import redis

from tests.gateway.test_publisher import event, job_events, jobs, with_publisher
from trackgate.gateway.errors import Unavailable
from trackgate.gateway.publisher import FLUSH_DEADLINE_RESOLUTION, Publisher, _Group
from trackgate.gateway.script_connection import ScriptConnection
from trackgate.schemas.jobs import PERSIST_QUEUE


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
        async with asyncio.timeout(5):  # a deadline that never fired would hang here, not pass
            started = time.perf_counter()
            results = await asyncio.gather(
                *(publisher.publish([event(f"m-{i}")]) for i in range(10)), return_exceptions=True
            )
            return results, time.perf_counter() - started

    started = time.perf_counter()
    results, waited = with_publisher(silent_redis, scenario, script=True, timeout=0.5)
    assert all(isinstance(r, Unavailable) for r in results), results
    # the flush's wait ends at its timeout, at most one resolution of the coarse timer late
    assert 0.5 <= waited < 0.5 + FLUSH_DEADLINE_RESOLUTION + 0.25, waited
    assert time.perf_counter() - started < 5


def test_its_packing_writes_what_redis_py_would_and_refuses_what_redis_py_refuses(redis_url):
    """The command is packed by hiredis, not redis-py: the same bytes as redis-py's own (pure Python)
    packing for the words a flush holds (str, bytes, int, RQ's status enum), and a value Redis has no
    word for is redis-py's ``DataError``, with the connection still usable after it."""
    words: tuple[Any, ...] = ("EVAL", "return ARGV", 0, 1_700_000_000_123, "héllo", b"\x78\x01\x00raw", -3)
    connection = ScriptConnection(redis_url)
    assert connection._conn.socket_timeout is None  # the publisher's deadline bounds a command
    python_packing = connection._conn._pack_command_python  # redis-py's, without hiredis
    assert b"".join(python_packing(*words)) == hiredis.pack_command(words)

    async def flush_words(publisher: Publisher) -> tuple[Any, ...]:  # what a flush sends, RQ's enum and all
        commands = publisher.record([_Group.of([event("a"), event("b")])])
        return ("EVALSHA", "0" * 40, 0, *publisher.script_args(commands, 1_700_000_000_000.0))

    flush = with_publisher(redis_url, flush_words, script=True)
    assert b"".join(python_packing(*flush)) == hiredis.pack_command(flush)

    async def scenario():
        try:
            echoed = await connection.eval("return ARGV", 0, "héllo", b"\x00\xff", 42)
            try:
                await connection.eval("return ARGV", 0, None)
            except redis.DataError as exc:
                refused = exc
            after = await connection.eval("return ARGV", 0, "still")
            return echoed, refused, after
        finally:
            await connection.aclose()

    echoed, refused, after = asyncio.run(scenario())
    assert echoed == ["héllo".encode(), b"\x00\xff", b"42"]
    assert "NoneType" in str(refused)
    assert after == [b"still"]


def _reply_lost_once(connection: ScriptConnection, hold: float = 0.0) -> None:
    """The next command runs in Redis, but the connection fails before its reply is read (the reply is
    read and dropped, ``hold`` seconds pass, then ``ConnectionError``); the commands after it are
    untouched."""
    conn = connection._conn
    real = conn.read_response
    lost: list[bool] = []

    async def read_response(*args: Any, **kwargs: Any) -> Any:
        if lost:
            return await real(*args, **kwargs)
        lost.append(True)
        await real(*args, **kwargs)
        await asyncio.sleep(hold)
        raise redis.ConnectionError("Connection reset by peer (the test drops the reply)")

    conn.read_response = read_response  # type: ignore[method-assign]


def test_a_flush_whose_reply_was_lost_is_sent_again_and_written_once(redis_url, rdb):
    async def scenario(publisher: Publisher):
        assert isinstance(publisher._client, ScriptConnection)
        await publisher.publish([event("before")])  # connected: a failure now is sent again
        _reply_lost_once(publisher._client)
        await publisher.publish([event("once")])

    with_publisher(redis_url, scenario, script=True)
    assert rdb.llen(f"rq:queue:{PERSIST_QUEUE}") == 2  # the second flush sent twice, queued once
    assert _ids(rdb) == ["before", "once"]


def test_a_flush_whose_reply_was_lost_until_past_its_deadline_is_answered_2xx(redis_url, rdb):
    """The second run comes after the script's deadline (0.75 s of a 1 s timeout): the first run's jobs
    are in Redis, so the request is acknowledged, not answered 503 (its client would send it again)."""

    async def scenario(publisher: Publisher):
        assert isinstance(publisher._client, ScriptConnection)
        await publisher.publish([event("before")])
        _reply_lost_once(publisher._client, hold=0.85)
        await publisher.publish([event("landed")])

    with_publisher(redis_url, scenario, script=True, timeout=1.0)
    assert _ids(rdb) == ["before", "landed"]
