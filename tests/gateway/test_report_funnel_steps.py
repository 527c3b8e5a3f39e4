"""The funnel over stored days (``report_step_sequences``, steps as ``report_steps`` ids) counts what the
same days read raw count: steps in order, a step the source never had matching nothing, another
source's steps (their own ids) never mixed in."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import psycopg

from tests.helpers import make_event
from trackgate.gateway.reports import data, params
from trackgate.schemas.event import Context, Event, Page
from trackgate.sources import add_source
from trackgate.workers import aggregate, store

TODAY = date(2026, 4, 3)
DAY = datetime(2026, 3, 5, 10, tzinfo=UTC)


def _view(n: int, source_id: str, minutes: int, path: str, visitor: str) -> Event:
    return make_event(
        f"{source_id}-v{n}",
        source_id=source_id,
        received_at=DAY + timedelta(minutes=minutes),
        type="page",
        name=None,
        user_id=None,
        context=Context(ip="203.0.113.9", page=Page(path=path)),
        enrichment={"visitor_id": visitor},
    )


def _funnel(database_url: str, source_id: str, steps: list[str]) -> tuple[data.Period, list[int]]:
    async def run() -> tuple[data.Period, list[int]]:
        conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        async with conn:
            query = params.parse({"start_date": "2026-03-04", "end_date": "2026-03-06"}, TODAY)
            start, end = params.span(query, TODAY, None)
            async with data.reading(conn):
                span = await data.period(conn, source_id, start, end, TODAY)
                counts = await data.funnel(conn, data.RawCache(0), span, query, steps)
        return span, counts

    return asyncio.run(run())


def test_stored_funnel_counts_as_the_raw_one(settings, db):
    sid = add_source(settings.database_url, "segment", "web", "wk-funnel-a")[0].id
    other = add_source(settings.database_url, "segment", "shop", "wk-funnel-b")[0].id
    views = [
        # one visit each: a / → /pricing → /signup, b /pricing → / → /signup, c /signup → / → /pricing
        _view(1, sid, 0, "/", "a"),
        _view(2, sid, 1, "/pricing", "a"),
        _view(3, sid, 2, "/signup", "a"),
        _view(4, sid, 0, "/pricing", "b"),
        _view(5, sid, 1, "/", "b"),
        _view(6, sid, 2, "/signup", "b"),
        _view(7, sid, 0, "/signup", "c"),
        _view(8, sid, 1, "/", "c"),
        _view(9, sid, 2, "/pricing", "c"),
        # the other source follows the whole funnel twice: never counted for the first
        _view(1, other, 0, "/", "d"),
        _view(2, other, 1, "/pricing", "d"),
        _view(3, other, 2, "/signup", "d"),
        _view(4, other, 0, "/", "e"),
        _view(5, other, 1, "/pricing", "e"),
        _view(6, other, 2, "/signup", "e"),
    ]
    store.store_events(db, "b1", views)
    asks = (
        (["/", "/pricing", "/signup"], [3, 2, 1]),
        (["/pricing", "/signup"], [3, 2]),
        (["/never", "/pricing"], [0, 0]),
        (["/", "/never", "/pricing"], [3, 0, 0]),
    )
    raw = {tuple(steps): _funnel(settings.database_url, sid, steps) for steps, _ in asks}
    assert all(span.raw_days for span, _ in raw.values())  # nothing aggregated yet: read raw
    for day in (date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)):
        aggregate.aggregate_day(db, day, sid)
        aggregate.aggregate_day(db, day, other)
    n_steps = db.execute("SELECT count(*) FROM report_steps WHERE source_id = %s", (sid,)).fetchone()
    assert n_steps == (3,)
    for steps, expected in asks:
        span, counts = _funnel(settings.database_url, sid, steps)
        assert not span.raw_days  # every day read from report_step_sequences
        assert counts == expected == raw[tuple(steps)][1], steps
