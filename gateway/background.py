"""Work the gateway hands to the workers outside the accept path (the TinyTrail API's deletes): one RQ
job, named by its dotted path (the gateway never imports worker code), written with RQ's own API into a
pipeline that is never executed and replayed on the gateway's asyncio Redis client in one MULTI/EXEC,
as the publisher writes its batches (``gateway/publisher.py``): stock RQ workers run it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rq import Queue, Retry

from trackgate.gateway.errors import Unavailable
from trackgate.schemas.jobs import MsgspecJSONSerializer

_RECORDER = redis.Redis()
"""A synchronous client that is never connected: RQ writes its commands into its pipelines."""
REDIS_VERSION = (7, 0, 0)
"""What RQ records on the job (it would ask the server otherwise); it does not change the job's form."""


async def enqueue(
    client: aioredis.Redis,
    func: str,
    args: list[Any],
    *,
    queue: str,
    description: str,
    retry: Retry | None = None,
    timeout: float = 2.0,
) -> str:
    """Queue ``func(*args)`` (JSON-safe arguments) on ``queue``; its job id. ``Unavailable`` (503)
    when Redis does not take it within ``timeout`` seconds."""
    rq_queue = Queue(queue, connection=_RECORDER, serializer=MsgspecJSONSerializer)
    rq_queue.redis_server_version = REDIS_VERSION
    recording = _RECORDER.pipeline(transaction=True)
    job = rq_queue.create_job(func, args=args, description=description, result_ttl=3600, retry=retry)
    rq_queue.enqueue_job(job, pipeline=recording)
    try:
        async with asyncio.timeout(timeout), client.pipeline(transaction=True) as pipe:
            for command, _options in recording.command_stack:
                pipe.execute_command(*command)
            await pipe.execute()
    except (RedisError, OSError, TimeoutError) as exc:
        raise Unavailable("Redis did not take the job; nothing was changed, retry") from exc
    return job.id
