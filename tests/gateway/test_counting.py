"""The accept path's counts (``gateway/counting.py``): latencies binned in plain integers and folded
into the Prometheus histogram at flush give the exposition that observing each one would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from trackgate.gateway.counting import AcceptCounts
from trackgate.schemas.metrics import LATENCY_BUCKETS


class _Metrics:
    """The gateway's metric shapes in a registry of the test's own."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.accepted = Counter(prefix + "accepted", "a", ["dialect"], registry=registry)
        self.refused = Counter(prefix + "refused", "r", ["dialect", "status", "reason"], registry=registry)
        self.events = Counter(prefix + "events", "e", ["dialect"], registry=registry)
        self.bytes_in = Counter(prefix + "bytes", "b", ["dialect"], registry=registry)
        self.latency = Histogram(
            prefix + "latency", "l", ["dialect"], buckets=LATENCY_BUCKETS, registry=registry
        )


def test_folded_latencies_expose_as_observed_ones():
    rng = random.Random(7)
    values = [rng.choice([0.0001, 0.0005, 0.001, 0.003, 5.0, 7.5]) for _ in range(50)]
    values += [rng.expovariate(200) for _ in range(500)]
    folded_registry, observed_registry = CollectorRegistry(), CollectorRegistry()
    folded, observed = _Metrics(folded_registry, "m_"), _Metrics(observed_registry, "m_")
    counts = AcceptCounts(folded)  # type: ignore[arg-type]  # the same shapes as GatewayMetrics
    for i, seconds in enumerate(values):
        dialect = "segment" if i % 3 else "openpanel"
        counts.of(dialect).observe(seconds)
        observed.latency.labels(dialect).observe(seconds)
        if i == 300:
            counts.flush()  # a flush between observations adds up, it does not reset
    counts.flush()
    counts.flush()  # nothing new: no change

    def lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if "latency" in line and "_created" not in line]

    folded_lines, observed_lines = lines(folded_registry), lines(observed_registry)
    assert any("_bucket" in line for line in folded_lines)
    for a, b in zip(folded_lines, observed_lines, strict=True):
        if "_sum" in a:  # the same values added in another order
            name_a, value_a = a.rsplit(" ", 1)
            name_b, value_b = b.rsplit(" ", 1)
            assert name_a == name_b and abs(float(value_a) - float(value_b)) < 1e-9
        else:
            assert a == b
