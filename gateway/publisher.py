"""Group commit: the events of many concurrent requests become one RQ job, written in one round trip.

A request hands its events to :meth:`Publisher.publish` and waits. One flusher task takes everything
pending, builds RQ jobs of at most ``max_batch_events`` events with RQ's own API, and writes them in
one atomic Lua script (below) on the gateway's own connection (``script_connection.py``). Requests
that arrive while a flush is in flight form the next group, so the group size follows the load; and a
flush waits up to ``linger`` (1 ms by default) after its first request for others to join it (when
``busy`` is given, only while it says the process is busy: ``gateway/cpu_share.py``), unless
``LINGER_EVENTS`` events already wait (a request of 100 events or more goes at once; smaller batches,
such as the SDKs' usual 15–20 events, wait like a single event). The event loop's timers have a
resolution of 1 ms (libuv's, and asyncio's epoll timeout): the wait ends up to ~1 ms late. Only after
the script has written the jobs are the waiting requests released to answer 2xx; if Redis fails or
times out they get ``Unavailable``.

Why linger: a flush has a fixed cost (its script, its round trip, a loop wake-up for the reply). Under
full load it is shared by the ~30 requests that arrived during the last one, but at a steady moderate
rate requests come one at a time: at half its maximum rate a flush carried ~6 (bench (f), 7,500 a
second), the gateway used 105–118 µs of CPU a request against ~66 at full load, near a whole core,
where queueing makes the tail. With the linger a flush there carries ~12, and a request costs ~10%
less. RudderStack's gateway does the same (``Gateway.userWebRequestBatchTimeout``, 15 ms). The wait
counts from when the first request began waiting, so a request that waited through a flush in flight
does not wait again. Why ``busy``: with CPU to spare the saving is not needed and the wait is mostly
cost (on a quiet VM at 4,200 requests/s, the gateway at 43–69% of a core: 0–20% of a request's CPU
saved, ~1 ms added to the median and 1–1.5 ms to the p99; ``gateway/cpu_share.py``). It is off by
default: its measure, the loop's own CPU, does not see a neighbour taking the CPU, where the linger's
saving keeps the tail down.

The events held (waiting, or in a write in flight) are capped at ``max_pending_events``: beyond it a
request is refused at once with ``Unavailable`` (503, ``Retry-After``) and nothing of it is held, so a
slow or frozen Redis cannot grow the gateway's memory without bound. A refused request was never
acknowledged; an acknowledged one was never refused.

A 503 must mean "nothing was stored": a write that reaches Redis after the gateway gave up (Redis frozen,
a slow network) must not land and be stored beside the client's retry. So the commands do not go in a
MULTI/EXEC but in one Lua script (``_PUBLISH``) that first reads Redis's own clock and writes nothing when
the flush's deadline has passed. The deadline is in Redis's clock (the offset to ours is learned from
every reply), ``DEADLINE_MARGIN`` before the gateway stops waiting: a script that runs in time is answered
before the gateway gives up unless its reply alone takes longer than the margin.

A request of ``ENCODE_AT_ONCE_EVENTS`` or more has its events encoded when it publishes
(:meth:`Publisher.enqueue`), so that it can let them go before it waits; the flush joins those arrays
into the job's data, which is byte for byte what encoding the whole batch gives.

RQ and the synchronous redis-py client never touch the network here. RQ's own API records, once, the
commands that enqueue a persist job (a synchronous pipeline that is never executed): that recording
is the template (:class:`JobTemplate`) from which each flush writes its jobs directly, changing only
the job's id, data, description and timestamps. Building ``Job`` objects and letting RQ save them cost
~9% of the accept path's CPU (py-spy, issue 14); the hash and the queue push are the same, so stock RQ
workers consume the jobs (``tests/gateway/test_publisher.py`` runs one with RQ's own worker).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import redis
import redis.asyncio as aioredis
import uuid_utils
from isal import isal_zlib
from rq import Queue, Retry
from rq.job import Job
from rq.utils import utcformat

from trackgate.adapters.base import Refused
from trackgate.gateway.deadlines import Deadlines
from trackgate.gateway.errors import Unavailable
from trackgate.gateway.script_connection import ScriptConnection
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

DEADLINE_MARGIN = 0.25
"""Seconds between the script's deadline (in Redis's clock) and the moment the gateway stops waiting."""

LINGER_EVENTS = 100
"""A lingering flush goes at once when this many events (and refused items) wait: a job big enough
that the worker's per-job cost is small beside its events' (bench (d): 64-event jobs cost a worker
about what 3,125-event ones do an event), so waiting for more saves nothing worth the wait."""

FLUSH_DEADLINE_RESOLUTION = 0.05
"""How late (at most, in seconds) the gateway stops waiting for a flush's script past its timeout. The
wait is kept by ``gateway/deadlines.py``'s one coarse timer, not an ``asyncio.timeout`` per flush
(~7 µs a flush under uvloop: at half load a flush holds only a handful of requests). Stopping later than
the timeout is safe: the script's own deadline, in Redis's clock, is ``DEADLINE_MARGIN`` before it,
so a write never lands after the gateway answered 503; stopping earlier would not be."""

_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] ~= '' and redis.call('EXISTS', ARGV[2]) == 1 then
  return {1, now}
end
if now > tonumber(ARGV[1]) then
  return {0, now}
end
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return {1, now}
"""
"""ARGV: the deadline (ms, Redis's clock), the key of the flush's first job, then each command as its
length followed by its words. Returns ``{written, Redis's clock in ms}``. A script runs atomically, as
MULTI/EXEC did.

The first job's key (its id is new each flush) says whether this very flush was written already: the
script connection sends a command again when its connection fails (``gateway/script_connection.py``),
and a connection can fail after Redis ran the script and before its reply arrived. That second run
then writes nothing and answers written, even past the deadline: the jobs are in Redis, so the
requests are answered 2xx, not 503 (which would have the clients send them again), and the queue
holds each job once."""
_PUBLISH_SHA = hashlib.sha1(_PUBLISH.encode()).hexdigest()


def _now_ms() -> float:
    return time.time() * 1000


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


ENCODE_AT_ONCE_EVENTS = 10
"""A request of this many events or more has them encoded when it publishes, not at its flush
(:meth:`Publisher.enqueue`): encoded and freed while they are still in the CPU's caches. Under
``/v1/batch`` load (bench (c)) a flush carried ~1,500 events, made by ~15 requests over tens of
milliseconds: encoding them there, then freeing them after the answer, walked memory the caches had
long lost, and took two fifths of the gateway's time. Below it, one encode for the whole flush costs
less than one a request."""

_encode_events = MsgspecJSONSerializer.dumps
"""A request's events as the JSON array a job's data holds them in: the serializer's own encoding, so
that the arrays joined are what encoding the whole batch gives (:func:`_job_data`)."""
_decode_events = msgspec.json.Decoder(list[Event]).decode

Part = list[Event] | bytes
"""A request's events in a flush: as events, or encoded (a JSON array) when it had
:data:`ENCODE_AT_ONCE_EVENTS` or more."""


class _Pending(msgspec.Struct):
    """One request waiting for its events (and refused items) to be in Redis."""

    events: Part
    n_events: int
    raw_bytes: int
    """The length of the original messages of its events and refused items."""
    refused: list[RefusedItem]
    future: asyncio.Future


class _Group(msgspec.Struct):
    """What one RQ job carries: its requests' events in order (a :data:`Part` each), ``n_events`` of
    them, and their refused items."""

    parts: list[Part]
    refused: list[RefusedItem]
    n_events: int = 0

    @classmethod
    def of(cls, events: list[Event], refused: list[RefusedItem] | None = None) -> _Group:
        """A group of these events (a test's)."""
        return cls([events], refused or [], len(events))


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


def compress(data: bytes, level: int) -> bytes:
    """A job's data as a zlib stream at ``level`` (0: plain). Levels 1–3 by ISA-L (python-isal, the
    library the workers inflate with): the same format, about the same size as zlib at 1, and ~7× less
    CPU on a 1-event job (zlib's set-up costs ~40 µs a call there, more than the rest of a request)
    and ~4× less on big ones; levels 4–9 by zlib, which ISA-L does not have."""
    if level <= 0:
        return data
    if level <= isal_zlib.ISAL_BEST_COMPRESSION:
        return isal_zlib.compress(data, level)
    return zlib.compress(data, level)


class BatchJob(Job):
    """RQ's Job, its data compressed at ``compress_level`` (:func:`compress`) rather than zlib at RQ's 6.

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
        obj["data"] = compress(data, self.compress_level)
        return obj


_VARIABLE = (b"created_at", b"data", b"description", b"enqueued_at")
"""The fields of a persist job's hash that differ from one job to the next (besides its key)."""


_NO_EVENTS = b'"events":[]'


def _job_data(batch_id: str, group: _Group) -> bytes:
    """The job's data as ``MsgspecJSONSerializer.dumps`` writes the group's ``PersistBatch``, byte for
    byte. Where requests' events came encoded, the batch is encoded without its events and the
    arrays are joined into its ``events`` (a JSON array's text is its items' texts joined by commas),
    the other requests' events encoded between them, each run of them at once."""
    if not any(part.__class__ is bytes for part in group.parts):  # events only: encoded whole
        batch = PersistBatch(batch_id=batch_id, events=_events_of(group), refused=group.refused)
        return MsgspecJSONSerializer.dumps((PERSIST_FUNC, None, [batch], {}))
    empty = PersistBatch(batch_id=batch_id, events=[], refused=group.refused)
    # the first "events":[] is the batch's own (checked at import, below): only its id comes before it
    head, _, tail = MsgspecJSONSerializer.dumps((PERSIST_FUNC, None, [empty], {})).partition(_NO_EVENTS)
    pieces: list[bytes | memoryview] = [head, b'"events":[']  # joined once: one copy of ~2 MB, not two
    run: list[Event] = []
    for part in group.parts:
        if isinstance(part, bytes):
            if run:
                pieces += (memoryview(_encode_events(run))[1:-1], b",")
                run = []
            pieces += (memoryview(part)[1:-1], b",")  # each array without its brackets, not copied
        else:
            run.extend(part)
    if run:
        pieces += (memoryview(_encode_events(run))[1:-1], b",")
    pieces[-1] = b"]"  # the last comma
    pieces.append(tail)
    return b"".join(pieces)


_EMPTY_BATCH = PersistBatch(batch_id="", events=[])
if _NO_EVENTS not in MsgspecJSONSerializer.dumps((PERSIST_FUNC, None, [_EMPTY_BATCH], {})):
    # _job_data splits the batch there: a PersistBatch that left out an empty ``events`` (a default,
    # ``omit_defaults``) would fail every flush holding an encoded array; it fails the import instead
    raise RuntimeError("a PersistBatch with no events must be encoded with an empty events array")


def _events_of(group: _Group) -> list[Event]:
    """A group's events as events (RQ's own recording needs them), its encoded arrays decoded."""
    if len(group.parts) == 1 and not isinstance(group.parts[0], bytes):
        return group.parts[0]
    return [e for part in group.parts for e in (_decode_events(part) if isinstance(part, bytes) else part)]


class JobTemplate:
    """The commands RQ's ``Queue.enqueue_job`` sends for one persist job, recorded once from RQ's own
    API, with the job's key, id, data, description and timestamps as the holes to fill."""

    def __init__(self, queue: Queue, retry: Retry | None, compress_level: int):
        self.compress_level = compress_level
        job = queue.create_job(
            PERSIST_FUNC,
            args=[PersistBatch(batch_id="template", events=[])],
            job_id="template",
            description="template",
            result_ttl=0,
            retry=retry,
        )
        recording = queue.connection.pipeline(transaction=True)
        queue.enqueue_job(job, pipeline=recording)
        commands = [list(args) for args, _options in recording.command_stack]
        self.head: list[list] = []
        """Commands of no job in particular (the queue's name in ``rq:queues``): once per flush."""
        self.fields: list = []
        """The job's hash as RQ writes it: field, value, field, value, ..."""
        self.holes: dict[bytes, int] = {}
        """Index in ``fields`` of the value of each of ``_VARIABLE``."""
        self.queue_key = queue.key
        for args in commands:
            name = str(args[0]).upper()
            if name == "HSET" and args[1] == job.key and len(args) > 4:
                self.fields = args[2:]
            elif name == "HSET" and args[1] == job.key:
                continue  # RQ sets the status twice; the full HSET has it too
            elif name == "RPUSH" and args[1:] == [queue.key, job.id]:
                continue  # the push, per job
            elif job.id in [a for a in args if isinstance(a, str)] or job.key in args:
                raise ValueError(f"RQ's enqueue has a job command the template does not know: {name}")
            else:
                self.head.append(args)
        for i in range(0, len(self.fields), 2):
            key = self.fields[i].encode() if isinstance(self.fields[i], str) else self.fields[i]
            if key in _VARIABLE:
                self.holes[key] = i + 1
        if set(self.holes) != set(_VARIABLE):
            raise ValueError(f"RQ's job hash lacks a field of {_VARIABLE}: {self.fields[::2]}")
        self.job_key_prefix = job.key[: -len(job.id)]

    def job_commands(self, job_id: str, data: bytes, description: str, at: datetime) -> list[list]:
        """The job's commands; ``data``: its serialized data (:func:`_job_data`), compressed here."""
        data = compress(data, self.compress_level)
        fields = list(self.fields)
        stamp = utcformat(at)
        fields[self.holes[b"created_at"]] = stamp
        fields[self.holes[b"enqueued_at"]] = stamp
        fields[self.holes[b"data"]] = data
        fields[self.holes[b"description"]] = description
        return [["HSET", self.job_key_prefix + job_id, *fields], ["RPUSH", self.queue_key, job_id]]


class Publisher:
    def __init__(
        self,
        client: aioredis.Redis | ScriptConnection,
        *,
        queue_name: str = PERSIST_QUEUE,
        max_batch_events: int = 5000,
        retries: int = 10,
        timeout: float = 2.0,
        compress_level: int = 1,
        max_pending_events: int = 50_000,
        linger: float = 0.001,
        busy: Callable[[], bool] | None = None,
    ):
        if linger < 0:
            raise ValueError(f"linger must be 0 or more seconds, not {linger}")
        self._client = client
        # A synchronous client that is never connected: RQ writes its commands into its pipelines.
        self._recorder = redis.Redis()
        job_class = type("BatchJob", (BatchJob,), {"compress_level": compress_level})
        self._queue = Queue(
            queue_name, connection=self._recorder, serializer=MsgspecJSONSerializer, job_class=job_class
        )
        self._compress_level = compress_level
        self._template: JobTemplate | None = None
        self._max_batch_events = max_batch_events
        self._retry = Retry(max=retries, interval=RETRY_INTERVALS[:retries]) if retries > 0 else None
        self._timeout = timeout
        self._deadlines = Deadlines(min(FLUSH_DEADLINE_RESOLUTION, timeout / 4))
        """The flush's wait for Redis (:data:`FLUSH_DEADLINE_RESOLUTION`)."""
        self._pending: list[_Pending] = []
        self._max_pending_events = max_pending_events
        self._held = 0
        """Events (and refused items) of requests not answered yet: waiting or being written."""
        self._wake = asyncio.Event()
        self._linger = linger
        """Seconds a flush waits, from its first request, for others (module docstring); 0: none."""
        self._busy = busy
        """Whether the process is busy enough for a flush to linger (None: always)."""
        self._waiting = 0
        """Events (and refused items) of ``_pending``: waiting, not yet in a flush."""
        self._waiting_since = 0.0
        """The event loop's time when the first request of ``_pending`` began waiting."""
        self._lingering: asyncio.Future | None = None
        """Set while the flusher lingers; done when it should stop waiting (enough events, stop())."""
        self.flushes = 0
        """Writes made (jobs in Redis, their requests answered), since the start; for the metrics."""
        self.flushed_requests = 0
        """Requests those writes carried."""
        self.lingered = 0
        """Of those writes, the ones that waited for others to join them."""
        self._task: asyncio.Task | None = None
        self._closed = False
        self._clock_offset_ms = 0.0
        """Redis's clock minus ours (ms), from the last reply; deadlines are written in Redis's clock."""

    async def start(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):  # the client may have no socket timeout
                info = await self._client.info("server")
            version = tuple(int(p) for p in str(info["redis_version"]).split(".")[:3])
        except (redis.RedisError, OSError, KeyError, ValueError, TimeoutError):
            version = (6, 2, 0)  # RQ records it on the job; it does not change how the job is written
        self._queue.redis_server_version = version  # type: ignore[assignment]
        self._template = JobTemplate(self._queue, self._retry, self._compress_level)
        try:
            sent = _now_ms()
            async with asyncio.timeout(self._timeout):
                seconds, micros = await self._client.time()
            self._learn_offset(sent, seconds * 1000 + micros // 1000)
        except (redis.RedisError, OSError, TimeoutError):
            pass  # learned from the first flush's reply; until then our clock is taken for Redis's
        self._task = asyncio.create_task(self._run(), name="trackgate-publisher")

    async def stop(self) -> None:
        """Refuse new events, let the flusher write what is pending (and any write in flight), stop."""
        self._closed = True
        if self._task is None:
            return
        self._wake.set()
        self._end_linger()
        await self._task
        self._task = None

    async def publish(
        self, events: list[Event], *, refused: list[Refused] | None = None, source_id: str | None = None
    ) -> None:
        """Return once ``events`` are in Redis as part of an RQ job; raise ``Unavailable`` if not.

        ``refused``: items of the same request that its dialect answers 2xx to but could not accept
        (``decode_partial``); they travel in the same job, so they are as durable as the events
        before the answer, and the worker keeps them in ``quarantine`` under ``source_id``.

        A request of :data:`ENCODE_AT_ONCE_EVENTS` or more has its events encoded before this waits,
        and not kept (see :meth:`enqueue`); a smaller one's are kept until the flush encodes them."""
        await self.enqueue(events, refused=refused, source_id=source_id)

    def enqueue(
        self, events: list[Event], *, refused: list[Refused] | None = None, source_id: str | None = None
    ) -> asyncio.Future:
        """:meth:`publish` in two steps: this queues the events for the next flush (encoded now when
        there are :data:`ENCODE_AT_ONCE_EVENTS` or more) and returns the future to await, done when
        they are in Redis (or failed with ``Unavailable``). Before awaiting it, the caller can drop
        the events (``gateway/ingest.py`` does): a request's objects are then freed while they are
        still in the CPU's caches, not after the flush, when a thousand other events have passed."""
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
        raw_bytes = sum(len(e.raw) for e in events) + sum(len(r.raw) for r in items)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            self._waiting_since = loop.time()
        part: Part = _encode_events(events) if len(events) >= ENCODE_AT_ONCE_EVENTS else events
        self._pending.append(_Pending(part, len(events), raw_bytes, items, future))
        self._held += count
        self._waiting += count
        self._wake.set()
        if self._waiting >= LINGER_EVENTS:
            self._end_linger()
        return future

    @property
    def held_events(self) -> int:
        """Events (and refused items) waiting for Redis now."""
        return self._held

    def _take(self) -> list[_Pending]:
        pending, self._pending = self._pending, []
        self._waiting = 0
        return pending

    def _end_linger(self) -> None:
        if self._lingering is not None:
            _resolve(self._lingering)

    async def _linger_for_more(self) -> bool:
        """Wait until ``linger`` after the first waiting request began waiting, or until
        ``LINGER_EVENTS`` wait, or the publisher stops: whichever comes first. True when it waited."""
        loop = asyncio.get_running_loop()
        until = self._waiting_since + self._linger
        if self._closed or self._waiting >= LINGER_EVENTS or until <= loop.time():
            return False
        self._lingering = lingering = loop.create_future()
        timer = loop.call_at(until, _resolve, lingering)
        try:
            await lingering
        finally:
            timer.cancel()
            self._lingering = None
        return True

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            lingered = False
            if self._linger and self._pending and (self._busy is None or self._busy()):
                lingered = await self._linger_for_more()
                self._wake.clear()  # those who joined meanwhile are taken now
            pending = self._take()
            if pending:
                await self._flush(pending, lingered)
            if self._closed and not self._pending:
                return

    def _groups(self, pending: list[_Pending]) -> list[_Group]:
        """One job per group: at most ``max_batch_events`` events and about MAX_JOB_RAW_BYTES of
        original messages (a worker holds a job in memory), never splitting one request."""
        groups: list[_Group] = []
        current = _Group([], [])
        size = 0
        for request in pending:
            request_size = request.raw_bytes
            if (current.n_events or current.refused) and (
                current.n_events + request.n_events > self._max_batch_events
                or size + request_size > MAX_JOB_RAW_BYTES
            ):
                groups.append(current)
                current = _Group([], [])
                size = 0
            if request.n_events:
                current.parts.append(request.events)
                current.n_events += request.n_events
            current.refused.extend(request.refused)
            size += request_size
        if current.n_events or current.refused:
            groups.append(current)
        return groups

    def record(self, groups: list[_Group]) -> list:
        """The commands that enqueue one persist job per group, as RQ writes them (``JobTemplate``);
        ``(args, options)`` pairs, as a redis-py pipeline's command stack holds them."""
        template = self._template
        if template is None:  # not started (a test calling this directly): RQ's own recording
            return self.record_with_rq(groups)
        at = datetime.now(UTC)
        commands = list(template.head)
        for group in groups:
            batch_id = str(uuid_utils.uuid7())
            description = f"persist_batch {batch_id} n_events={group.n_events} n_refused={len(group.refused)}"
            commands.extend(template.job_commands(batch_id, _job_data(batch_id, group), description, at))
        return [(args, {}) for args in commands]

    def record_with_rq(self, groups: list[_Group]) -> list:
        """RQ's commands to enqueue one persist job per group, recorded, not executed."""
        recording = self._recorder.pipeline(transaction=True)
        for group in groups:
            events, refused = _events_of(group), group.refused
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

    def _learn_offset(self, sent_ms: float, redis_ms: float) -> None:
        """Redis read its clock somewhere between our send and now: take the middle."""
        self._clock_offset_ms = redis_ms - (sent_ms + _now_ms()) / 2

    def script_args(self, commands: list, sent_ms: float) -> list:
        """The deadline in Redis's clock, then each recorded command as its length and its words."""
        wait = max(self._timeout - DEADLINE_MARGIN, self._timeout / 2)
        deadline = sent_ms + self._clock_offset_ms + wait * 1000
        first_job = next((args[1] for args, _options in commands if str(args[0]).upper() == "HSET"), "")
        argv: list = [int(deadline), first_job]
        for args, _options in commands:
            argv.append(len(args))
            argv.extend(args)
        return argv

    async def _run_script(self, argv: list) -> tuple[int, int]:
        try:
            written, now = await self._client.evalsha(_PUBLISH_SHA, 0, *argv)
        except redis.exceptions.NoScriptError:  # a restarted Redis: EVAL loads it again
            written, now = await self._client.eval(_PUBLISH, 0, *argv)
        return int(written), int(now)

    async def _flush(self, pending: list[_Pending], lingered: bool) -> None:
        try:
            await self._write(pending, lingered)
        finally:
            # every request of ``pending`` is answered (or its waiter gone): none of it is held now
            self._held -= sum(r.n_events + len(r.refused) for r in pending)

    async def _write(self, pending: list[_Pending], lingered: bool) -> None:
        groups = self._groups(pending)
        n_events = sum(g.n_events for g in groups)
        try:
            commands = self.record(groups)
            sent = _now_ms()
            argv = self.script_args(commands, sent)
            with self._deadlines.within(self._timeout):
                written, redis_now = await self._run_script(argv)
            self._learn_offset(sent, redis_now)
            if not written:
                raise TimeoutError("the write reached Redis after its deadline and was not made")
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
        self.flushes += 1
        self.flushed_requests += len(pending)
        self.lingered += lingered  # counted with the write it delayed, as the flushes are
        for request in pending:
            if not request.future.done():
                request.future.set_result(None)
