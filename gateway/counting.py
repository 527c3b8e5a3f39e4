"""What the accept path counts, added up in plain integers and handed to prometheus-client once a second.

A prometheus-client counter takes a lock on every ``inc`` and, in multiprocess mode, writes a
memory-mapped file: about 1 µs each, three a request, and a histogram's ``observe`` two of those plus
its bucket search (~3 µs). The accept path adds to a :class:`Tally`'s plain attributes instead (the
latency as a count per histogram bucket and a sum), and :meth:`AcceptCounts.flush` moves the sums into
the metrics: once a second (the app's lifespan runs :meth:`AcceptCounts.run`), before every scrape this
process answers, and at shutdown. So another process's counts reach a scrape at most ``FLUSH_SECONDS``
late. The metrics' names, labels and buckets are prometheus-client's as before.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from typing import Protocol

from trackgate.schemas.metrics import GatewayMetrics, fold

FLUSH_SECONDS = 1.0


class Tally:
    """One dialect's counts since the last flush."""

    __slots__ = ("accepted", "bounds", "bytes_in", "events", "latency", "latency_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.accepted = 0
        self.events = 0
        self.bytes_in = 0
        self.bounds = bounds
        """The latency histogram's upper bounds (the last is +Inf)."""
        self.latency = [0] * len(bounds)
        """Observations per bucket (each counted in the first bucket whose bound is not below it)."""
        self.latency_sum = 0.0

    def observe(self, seconds: float) -> None:
        self.latency[bisect_left(self.bounds, seconds)] += 1
        self.latency_sum += seconds


class Flushes(Protocol):
    """What the publisher counts of its writes (``gateway/publisher.py``), never reset."""

    flushes: int
    flushed_requests: int
    lingered: int


class AcceptCounts:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._tallies: dict[str, Tally] = {}
        self._refused: dict[tuple[str, str, str], int] = {}
        self.publisher: Flushes | None = None
        """The running publisher, whose flush counts are moved into the metrics too."""
        self._flushes_seen = (0, 0, 0)

    def of(self, dialect: str) -> Tally:
        tally = self._tallies.get(dialect)
        if tally is None:
            tally = self._tallies[dialect] = Tally(tuple(self._metrics.latency.labels(dialect)._upper_bounds))
        return tally

    def refused(self, dialect: str, status: int, reason: str) -> None:
        key = (dialect, str(status), reason)
        self._refused[key] = self._refused.get(key, 0) + 1

    def flush(self) -> None:
        """Add what was counted since the last flush to the metrics (a no-op when nothing was)."""
        metrics = self._metrics
        for dialect, tally in self._tallies.items():
            if tally.accepted:
                metrics.accepted.labels(dialect).inc(tally.accepted)
                tally.accepted = 0
            if tally.events:
                metrics.events.labels(dialect).inc(tally.events)
                tally.events = 0
            if tally.bytes_in:
                metrics.bytes_in.labels(dialect).inc(tally.bytes_in)
                tally.bytes_in = 0
            if any(tally.latency):
                counts, total = tally.latency, tally.latency_sum
                tally.latency, tally.latency_sum = [0] * len(counts), 0.0
                fold(metrics.latency.labels(dialect), counts, total)
        refused, self._refused = self._refused, {}
        for labels, n in refused.items():
            metrics.refused.labels(*labels).inc(n)
        publisher = self.publisher
        if publisher is not None and publisher.flushes != self._flushes_seen[0]:
            flushes, requests, lingered = publisher.flushes, publisher.flushed_requests, publisher.lingered
            metrics.flushes.inc(flushes - self._flushes_seen[0])
            metrics.flushed_requests.inc(requests - self._flushes_seen[1])
            metrics.lingered.inc(lingered - self._flushes_seen[2])
            self._flushes_seen = (flushes, requests, lingered)

    async def run(self) -> None:
        """Flush every ``FLUSH_SECONDS`` until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                self.flush()
        finally:
            self.flush()
