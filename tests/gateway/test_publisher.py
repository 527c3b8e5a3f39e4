"""The group-commit publisher against the real Redis: grouping, the RQ job format, failure, shutdown.

Each test runs its own event loop (``asyncio.run``) with its own asyncio Redis client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aioredis
from rq.job import Job

from tests.helpers import queued_jobs, stored
from trackgate.gateway.errors import Unavailable
from trackgate.gateway.publisher import ENCODE_AT_ONCE_EVENTS, LINGER_EVENTS, Publisher
from trackgate.gateway.script_connection import ScriptConnection
from trackgate.schemas.event import Context, Event
from trackgate.schemas.jobs import (
    PERSIST_FUNC,
    PERSIST_QUEUE,
    MsgspecJSONSerializer,
    PersistBatch,
    persist_batch_from_arg,
)

T0 = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)


def event(message_id: str) -> Event:
    return Event(
        id=f"01890000-0000-7000-8000-{abs(hash(message_id)) % 10**12:012d}",
        message_id=message_id,
        source_id="src_a",
        dialect="segment",
        dialect_version="v1",
        type="track",
        name="Signed Up",
        user_id="u1",
        properties={"plan": "pro", "n": 3},
        context=Context(ip="203.0.113.9"),
        timestamp=T0,
        original_timestamp=T0,
        received_at=T0,
        raw='{"event":"Signed Up"}',
    )


def requests_of(n: int) -> list[list[Event]]:
    """``n`` requests of one to three events each."""
    return [[event(f"r{i}-e{j}") for j in range(i % 3 + 1)] for i in range(n)]


def with_publisher(url: str, scenario: Callable[[Publisher], Awaitable], *, script: bool = False, **options):
    """Run ``scenario(publisher)`` on a started publisher, on a fresh event loop; stop it after. ``script``:
    on the gateway's own connection (``ScriptConnection``) instead of a redis-py client."""

    async def main():
        client: aioredis.Redis | ScriptConnection = (
            ScriptConnection(url, connect_timeout=2)
            if script
            else aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        )
        publisher = Publisher(client, **options)
        await publisher.start()
        try:
            return await scenario(publisher)
        finally:
            await publisher.stop()
            await client.aclose()

    return asyncio.run(main())


def jobs(rdb: redis.Redis) -> list[Job]:
    ids = [i.decode() if isinstance(i, bytes) else i for i in rdb.lrange(f"rq:queue:{PERSIST_QUEUE}", 0, -1)]
    return [Job.fetch(i, connection=rdb, serializer=MsgspecJSONSerializer) for i in ids]


def job_events(job: Job) -> list[Event]:
    (payload,) = job.args
    return persist_batch_from_arg(payload).events


def test_concurrent_publishes_are_grouped_into_few_jobs(redis_url, rdb, drain, db):
    requests = requests_of(300)

    async def scenario(publisher: Publisher):
        return await asyncio.gather(*(publisher.publish(events) for events in requests))

    results = with_publisher(redis_url, scenario)
    assert results == [None] * len(requests)  # every request resolved, none failed

    found = jobs(rdb)
    assert 1 <= len(found) < len(requests) // 10, f"{len(found)} jobs for {len(requests)} requests"
    sent = [e for events in requests for e in events]
    published = [e for job in found for e in job_events(job)]
    assert sorted(published, key=lambda e: e.message_id) == sorted(sent, key=lambda e: e.message_id)
    for job in found:
        assert job.func_name == PERSIST_FUNC
        assert job.origin == PERSIST_QUEUE
        (payload,) = job.args
        assert persist_batch_from_arg(payload).batch_id == job.id
        assert job.result_ttl == 0
        assert job.retries_left is not None and job.retries_left > 0

    # and a stock RQ worker consumes them
    drain()
    assert len(stored(db)) == len(sent)


def test_a_request_is_never_split_and_jobs_respect_max_batch_events(redis_url, rdb):
    requests = requests_of(100)  # 200 events

    async def scenario(publisher: Publisher):
        await asyncio.gather(*(publisher.publish(events) for events in requests))

    with_publisher(redis_url, scenario, max_batch_events=10)
    found = jobs(rdb)
    assert len(found) >= 20
    where = {}
    for job in found:
        events = job_events(job)
        assert len(events) <= 10
        for e in events:
            where[e.message_id] = job.id
    for events in requests:
        assert len({where[e.message_id] for e in events}) == 1, "a request's events were split"


def test_sequential_publishes_do_not_wait_for_a_group(redis_url, rdb):
    """With no linger, a lone request is written at once, as its own job."""

    async def scenario(publisher: Publisher):
        started = time.perf_counter()
        for i in range(5):
            await publisher.publish([event(f"m-{i}")])
        return time.perf_counter() - started

    elapsed = with_publisher(redis_url, scenario, linger=0)
    assert queued_jobs(rdb) == 5
    assert elapsed < 1.0


# --- the linger ----------------------------------------------------------------------------------------


def _two_requests_apart(url: str, gap: float, **options) -> tuple[float, float]:
    """Publish one request, then another ``gap`` s later; each one's seconds from the first's start."""

    async def scenario(publisher: Publisher):
        started = time.perf_counter()

        async def timed(name: str) -> float:
            await publisher.publish([event(name)])
            return time.perf_counter() - started

        first = asyncio.ensure_future(timed("first"))
        await asyncio.sleep(gap)
        second = asyncio.ensure_future(timed("second"))
        return await first, await second

    return with_publisher(url, scenario, **options)


async def _timed_publish(publisher: Publisher, events: list[Event]) -> tuple[float]:
    started = time.perf_counter()
    await publisher.publish(events)
    return (time.perf_counter() - started,)


def test_a_lone_request_waits_the_linger_then_goes_alone(redis_url, rdb):
    (answered,) = with_publisher(redis_url, lambda p: _timed_publish(p, [event("alone")]), linger=0.2)
    assert 0.2 <= answered < 1.5
    assert [[e.message_id for e in job_events(job)] for job in jobs(rdb)] == [["alone"]]


def test_a_request_within_the_linger_joins_the_first_ones_job(redis_url, rdb):
    first, second = _two_requests_apart(redis_url, 0.6, linger=1.0)
    assert [sorted(e.message_id for e in job_events(job)) for job in jobs(rdb)] == [["first", "second"]]
    # both answered when the first's linger ended (1 s), not the second's (1.6 s)
    assert 1.0 <= first < 1.45
    assert abs(second - first) < 0.1


def test_without_a_linger_the_same_requests_make_two_jobs(redis_url, rdb):
    _two_requests_apart(redis_url, 0.05, linger=0)
    assert [[e.message_id for e in job_events(job)] for job in jobs(rdb)] == [["first"], ["second"]]


def test_enough_waiting_events_end_the_linger(redis_url, rdb):
    """A request of LINGER_EVENTS events (a /v1/batch's worth) goes at once, and takes a lingering
    request with it."""

    async def scenario(publisher: Publisher):
        started = time.perf_counter()
        lone = asyncio.ensure_future(publisher.publish([event("lone")]))
        await asyncio.sleep(0.05)
        await publisher.publish([event(f"b-{i}") for i in range(LINGER_EVENTS - 1)])
        await lone
        return time.perf_counter() - started

    elapsed = with_publisher(redis_url, scenario, linger=30.0)
    assert elapsed < 5
    (job,) = jobs(rdb)
    assert len(job_events(job)) == LINGER_EVENTS


def test_a_lone_request_of_enough_events_does_not_linger(redis_url, rdb):
    async def scenario(publisher: Publisher):
        await asyncio.sleep(0.05)  # the flusher idle, waiting for a request
        return await _timed_publish(publisher, [event(f"b-{i}") for i in range(LINGER_EVENTS)])

    (answered,) = with_publisher(redis_url, scenario, linger=30.0)
    assert answered < 5
    assert [len(job_events(job)) for job in jobs(rdb)] == [LINGER_EVENTS]


def test_the_linger_still_applies_after_big_requests(redis_url, rdb):
    """The count of waiting events starts again with each flush: after requests that went at once, a
    lone small one still waits for company."""

    async def scenario(publisher: Publisher):
        for n in range(3):
            await publisher.publish([event(f"big{n}-{i}") for i in range(LINGER_EVENTS)])
        return await _timed_publish(publisher, [event("small")])

    (answered,) = with_publisher(redis_url, scenario, linger=0.3)
    assert 0.3 <= answered < 1.5
    assert [len(job_events(job)) for job in jobs(rdb)] == [LINGER_EVENTS] * 3 + [1]


def test_a_request_that_waited_through_a_flush_in_flight_does_not_linger_again(redis_url, rdb):
    async def main():
        real = aioredis.from_url(redis_url)
        client = GatedRedis(real)
        # (a timeout well past the gate's hold: the held write must still be in time)
        publisher = Publisher(client, linger=1.0, timeout=10)  # type: ignore[arg-type]  # gates a real client
        await publisher.start()
        try:
            in_flight = asyncio.ensure_future(publisher.publish([event("in-flight")]))
            await asyncio.wait_for(client.in_flight.wait(), 5)  # its linger over, its write held
            waiting = asyncio.ensure_future(publisher.publish([event("waiting")]))
            await asyncio.sleep(1.2)  # longer than the linger
            client.gate.set()
            released = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(in_flight, waiting), 5)
            return time.perf_counter() - released
        finally:
            await publisher.stop()
            await real.aclose()

    assert asyncio.run(main()) < 0.5  # written at once after the first flush, not 1 s later
    assert sorted(e.message_id for job in jobs(rdb) for e in job_events(job)) == ["in-flight", "waiting"]


class Switch:
    """A ``busy`` for the publisher: says what ``on`` holds, and counts how often it was asked."""

    def __init__(self, on: bool):
        self.on = on
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.on


def test_an_idle_process_does_not_linger(redis_url, rdb):
    idle = Switch(False)

    async def scenario(publisher: Publisher):
        answered = await _timed_publish(publisher, [event("alone")])
        return answered, publisher.lingered

    (answered,), lingered = with_publisher(redis_url, scenario, linger=30.0, busy=idle)
    assert answered < 5  # not the 30 s linger
    assert lingered == 0 and idle.asked == 1
    assert [[e.message_id for e in job_events(job)] for job in jobs(rdb)] == [["alone"]]


def test_a_busy_process_lingers_and_counts_it(redis_url, rdb):
    busy = Switch(True)

    async def scenario(publisher: Publisher):
        answered = await _timed_publish(publisher, [event("alone")])
        return answered, publisher.lingered, publisher.flushes

    (answered,), lingered, flushes = with_publisher(redis_url, scenario, linger=0.3, busy=busy)
    assert 0.3 <= answered < 1.5
    assert (lingered, flushes) == (1, 1)


def test_the_linger_follows_the_process_from_flush_to_flush(redis_url, rdb):
    """Asked before each flush: idle, then busy (the second request waits, and a third joins it), then
    idle again."""
    switch = Switch(False)

    async def scenario(publisher: Publisher):
        (idle,) = await _timed_publish(publisher, [event("idle")])
        switch.on = True
        started = time.perf_counter()
        first = asyncio.ensure_future(publisher.publish([event("busy-1")]))
        await asyncio.sleep(0.1)
        await publisher.publish([event("busy-2")])
        await first
        lingered = time.perf_counter() - started
        switch.on = False
        (idle_again,) = await _timed_publish(publisher, [event("idle-again")])
        return idle, lingered, idle_again, publisher.lingered

    idle, lingered, idle_again, count = with_publisher(redis_url, scenario, linger=0.5, busy=switch)
    assert idle < 0.4 and idle_again < 0.4
    assert 0.5 <= lingered < 1.9
    assert count == 1
    found = [sorted(e.message_id for e in job_events(job)) for job in jobs(rdb)]
    assert found == [["idle"], ["busy-1", "busy-2"], ["idle-again"]]


def test_a_flush_that_goes_at_once_is_not_counted_as_lingered(redis_url, rdb):
    async def scenario(publisher: Publisher):
        await publisher.publish([event(f"b-{i}") for i in range(LINGER_EVENTS)])
        return publisher.lingered, publisher.flushes

    assert with_publisher(redis_url, scenario, linger=30.0, busy=Switch(True)) == (0, 1)


def test_a_negative_linger_is_refused():
    with pytest.raises(ValueError, match="linger must be 0 or more seconds"):
        Publisher(aioredis.Redis(), linger=-0.001)


def test_stop_ends_the_linger_and_writes_what_waits(redis_url, rdb):
    async def main():
        client = aioredis.from_url(redis_url)
        publisher = Publisher(client, linger=30.0)
        await publisher.start()
        waiting = asyncio.ensure_future(publisher.publish([event("waiting")]))
        await asyncio.sleep(0.05)  # the flusher is lingering
        started = time.perf_counter()
        await asyncio.wait_for(publisher.stop(), 5)
        await asyncio.wait_for(waiting, 1)
        await client.aclose()
        return time.perf_counter() - started

    assert asyncio.run(main()) < 5
    assert [[e.message_id for e in job_events(job)] for job in jobs(rdb)] == [["waiting"]]


def test_requests_arriving_during_a_flush_form_the_next_group(redis_url, rdb):
    async def scenario(publisher: Publisher):
        first = asyncio.ensure_future(publisher.publish([event("first")]))
        await asyncio.sleep(0)  # "first" is handed over; the flusher takes it alone and starts writing
        rest = [publisher.publish([event(f"next-{i}")]) for i in range(50)]
        await asyncio.gather(first, *rest)

    with_publisher(redis_url, scenario, linger=0)  # (a linger would have "first" wait for the rest)
    sizes = sorted(len(job_events(job)) for job in jobs(rdb))
    assert sum(sizes) == 51
    assert len(sizes) <= 3, sizes


# --- failures ---------------------------------------------------------------------------------------


def _all_unavailable(url: str, n: int = 50, **options) -> list[BaseException | None]:
    async def scenario(publisher: Publisher):
        return await asyncio.gather(
            *(publisher.publish([event(f"m-{i}")]) for i in range(n)), return_exceptions=True
        )

    return with_publisher(url, scenario, **options)


def test_unreachable_redis_fails_every_waiting_publish():
    results = _all_unavailable("redis://127.0.0.1:1/0")
    assert all(isinstance(r, Unavailable) for r in results), results


def test_a_lingered_flush_that_fails_is_not_counted():
    """The lingered flushes are a part of the written ones: a write Redis did not take counts in
    neither (else their ratio on the dashboard could pass 1 while Redis is down)."""

    async def scenario(publisher: Publisher):
        with pytest.raises(Unavailable):
            await publisher.publish([event("lost")])
        return publisher.lingered, publisher.flushes

    busy = Switch(True)
    assert with_publisher("redis://127.0.0.1:1/0", scenario, linger=0.05, busy=busy) == (0, 0)
    assert busy.asked == 1  # it did linger, then the write failed


def test_hung_redis_fails_every_waiting_publish_within_the_timeout(silent_redis):
    started = time.perf_counter()
    results = _all_unavailable(silent_redis, timeout=0.5)
    assert all(isinstance(r, Unavailable) for r in results), results
    assert time.perf_counter() - started < 5


def test_without_a_socket_timeout_a_hung_redis_still_fails_within_the_publishers_timeout(silent_redis):
    """The app's publisher client has no socket timeout (the publisher bounds each write itself):
    starting against a hung Redis and publishing to it both end within the publisher's timeout."""

    async def main() -> list[BaseException | None]:
        client = aioredis.from_url(silent_redis, socket_connect_timeout=2)
        publisher = Publisher(client, timeout=0.5)
        await publisher.start()
        try:
            return await asyncio.gather(
                *(publisher.publish([event(f"m-{i}")]) for i in range(20)), return_exceptions=True
            )
        finally:
            await publisher.stop()
            await client.aclose()

    started = time.perf_counter()
    results = asyncio.run(main())
    assert all(isinstance(r, Unavailable) for r in results), results
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("script", [False, True], ids=["redis-py", "script-connection"])
def test_redis_error_reply_fails_every_waiting_publish_then_recovers(redis_url, rdb, script):
    """Redis is up but refuses the write (here: the queue key has the wrong type); on the gateway's own
    connection, the error reply leaves the connection serving the next flush."""
    queue_key = f"rq:queue:{PERSIST_QUEUE}"
    rdb.set(queue_key, "not a list")

    async def scenario(publisher: Publisher):
        failed = await asyncio.gather(
            *(publisher.publish([event(f"m-{i}")]) for i in range(50)), return_exceptions=True
        )
        await asyncio.to_thread(rdb.delete, queue_key)
        await publisher.publish([event("after")])
        return failed

    failed = with_publisher(redis_url, scenario, script=script)
    assert all(isinstance(r, Unavailable) for r in failed), failed
    (job,) = jobs(rdb)
    assert [e.message_id for e in job_events(job)] == ["after"]


# --- shutdown -----------------------------------------------------------------------------------------


def test_stop_flushes_pending(redis_url, rdb):
    async def main():
        client = aioredis.from_url(redis_url)
        publisher = Publisher(client)
        await publisher.start()
        tasks = [asyncio.ensure_future(publisher.publish([event(f"m-{i}")])) for i in range(20)]
        await asyncio.sleep(0)  # each request has handed over its events; the flusher has not run
        assert not any(t.done() for t in tasks)
        await publisher.stop()
        done = [t.done() and t.exception() is None for t in tasks]
        await client.aclose()
        return done

    assert asyncio.run(main()) == [True] * 20
    assert sorted(e.message_id for job in jobs(rdb) for e in job_events(job)) == sorted(
        f"m-{i}" for i in range(20)
    )


class GatedRedis:
    """A real asyncio Redis client whose first write (the publish script) waits until ``gate`` is set."""

    def __init__(self, real: aioredis.Redis):
        self.real = real
        self.gate = asyncio.Event()
        self.in_flight = asyncio.Event()
        self._gated = False

    async def evalsha(self, *args, **kwargs):
        if not self._gated:
            self._gated = True
            self.in_flight.set()
            await self.gate.wait()
        return await self.real.evalsha(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_stop_answers_the_request_whose_flush_is_in_flight(redis_url, rdb):
    """And the request that waits behind that flush is written at once, without a linger (30 s here)."""

    async def main():
        real = aioredis.from_url(redis_url)
        client = GatedRedis(real)
        publisher = Publisher(client, linger=30.0)  # type: ignore[arg-type]  # gates a real client
        await publisher.start()
        # enough events to go without a linger
        in_flight = asyncio.ensure_future(
            publisher.publish([event(f"in-flight-{i}") for i in range(LINGER_EVENTS)])
        )
        await asyncio.wait_for(client.in_flight.wait(), 2)
        pending = asyncio.ensure_future(publisher.publish([event("pending")]))
        await asyncio.sleep(0)
        stopping = asyncio.ensure_future(publisher.stop())
        await asyncio.sleep(0.1)
        client.gate.set()
        await asyncio.wait_for(stopping, 2)
        await asyncio.wait_for(pending, 2)
        try:
            await asyncio.wait_for(in_flight, 2)  # answered: stored, or Unavailable
        except Unavailable:
            pass
        finally:
            await real.aclose()

    asyncio.run(main())


def test_publish_after_stop_fails_fast(redis_url):
    async def main():
        client = aioredis.from_url(redis_url)
        publisher = Publisher(client)
        await publisher.start()
        await publisher.stop()
        try:
            with pytest.raises(Unavailable):
                await asyncio.wait_for(publisher.publish([event("late")]), 1)
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("level", [0, 1, 3, 9])
def test_every_compression_level_is_read_by_a_stock_worker(redis_url, rdb, drain, db, level):
    """Job data plain (0), ISA-L's zlib stream (1-3) or zlib's (4-9): RQ's own Job.restore reads it and
    the worker stores it."""

    async def scenario(publisher: Publisher):
        await publisher.publish([event(f"m-{level}")])

    with_publisher(redis_url, scenario, compress_level=level)
    (job,) = jobs(rdb)
    raw = rdb.hget(f"rq:job:{job.id}", "data")
    assert raw.startswith(b"[") == (level == 0)  # plain JSON, or zlib's header
    assert [e.message_id for e in job_events(job)] == [f"m-{level}"]
    drain()
    assert [row["message_id"] for row in stored(db)] == [f"m-{level}"]


def test_no_retries_configured_means_a_failed_job_goes_straight_to_the_failed_registry(redis_url, rdb):
    async def scenario(publisher: Publisher):
        await publisher.publish([event("m-0")])

    with_publisher(redis_url, scenario, retries=0)
    (job,) = jobs(rdb)
    assert not job.retries_left


def test_a_hung_redis_holds_at_most_max_pending_events(silent_redis):
    async def scenario(publisher: Publisher):
        waiting = [asyncio.ensure_future(publisher.publish([event(f"m-{i}")])) for i in range(100)]
        await asyncio.sleep(0.1)
        held = publisher.held_events
        results = await asyncio.gather(*waiting, return_exceptions=True)
        return held, results, publisher.held_events

    held, results, after = with_publisher(silent_redis, scenario, timeout=0.5, max_pending_events=20)
    assert held == 20 and after == 0
    assert all(isinstance(r, Unavailable) for r in results), results
    overloaded = [r for r in results if r.code == "overloaded"]
    assert len(overloaded) == 80 and all(r.headers == {"Retry-After": "5"} for r in overloaded)


def test_one_request_over_the_cap_still_goes_through_when_nothing_is_held(redis_url, rdb):
    async def scenario(publisher: Publisher):
        await publisher.publish([event(f"m-{i}") for i in range(30)])
        return publisher.held_events

    assert with_publisher(redis_url, scenario, max_pending_events=20) == 0
    assert queued_jobs(rdb) == 1


def test_a_job_written_from_the_template_has_the_hash_rq_itself_writes(redis_url, rdb):
    """The publisher writes jobs from a template recorded once from RQ's own enqueue (issue 14): the
    job hash has RQ's fields with RQ's values, only the id, data, description and times differ."""

    async def scenario(publisher: Publisher):
        await publisher.publish([event("m-direct")])
        # the same group enqueued by RQ's own API, for comparison
        from trackgate.gateway.publisher import _Group

        commands = publisher.record_with_rq([_Group.of([event("m-rq")])])
        pipe = rdb.pipeline(transaction=True)
        for args, _options in commands:
            pipe.execute_command(*args)
        pipe.execute()

    with_publisher(redis_url, scenario)
    direct, by_rq = jobs(rdb)
    direct_hash = rdb.hgetall(direct.key)
    rq_hash = rdb.hgetall(by_rq.key)
    assert direct_hash.keys() == rq_hash.keys()
    differ = {k for k in direct_hash if direct_hash[k] != rq_hash[k]}
    assert differ == {b"created_at", b"enqueued_at", b"data", b"description"}
    assert direct.description == f"persist_batch {direct.id} n_events=1 n_refused=0"
    assert direct.get_status() == "queued" and direct.origin == PERSIST_QUEUE
    assert [e.message_id for e in job_events(direct)] == ["m-direct"]
    assert rdb.smembers("rq:queues") == {f"rq:queue:{PERSIST_QUEUE}".encode()}


def test_a_jobs_data_is_its_batch_encoded_whole_byte_for_byte(redis_url, rdb):
    """A request of ENCODE_AT_ONCE_EVENTS or more has its events encoded when it publishes, and a
    flush joins those arrays with the other requests' events, encoded there: the job's data must be
    what encoding its PersistBatch whole gives, refused items and all."""
    from trackgate.adapters.base import Refused
    from trackgate.workers.packed_job import inflate

    # big and small requests in turn: two arrays in a row, runs of small ones between them, a big one
    # first, small ones last; jobs of at most 25 events, so each flush is cut into several jobs
    requests = [
        [event(f"r{i}-e{j}") for j in range(ENCODE_AT_ONCE_EVENTS + i % 3 if i % 5 < 2 else i % 3 + 1)]
        for i in range(43)
    ]
    requests[3] = []  # refused items alone
    refused = {
        2: [Refused(index=1, code="invalid_json", reason="batch[1]: nope", raw="{", dialect="segment")],
        3: [Refused(index=0, code="invalid_event", reason="batch[0].event", raw='{"a":1}')],
    }

    async def scenario(publisher: Publisher):
        await asyncio.gather(
            *(
                publisher.publish(events, refused=refused.get(i), source_id="src_a")
                for i, events in enumerate(requests)
            )
        )

    with_publisher(redis_url, scenario, linger=0.05, max_batch_events=25)
    found = jobs(rdb)
    assert 1 < len(found) < len(requests)  # several jobs, each joining the arrays of several requests
    kept: list[tuple[str, str, str | None]] = []
    for job in found:
        data = inflate(rdb.hget(job.key, "data"))
        batch = persist_batch_from_arg(MsgspecJSONSerializer.loads(data)[2][0])
        in_job = {e.message_id for e in batch.events}
        whole = PersistBatch(  # the job's requests' events, in the order they were published
            batch_id=job.id,
            events=[e for events in requests for e in events if e.message_id in in_job],
            refused=batch.refused,
        )
        assert data == MsgspecJSONSerializer.dumps((PERSIST_FUNC, None, [whole], {}))
        kept.extend((r.code, r.raw, r.source_id) for r in batch.refused)
    assert sorted(kept) == [("invalid_event", '{"a":1}', "src_a"), ("invalid_json", "{", "src_a")]
    assert sorted(e.message_id for job in found for e in job_events(job)) == sorted(
        e.message_id for events in requests for e in events
    )


def test_rqs_own_simple_worker_runs_a_job_written_from_the_template(redis_url, rdb, settings, db):
    """Not trackgate's worker: RQ's stock SimpleWorker, as ``rq worker`` would run it."""
    from rq import Queue, SimpleWorker

    from trackgate.workers import runtime

    async def scenario(publisher: Publisher):
        await publisher.publish([event("m-stock")])

    with_publisher(redis_url, scenario)
    runtime.configure(settings)
    queue = Queue(PERSIST_QUEUE, connection=rdb, serializer=MsgspecJSONSerializer)
    worker = SimpleWorker([queue], connection=rdb, serializer=MsgspecJSONSerializer)
    assert worker.work(burst=True, logging_level="WARNING")
    assert [row["message_id"] for row in stored(db)] == ["m-stock"]
    assert queue.count == 0 and queue.failed_job_registry.count == 0
