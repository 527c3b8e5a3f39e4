"""``GET /metrics``: what every process of this run counted (``schemas/metrics.py``), and the queues.

The counters are summed from every process's files (multiprocess mode) or read from this process. The
queues are read from Redis now, at scrape time, by :class:`QueueCollector`, never counted per request:
depth, the age of the job at the head (the next one a worker takes, so the oldest waiting), and the
jobs scheduled for later (retries) and failed for good. Two round trips per scrape, none per request.

No authentication: Prometheus scrapes over an internal network, and nothing here is secret (counts by
dialect, reason, destination id). ``TRACKGATE_METRICS=off`` leaves the route out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from starlette.requests import Request
from starlette.responses import Response

from trackgate.schemas import metrics
from trackgate.schemas.destinations import FORWARD_QUEUE
from trackgate.schemas.jobs import PERSIST_QUEUE

log = logging.getLogger(__name__)

QUEUES = (PERSIST_QUEUE, FORWARD_QUEUE)
SCRAPE_TIMEOUT_SECONDS = 2.0
_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How RQ writes ``enqueued_at`` (``rq.utils.utcformat``)."""


class QueueState(msgspec.Struct, frozen=True):
    queue: str
    depth: int
    oldest_age: float
    """Seconds since the head job was enqueued (Redis's clock); 0 when the queue is empty."""
    scheduled: int
    failed: int


async def read_queues(client: aioredis.Redis, names: Sequence[str] = QUEUES) -> list[QueueState]:
    """Each queue's state, in two round trips."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.time()
        for name in names:
            pipe.llen(Queue.redis_queue_namespace_prefix + name)
            pipe.lindex(Queue.redis_queue_namespace_prefix + name, 0)
            pipe.zcard(ScheduledJobRegistry.key_template.format(name))
            pipe.zcard(FailedJobRegistry.key_template.format(name))
        replies = await pipe.execute()
    seconds, micros = replies[0]
    now = seconds + micros / 1_000_000
    per_queue = [replies[1 + 4 * i : 5 + 4 * i] for i in range(len(names))]
    heads = [head for _, head, _, _ in per_queue if head is not None]
    enqueued: dict[bytes, bytes | None] = {}
    if heads:
        async with client.pipeline(transaction=False) as pipe:
            for head in heads:
                pipe.hget(Job.key_for(head.decode()), "enqueued_at")
            enqueued = dict(zip(heads, await pipe.execute(), strict=True))
    states = []
    for name, (depth, head, scheduled, failed) in zip(names, per_queue, strict=True):
        age = 0.0
        stamp = enqueued.get(head) if head is not None else None
        if stamp:
            at = datetime.strptime(stamp.decode(), _TIMESTAMP).replace(tzinfo=UTC).timestamp()
            age = max(0.0, now - at)
        states.append(QueueState(name, int(depth), age, int(scheduled), int(failed)))
    return states


class QueueCollector:
    """A prometheus-client collector of queue states read just before (``read_queues``)."""

    def __init__(self, states: list[QueueState] | None) -> None:
        self.states = states

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(
            "trackgate_queue_read_ok", "1 when this scrape could read the queues from Redis, else 0."
        )
        up.add_metric([], 1.0 if self.states is not None else 0.0)
        yield up
        if self.states is None:
            return
        families = (
            ("trackgate_queue_depth", "Jobs waiting in the queue.", "depth"),
            (
                "trackgate_queue_oldest_job_age_seconds",
                "Seconds the job at the head of the queue has waited (0: empty).",
                "oldest_age",
            ),
            ("trackgate_queue_scheduled_jobs", "Jobs scheduled to run later (retries).", "scheduled"),
            ("trackgate_queue_failed_jobs", "Jobs in RQ's failed registry (no retries left).", "failed"),
        )
        for name, documentation, field in families:
            family = GaugeMetricFamily(name, documentation, labels=["queue"])
            for state in self.states:
                family.add_metric([state.queue], float(getattr(state, field)))
            yield family


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics: the Prometheus text format."""
    from prometheus_client import CollectorRegistry

    client: aioredis.Redis | None = request.app.state.runtime.redis
    counts = getattr(request.app.state, "accept_counts", None)
    if counts is not None:  # this process's latest counts (the others' are at most a second late)
        counts.flush()
    states: list[QueueState] | None = None
    if client is not None:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
                states = await read_queues(client)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("metrics_queues_unreadable error=%r", exc)
    queues = CollectorRegistry()
    queues.register(QueueCollector(states))  # type: ignore[arg-type]  # prometheus-client's Collector
    # reading every process's files is file I/O: off the event loop
    body, content_type = await asyncio.to_thread(metrics.exposition, metrics.registry(), queues)
    return Response(body, media_type=content_type)
