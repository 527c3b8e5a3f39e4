"""Running an RQ worker on trackgate's queues."""

from __future__ import annotations

import redis
from rq import Queue

from trackgate.schemas.destinations import FORWARD_QUEUE
from trackgate.schemas.jobs import PERSIST_QUEUE, MsgspecJSONSerializer
from trackgate.schemas.settings import ServerSettings, tune_gc
from trackgate.workers import runtime
from trackgate.workers.forward import outbox
from trackgate.workers.reliable import ReliableWorker


def build_worker(settings: ServerSettings, queue_names: tuple[str, ...] = (PERSIST_QUEUE,)) -> ReliableWorker:
    """A SimpleWorker: jobs run in this process, so the PostgreSQL pool lives across jobs and a batch
    costs no fork (RQ's own benchmark: ~1k jobs/s against ~150/s for the forking worker).

    Reliable (``workers/reliable.py``): a job taken from a queue is in this worker's processing list
    until RQ has recorded its end, and is back in its queue within ~``ALIVE_TTL`` s if the worker dies;
    the worker runs RQ's scheduler in a thread (``work(with_scheduler=False)``)."""
    runtime.configure(settings)
    connection = redis.Redis.from_url(settings.redis_url)
    queues = [Queue(name, connection=connection, serializer=MsgspecJSONSerializer) for name in queue_names]
    return ReliableWorker(queues, connection=connection, serializer=MsgspecJSONSerializer)


QUEUES = {"persist": PERSIST_QUEUE, "forward": FORWARD_QUEUE}


def run(
    settings: ServerSettings, *, burst: bool = False, queues: tuple[str, ...] = ("persist", "forward")
) -> None:
    """Queues in priority order; run a worker per queue so a slow destination never delays persisting."""
    worker = build_worker(settings, tuple(QUEUES[name] for name in queues))
    outbox.start_sweeper(runtime.current())  # forwards whose jobs were never queued, busy or idle
    tune_gc()
    worker.work(burst=burst, with_scheduler=False, logging_level=settings.log_level)
