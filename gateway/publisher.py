"""Group commit: the events of many concurrent requests become one RQ job, written in one round trip.

A request hands its events to :meth:`Publisher.publish` and waits. One flusher task takes everything
pending, builds RQ jobs of at most ``max_batch_events`` events with RQ's own API, and writes them in
a single MULTI/EXEC on the asyncio Redis client. Requests that arrive while a flush is in flight form
the next group, so the group size follows the load with no linger timer. Only after EXEC succeeds are
the waiting requests released to answer 2xx; if Redis fails or times out they get ``Unavailable``.

The events held (waiting, or in a write in flight) are capped at ``max_pending_events``: beyond it a
request is refused at once with ``Unavailable`` (503, ``Retry-After``) and nothing of it is held, so a
slow or frozen Redis cannot grow the gateway's memory without bound. A refused request was never
acknowledged; an acknowledged one was never refused.

RQ and the synchronous redis-py client never touch the network here: RQ records its commands into a
synchronous pipeline that is never executed, and those commands are replayed on the asyncio
pipeline. The job format is exactly RQ's, so stock RQ workers consume it.
"""

from __future__ import annotations

import asyncio
import logging
import zlib

import msgspec
import redis
import redis.asyncio as aioredis
import uuid_utils
from rq import Queue, Retry
from rq.job import Job

from trackgate.adapters.base import Refused
from trackgate.gateway.errors import Unavailable
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import (
    PERSIST_FUNC,
    PERSIST_QUEUE,
    MsgspecJSONSerializer,
    PersistBatch,
    RefusedItem,
)

log = logging.getLogger(__name__)

RETRY_INTERVALS = [1, 5, 15, 60, 300, 900, 1800, 3600]
MAX_JOB_RAW_BYTES = 8 * 1024 * 1024


class _Pending(msgspec.Struct):
    """One request waiting for its events (and refused items) to be in Redis."""

    events: list[Event]
    refused: list[RefusedItem]
    future: asyncio.Future


class _Group(msgspec.Struct):
    """What one RQ job carries."""

    events: list[Event]
    refused: list[RefusedItem]


def _refused_item(refused: Refused, source_id: str) -> RefusedItem:
    return RefusedItem(
        key=str(uuid_utils.uuid7()),
        source_id=source_id,
        dialect=refused.dialect,
        version=refused.version,
        index=refused.index,
        code=refused.code,
        reason=refused.reason,
        message_id=refused.message_id,
        raw=refused.raw,
        request_id=refused.request_id,
        received_at=refused.received_at,
    )


class BatchJob(Job):
    """RQ's Job, its data compressed at ``compress_level`` (zlib) rather than RQ's fixed 6.

    Level 6 cost ~18 µs an event on the accept path (bench/); level 1 costs a third of that and still
    shrinks a batch several times, which matters when Redis holds a backlog; 0 stores it plain. Any
    RQ worker reads all three: ``Job.restore`` decompresses, or takes data that is not zlib as is.
    """

    compress_level = 1

    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict:
        data = self.data
        self._data = b""  # RQ's to_dict compresses self.data itself: give it nothing to compress
        try:
            obj = super().to_dict(include_meta=include_meta, include_result=include_result)
        finally:
            self._data = data
        obj["data"] = zlib.compress(data, self.compress_level) if self.compress_level else data
        return obj


class Publisher:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        queue_name: str = PERSIST_QUEUE,
        max_batch_events: int = 5000,
        retries: int = 10,
        timeout: float = 2.0,
        compress_level: int = 1,
        max_pending_events: int = 50_000,
    ):
        self._client = client
        # A synchronous client that is never connected: RQ writes its commands into its pipelines.
        self._recorder = redis.Redis()
        job_class = type("BatchJob", (BatchJob,), {"compress_level": compress_level})
        self._queue = Queue(
            queue_name, connection=self._recorder, serializer=MsgspecJSONSerializer, job_class=job_class
        )
        self._max_batch_events = max_batch_events
        self._retry = Retry(max=retries, interval=RETRY_INTERVALS[:retries]) if retries > 0 else None
        self._timeout = timeout
        self._pending: list[_Pending] = []
        self._max_pending_events = max_pending_events
        self._held = 0
        """Events (and refused items) of requests not answered yet: waiting or being written."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False

    async def start(self) -> None:
        try:
            info = await self._client.info("server")
            version = tuple(int(p) for p in str(info["redis_version"]).split(".")[:3])
        except (redis.RedisError, OSError, KeyError, ValueError):
            version = (6, 2, 0)  # RQ records it on the job; it does not change how the job is written
        self._queue.redis_server_version = version  # type: ignore[assignment]
        self._task = asyncio.create_task(self._run(), name="trackgate-publisher")

    async def stop(self) -> None:
        """Refuse new events, let the flusher write what is pending (and any write in flight), stop."""
        self._closed = True
        if self._task is None:
            return
        self._wake.set()
        await self._task
        self._task = None

    async def publish(
        self, events: list[Event], *, refused: list[Refused] | None = None, source_id: str | None = None
    ) -> None:
        """Return once ``events`` are in Redis as part of an RQ job; raise ``Unavailable`` if not.

        ``refused``: items of the same request that its dialect answers 2xx to but could not accept
        (``decode_partial``); they travel in the same job, so they are as durable as the events
        before the answer, and the worker keeps them in ``quarantine`` under ``source_id``."""
        if self._closed:
            raise Unavailable("the gateway is shutting down; nothing was stored, retry")
        items: list[RefusedItem] = []
        if refused:
            if source_id is None:
                raise ValueError("publish(refused=...) needs the source_id")
            items = [_refused_item(r, source_id) for r in refused]
        count = len(events) + len(items)
        if self._held and self._held + count > self._max_pending_events:
            raise Unavailable(
                "the event store is not keeping up; nothing was stored, retry",
                code="overloaded",
                headers={"Retry-After": "5"},
            )
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(events, items, future))
        self._held += count
        self._wake.set()
        await future

    @property
    def held_events(self) -> int:
        """Events (and refused items) waiting for Redis now."""
        return self._held

    def _take(self) -> list[_Pending]:
        pending, self._pending = self._pending, []
        return pending

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending = self._take()
            if pending:
                await self._flush(pending)
            if self._closed and not self._pending:
                return

    def _groups(self, pending: list[_Pending]) -> list[_Group]:
        """One job per group: at most ``max_batch_events`` events and about MAX_JOB_RAW_BYTES of
        original messages (a worker holds a job in memory), never splitting one request."""
        groups: list[_Group] = []
        current = _Group([], [])
        size = 0
        for request in pending:
            events = request.events
            request_size = sum(len(e.raw) for e in events) + sum(len(r.raw) for r in request.refused)
            if (current.events or current.refused) and (
                len(current.events) + len(events) > self._max_batch_events
                or size + request_size > MAX_JOB_RAW_BYTES
            ):
                groups.append(current)
                current = _Group([], [])
                size = 0
            current.events.extend(events)
            current.refused.extend(request.refused)
            size += request_size
        if current.events or current.refused:
            groups.append(current)
        return groups

    def record(self, groups: list[_Group]) -> list:
        """RQ's commands to enqueue one persist job per group, recorded, not executed."""
        recording = self._recorder.pipeline(transaction=True)
        for group in groups:
            events, refused = group.events, group.refused
            batch_id = str(uuid_utils.uuid7())
            job = self._queue.create_job(
                PERSIST_FUNC,
                args=[PersistBatch(batch_id=batch_id, events=events, refused=refused)],
                job_id=batch_id,
                description=f"persist_batch {batch_id} n_events={len(events)} n_refused={len(refused)}",
                result_ttl=0,
                retry=self._retry,
            )
            self._queue.enqueue_job(job, pipeline=recording)
        return recording.command_stack

    async def _flush(self, pending: list[_Pending]) -> None:
        try:
            await self._write(pending)
        finally:
            # every request of ``pending`` is answered (or its waiter gone): none of it is held now
            self._held -= sum(len(r.events) + len(r.refused) for r in pending)

    async def _write(self, pending: list[_Pending]) -> None:
        groups = self._groups(pending)
        n_events = sum(len(g.events) for g in groups)
        try:
            commands = self.record(groups)
            pipe = self._client.pipeline(transaction=True)
            for args, options in commands:
                pipe.execute_command(*args, **options)
            async with asyncio.timeout(self._timeout):
                await pipe.execute()
        except (redis.RedisError, OSError, TimeoutError) as exc:
            log.warning("publish_failed n_requests=%d n_events=%d error=%r", len(pending), n_events, exc)
            error = Unavailable("the event store is unavailable; nothing was stored, retry")
            for request in pending:
                future = request.future
                if not future.done():
                    future.set_exception(error)
            return
        except Exception as exc:  # a bug must not leave requests hanging
            log.exception("publish_crashed n_requests=%d", len(pending))
            for request in pending:
                future = request.future
                if not future.done():
                    future.set_exception(exc)
            return
        log.debug("published n_requests=%d n_events=%d n_jobs=%d", len(pending), n_events, len(groups))
        for request in pending:
            if not request.future.done():
                request.future.set_result(None)
