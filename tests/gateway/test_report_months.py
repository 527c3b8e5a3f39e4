"""A long period reads whole clean months from ``report_months`` and the other days from
``report_rows`` (gateway/reports/data.py), with the same numbers as the days alone would give."""

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


def _view(n: int, source_id: str, at: datetime, path: str, visitor: str) -> Event:
    return make_event(
        f"v{n}",
        source_id=source_id,
        received_at=at,
        type="page",
        name=None,
        user_id=None,
        context=Context(ip="203.0.113.9", page=Page(path=path)),
        enrichment={"visitor_id": visitor},
    )


def _read(database_url: str, source_id: str, given: dict[str, str]) -> tuple[data.Period, dict[str, int]]:
    async def run() -> tuple[data.Period, dict[str, int]]:
        conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        async with conn:
            query = params.parse(given, TODAY)
            start, end = params.span(query, TODAY, None)
            async with data.reading(conn):
                span = await data.period(conn, source_id, start, end, TODAY)
                table = await data.rows(conn, data.RawCache(0), span, query, ["path"])
        return span, {path: c.pageviews for path, c in table.dim("path").items()}

    return asyncio.run(run())


def test_whole_clean_months_come_from_the_month_sums(settings, db):
    source, _ = add_source(settings.database_url, "segment", "web", "wk-months")
    sid = source.id
    at = datetime(2026, 3, 5, 10, tzinfo=UTC)
    views = [
        _view(1, sid, datetime(2026, 2, 27, 10, tzinfo=UTC), "/", "a"),  # Feb: never aggregated, raw
        _view(2, sid, at, "/", "a"),  # March: 3 views of / (two days), 1 of /pricing
        _view(3, sid, at + timedelta(minutes=1), "/pricing", "a"),
        _view(4, sid, datetime(2026, 3, 20, 9, tzinfo=UTC), "/", "b"),
        _view(5, sid, datetime(2026, 3, 31, 23, 59, tzinfo=UTC), "/", "c"),
        _view(6, sid, datetime(2026, 4, 1, 8, tzinfo=UTC), "/pricing", "c"),  # April 1: a clean day
    ]
    store.store_events(db, "b1", views)
    day = date(2026, 3, 1)
    while day <= date(2026, 4, 1):
        aggregate.aggregate_day(db, day, sid)
        day += timedelta(days=1)
    march = db.execute(
        "SELECT key, pageviews FROM report_months WHERE source_id = %s AND dim = 'path' AND scope = ''"
        " AND NOT bots AND month = '2026-03-01' ORDER BY key",
        (sid,),
    ).fetchall()
    assert march == [("/", 3), ("/pricing", 1)]

    given = {"start_date": "2026-02-25", "end_date": "2026-04-02"}
    span, pages = _read(settings.database_url, sid, given)
    assert span.months_and_days()[0] == [date(2026, 3, 1)]  # Feb and April are not whole or clean
    assert pages == {"/": 4, "/pricing": 2}  # Feb 27 (raw) 1 + March 3 | March 1 + April 1 1
    # March is read from its sums alone: its days' rows can go
    db.execute("DELETE FROM report_rows WHERE day < '2026-04-01'")
    assert _read(settings.database_url, sid, given)[1] == {"/": 4, "/pricing": 2}
    # a late event in March makes the month unusable until it is rebuilt: its days are read again
    with db.transaction():
        aggregate.mark_late(db, [_view(7, sid, datetime(2026, 3, 20, 9, 5, tzinfo=UTC), "/", "b")], TODAY)
    span, _ = _read(settings.database_url, sid, given)
    assert span.months_and_days()[0] == [] and date(2026, 3, 20) in span.raw_days
