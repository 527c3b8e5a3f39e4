"""What the accept path counts, added up in plain integers and handed to prometheus-client once a second.

A prometheus-client counter takes a lock on every ``inc`` and, in multiprocess mode, writes a
memory-mapped file: about 1 µs each, three a request. The accept path adds to a :class:`Tally`'s plain
attributes instead, and :meth:`AcceptCounts.flush` moves the sums into the counters: once a second (the
app's lifespan runs :meth:`AcceptCounts.run`), before every scrape this process answers, and at
shutdown. So another process's counts reach a scrape at most ``FLUSH_SECONDS`` late. The latency
histogram is still observed per request: its buckets need each value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from trackgate.schemas.metrics import GatewayMetrics

FLUSH_SECONDS = 1.0


class Tally:
    """One dialect's counts since the last flush."""

    __slots__ = ("accepted", "bytes_in", "events", "observe")

    def __init__(self, observe: Callable[[float], None]) -> None:
        self.accepted = 0
        self.events = 0
        self.bytes_in = 0
        self.observe = observe
        """The latency histogram's ``observe`` for this dialect (its label resolved once)."""


class AcceptCounts:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._tallies: dict[str, Tally] = {}
        self._refused: dict[tuple[str, str, str], int] = {}

    def of(self, dialect: str) -> Tally:
        tally = self._tallies.get(dialect)
        if tally is None:
            tally = self._tallies[dialect] = Tally(self._metrics.latency.labels(dialect).observe)
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
        refused, self._refused = self._refused, {}
        for labels, n in refused.items():
            metrics.refused.labels(*labels).inc(n)

    async def run(self) -> None:
        """Flush every ``FLUSH_SECONDS`` until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                self.flush()
        finally:
            self.flush()
