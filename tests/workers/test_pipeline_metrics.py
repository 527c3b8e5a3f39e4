"""The persist pipeline counts what it stored, what was a duplicate and what it quarantined, once per
commit: a job run twice counts its events as duplicates the second time, never as stored twice."""

from __future__ import annotations

import psycopg
from prometheus_client import REGISTRY

from tests.workers.test_store import make_event
from trackgate.schemas.jobs import PersistBatch
from trackgate.workers import pipeline


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counts() -> tuple[float, ...]:
    return (
        sample("trackgate_events_stored_total", dialect="segment"),
        sample("trackgate_events_duplicate_total", dialect="segment"),
        sample("trackgate_events_quarantined_total", stage="store"),
        sample("trackgate_store_lag_seconds_count"),
    )


def test_a_batch_run_twice_is_stored_once_then_counted_duplicate(db, database_url):
    bad = make_event("m-bad", properties={"x": "a\x00b"})  # PostgreSQL refuses a NUL in jsonb
    batch = PersistBatch(batch_id="b1", events=[make_event("m-1"), make_event("m-2"), bad, make_event("m-1")])
    before = counts()
    with psycopg.connect(database_url) as conn:
        pipeline.persist(conn, batch, None)
        first = counts()
        pipeline.persist(conn, batch, None)
    second = counts()
    # first run: two stored, the repeated m-1 a duplicate, the bad one quarantined; two lags observed
    assert [a - b for a, b in zip(first, before, strict=True)] == [2, 1, 1, 2]
    # second run: all three good ones are duplicates; the bad one is refused again, its row exists already
    assert [a - b for a, b in zip(second, first, strict=True)] == [0, 3, 0, 0]


def test_lags_are_counted_in_the_buckets_and_sum_observe_gives_them():
    """The store lags go into the histogram one ``inc`` per bucket (``metrics.observe_all``): the
    same buckets, count and sum as ``observe`` of each, bounds and zeros included."""
    from prometheus_client import CollectorRegistry, Histogram

    from trackgate.schemas.metrics import LAG_BUCKETS, observe_all

    registry = CollectorRegistry()
    one_by_one = Histogram("one", "", buckets=LAG_BUCKETS, registry=registry)
    folded = Histogram("folded", "", buckets=LAG_BUCKETS, registry=registry)
    values = [0.0, 0.0004, *LAG_BUCKETS[:-1], 0.75, 3.0, 42.0, 1e7] * 3
    for value in values:
        one_by_one.observe(value)
    observe_all(folded, values)
    observe_all(folded, [])

    def samples(name: str) -> list[tuple[str, dict, float]]:
        return [
            (s.name.removeprefix(name), s.labels, round(s.value, 6))
            for m in registry.collect()
            if m.name == name
            for s in m.samples
            if not s.name.endswith("_created")
        ]

    assert samples("folded") == samples("one") and samples("one")
