"""The Prometheus metrics trackgate counts, defined once for the gateway and the workers.

Here (not in ``gateway/`` or ``workers/``) because both sides count into them and neither imports the
other. Each side gets its set from :func:`gateway` or :func:`worker`: made on first use, once per
process, in prometheus-client's default registry.

Several processes (``trackgate serve --workers N``, ``up``'s gateway and workers): prometheus-client's
multiprocess mode, where every process writes its values to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` and a scrape sums them (:func:`exposition`). prometheus-client decides
between in-process values and those files when it is first imported, so this module imports it only
inside the functions below: the composition root (``trackgate.observe``) sets the directory first.

Queue depths are not kept here: the gateway reads them from Redis at scrape time
(``gateway/metrics.py``). Nothing here is a gauge, so a dead process's files stay valid (its counts
are part of the totals) and ``mark_process_dead`` has nothing live to drop.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds, accept path: most answers take a millisecond or two; 2 s is the Redis timeout."""
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)
"""Seconds from received to stored: under a second when workers keep up; hours after an outage."""


def fold(histogram: Any, counts: list[int], total: float) -> None:
    """Add ``counts`` (per bucket) and their sum to a prometheus-client histogram child: what
    ``observe`` does for each value, in one ``inc`` per bucket. A histogram's ``observe`` takes two
    locked ``inc`` (memory-mapped writes in multiprocess mode) and a bucket search, ~3 µs a value.
    Uses prometheus-client's ``_upper_bounds``, ``_buckets`` and ``_sum``, which
    ``tests/gateway/test_counting.py`` and ``tests/workers/test_pipeline_metrics.py`` check against
    ``observe``."""
    histogram._sum.inc(total)
    for bucket, n in zip(histogram._buckets, counts, strict=True):
        if n:
            bucket.inc(n)


def observe_all(histogram: Any, values: list[float]) -> None:
    """``histogram.observe`` of each value, folded (:func:`fold`): each counted in the first bucket
    whose bound is not below it, as prometheus-client counts it."""
    if not values:
        return
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    fold(histogram, counts, sum(values))


class GatewayMetrics:
    """What the accept path counts (``gateway/ingest.py``)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.accepted: Counter = Counter(
            "trackgate_requests_accepted",
            "Requests answered 2xx: their events are in Redis.",
            ["dialect"],
        )
        self.refused: Counter = Counter(
            "trackgate_requests_refused",
            "Requests refused (nothing stored), by HTTP status and the error's stable code.",
            ["dialect", "status", "reason"],
        )
        self.events: Counter = Counter(
            "trackgate_events_accepted",
            "Events in the requests answered 2xx (handed to the persist queue).",
            ["dialect"],
        )
        self.bytes_in: Counter = Counter(
            "trackgate_request_bytes",
            "Request body bytes received on the accepting paths, as sent (before gunzip).",
            ["dialect"],
        )
        self.latency: Histogram = Histogram(
            "trackgate_request_duration_seconds",
            "Time from a request's headers to its answer on the accepting paths (accepted or refused).",
            ["dialect"],
            buckets=LATENCY_BUCKETS,
        )
        self.flushes: Counter = Counter(
            "trackgate_publish_flushes",
            "Writes of accepted requests' jobs to Redis (one script each; its requests' 2xx wait for it).",
        )
        self.flushed_requests: Counter = Counter(
            "trackgate_publish_flushed_requests",
            "Requests those writes carried: divided by the flushes, the requests a flush"
            " (TRACKGATE_PUBLISH_LINGER_MS trades latency for more).",
        )
        self.lingered: Counter = Counter(
            "trackgate_publish_lingered_flushes",
            "Writes that waited TRACKGATE_PUBLISH_LINGER_MS for more requests (with"
            " TRACKGATE_PUBLISH_LINGER_ABOVE_CPU_PCT set, only while the event loop was busy).",
        )


class WorkerMetrics:
    """What the persist pipeline (``workers/pipeline.py``) and forward delivery count."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.stored: Counter = Counter(
            "trackgate_events_stored", "Events stored for the first time.", ["dialect"]
        )
        self.duplicate: Counter = Counter(
            "trackgate_events_duplicate",
            "Events not stored because their (source, message id) was stored before (a retry).",
            ["dialect"],
        )
        self.quarantined: Counter = Counter(
            "trackgate_events_quarantined",
            "New quarantine rows: events PostgreSQL refused (stage=store) and items a dialect answered"
            " 2xx to but could not accept (stage=gateway).",
            ["stage"],
        )
        self.store_lag: Histogram = Histogram(
            "trackgate_store_lag_seconds",
            "Seconds from an event's arrival at the gateway (received_at) to its commit in PostgreSQL.",
            buckets=LAG_BUCKETS,
        )
        self.profile_updates: Counter = Counter(
            "trackgate_profile_updates",
            "Profiles and groups written by the events stored (kind=profile|group).",
            ["kind"],
        )
        self.profile_refused: Counter = Counter(
            "trackgate_profile_events_refused",
            "Stored events whose profile change PostgreSQL refused (a value beyond its range) or whose"
            " outbox row could not be read: the event is kept, its profile change is not made.",
        )
        self.profile_outbox_rows: Gauge = Gauge(
            "trackgate_profile_outbox_rows",
            "Profile outbox rows waiting to be applied, as the worker's applier last saw them.",
            multiprocess_mode="livemax",
        )
        self.profile_outbox_oldest: Gauge = Gauge(
            "trackgate_profile_outbox_oldest_seconds",
            "Age of the oldest profile outbox row waiting (0: none), as the worker's applier last saw it:"
            " it grows while the appliers fall behind or fail.",
            multiprocess_mode="livemax",
        )
        self.profile_lag: Histogram = Histogram(
            "trackgate_profile_lag_seconds",
            "Seconds from a store transaction's outbox row (written just before its commit) to the"
            " commit that applied its events to profiles (workers/profiles_outbox.py).",
            buckets=LAG_BUCKETS,
        )
        self.forwards: Counter = Counter(
            "trackgate_forward_requests",
            "Requests to destinations: delivered, retrying (failed, sent later) or dead (dead-lettered).",
            ["destination", "outcome"],
        )


_gateway: GatewayMetrics | None = None
_worker: WorkerMetrics | None = None


_made = threading.Lock()  # a worker's applier thread asks for them too: made once, by one thread


def gateway() -> GatewayMetrics:
    """This process's accept-path metrics (made on first call)."""
    global _gateway
    if _gateway is None:
        with _made:
            if _gateway is None:
                _gateway = GatewayMetrics()
    return _gateway


def worker() -> WorkerMetrics:
    """This process's worker metrics (made on first call, by one thread)."""
    global _worker
    if _worker is None:
        with _made:
            if _worker is None:
                _worker = WorkerMetrics()
    return _worker


def multiprocess_dir() -> str | None:
    """The directory the processes of this run share, when there is one."""
    return os.environ.get(MULTIPROC_ENV) or None


def registry() -> CollectorRegistry:
    """What a scrape reads: every process's files in multiprocess mode, else this process's registry."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    collected = CollectorRegistry()
    MultiProcessCollector(collected, path=path)
    return collected


def exposition(*registries: CollectorRegistry) -> tuple[bytes, str]:
    """The Prometheus text format of ``registries`` (metric names never repeat across them), and its
    media type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return b"".join(generate_latest(r) for r in registries), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int | None = None) -> None:
    """A process of a multiprocess run is exiting: drop what only a live process may report."""
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid if pid is not None else os.getpid(), path)
