"""What the gateway left in Redis: the persist jobs on the RQ queue and the events inside them.

Read straight from RQ's storage (``rq:queue:<name>`` holds job ids; ``rq:job:<id>`` holds ``data``,
zlib-compressed (or not: RQ reads both), serialized by ``schemas.jobs.MsgspecJSONSerializer`` as
``[func_name, instance, args, kwargs]``), so the check does not depend on the worker.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import msgspec
import redis

from trackgate.schemas.jobs import PERSIST_FUNC, PERSIST_QUEUE


class _EventIds(msgspec.Struct):
    id: str
    message_id: str


class _Batch(msgspec.Struct):
    batch_id: str
    events: list[_EventIds]


_decode_job = msgspec.json.Decoder(tuple[str, Any, tuple[_Batch], dict[str, Any]]).decode


def _inflate(data: bytes) -> bytes:
    """RQ compresses job data, and reads it back uncompressed if it is not (``Job.restore``)."""
    try:
        return zlib.decompress(data)
    except zlib.error:
        return data


@dataclass
class Queued:
    jobs: int
    events: int
    distinct_ids: int
    distinct_message_ids: int
    bad_jobs: int

    @property
    def events_per_job(self) -> float:
        return self.events / self.jobs if self.jobs else 0.0


def count_queued(client: redis.Redis, queue: str = PERSIST_QUEUE, chunk: int = 500) -> Queued:
    job_ids = client.lrange(f"rq:queue:{queue}", 0, -1)
    events = bad = 0
    ids: set[str] = set()
    message_ids: set[str] = set()
    for start in range(0, len(job_ids), chunk):
        pipe = client.pipeline(transaction=False)
        for job_id in job_ids[start : start + chunk]:
            # bytes from a client without decode_responses; str from one with it
            pipe.hget(b"rq:job:" + (job_id if isinstance(job_id, bytes) else job_id.encode()), "data")
        for data in pipe.execute():
            try:
                func, _, (batch,), _ = _decode_job(_inflate(data))
            except (TypeError, msgspec.DecodeError, ValueError):
                bad += 1
                continue
            if func != PERSIST_FUNC:
                bad += 1
                continue
            events += len(batch.events)
            for event in batch.events:
                ids.add(event.id)
                message_ids.add(event.message_id)
    return Queued(
        jobs=len(job_ids),
        events=events,
        distinct_ids=len(ids),
        distinct_message_ids=len(message_ids),
        bad_jobs=bad,
    )
