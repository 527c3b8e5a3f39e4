"""The daily aggregation (workers/aggregate.py over schemas/aggregates.py) on real PostgreSQL: sessions,
bounces and durations counted by hand, the same rows on a re-run, late events marking their day dirty
in the store's transaction, and the daily schedule queued once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from rq import Queue

from tests.helpers import make_event
from trackgate.schemas.event import Context, Event, Page
from trackgate.schemas.jobs import PERSIST_QUEUE, MsgspecJSONSerializer, PersistBatch
from trackgate.sources import add_source
from trackgate.workers import aggregate, pipeline, store

DAY = date(2026, 3, 18)
T = datetime(2026, 3, 18, 10, 0, tzinfo=UTC)


def _page(n: int, source_id: str, visitor: str, minutes: float, path: str, **enrichment) -> Event:
    return make_event(
        f"m{n}",
        source_id=source_id,
        received_at=T + timedelta(minutes=minutes),
        type="page",
        name=None,
        user_id=None,
        context=Context(ip="203.0.113.9", page=Page(path=path, url=f"https://example.com{path}")),
        enrichment={"visitor_id": visitor, **enrichment},
    )


def _rows(db, source_id: str) -> list[tuple]:
    return db.execute(
        "SELECT dim, scope, bots, key, pageviews, unique_pageviews, visits, visitors, bounces, duration,"
        " entries, exits, events FROM report_rows WHERE source_id = %s ORDER BY dim, scope, bots, key",
        (source_id,),
    ).fetchall()


def test_a_day_is_counted_by_hand_and_a_rerun_gives_the_same_rows(settings, db):
    source, _ = add_source(settings.database_url, "segment", "web", "wk-agg")
    sid = source.id
    events = [
        # visitor a: /, /pricing (10 min later), then 40 idle minutes, /docs: two visits, one a bounce
        _page(1, sid, "a", 0, "/", channel="Organic Search"),
        _page(2, sid, "a", 10, "/pricing"),
        _page(3, sid, "a", 50, "/docs"),
        # visitor b: one page view, a bot: rows of their own
        _page(4, sid, "b", 5, "/", is_bot=True),
        # visitor c: excluded: never counted
        _page(5, sid, "c", 5, "/", is_excluded=True),
        # visitor a's custom event inside the second visit (2 minutes after /docs)
        make_event(
            "m6",
            source_id=sid,
            received_at=T + timedelta(minutes=52),
            user_id=None,
            enrichment={"visitor_id": "a"},
            name="Signed Up",
        ),  # fmt: skip
    ]
    store.store_events(db, "b1", events)
    assert aggregate.aggregate_day(db, DAY, sid) == 1
    first = _rows(db, sid)
    humans = {(r[0], r[3]): r[4:] for r in first if r[1] == "" and not r[2]}
    # total: 3 page views; 2 visits (a's first: / + /pricing, 10 min; a's second: /docs + event, 2 min);
    # 1 visitor; 1 bounce (the second visit has one page view); 600 + 120 s
    assert humans[("total", "")] == (3, 3, 2, 1, 1, 720.0, 0, 0, 0)
    # / : 1 view, landing of visit 1 (600 s, no bounce); /pricing: exit of visit 1; /docs: the bounce
    assert humans[("path", "/")] == (1, 1, 1, 1, 0, 600.0, 1, 0, 0)
    assert humans[("path", "/pricing")] == (1, 1, 0, 1, 0, 0.0, 0, 1, 0)
    assert humans[("path", "/docs")] == (1, 1, 1, 1, 1, 120.0, 1, 1, 0)
    assert humans[("event", "Signed Up")] == (0, 0, 0, 1, 0, 0.0, 0, 0, 1)
    # the first visit's first page view came from search; the second has no channel: Direct
    assert humans[("channel", "Organic Search")][2] == 1 and humans[("channel", "Direct")][2] == 1
    bots = {(r[0], r[3]): r[4:] for r in first if r[2]}
    assert bots[("total", "")] == (1, 1, 1, 1, 1, 0.0, 0, 0, 0)
    assert not any(r[0] == "path" and r[4] == 3 for r in first)  # c, excluded, is nowhere
    steps = db.execute(
        "SELECT steps, sessions FROM report_sequences WHERE source_id = %s AND scope = '' AND NOT bots"
        " ORDER BY steps",
        (sid,),
    ).fetchall()
    assert steps == [(["/", "/pricing"], 1), (["/docs", "Signed Up"], 1)]

    assert aggregate.aggregate_day(db, DAY, sid) == 1
    assert _rows(db, sid) == first
    clean = db.execute(
        "SELECT dirty FROM report_days WHERE source_id = %s AND day = %s", (sid, DAY)
    ).fetchone()
    assert clean == (False,)


def test_late_events_mark_their_day_dirty_and_the_job_rebuilds_it(settings, db):
    source, _ = add_source(settings.database_url, "segment", "web", "wk-late")
    sid = source.id
    aggregate.aggregate_day(db, DAY, sid)
    assert _rows(db, sid) == []
    with db.transaction():
        n = aggregate.mark_late(db, [_page(1, sid, "a", 0, "/")], today=DAY + timedelta(days=1))
    assert n == 1
    with db.transaction():  # an event of today marks nothing
        assert aggregate.mark_late(db, [_page(2, sid, "a", 0, "/")], today=DAY) == 0
    assert db.execute("SELECT dirty FROM report_days WHERE source_id = %s", (sid,)).fetchall() == [(True,)]
    store.store_events(db, "b1", [_page(1, sid, "a", 0, "/")])
    assert aggregate.aggregate_dirty(db) == 1
    assert db.execute("SELECT dirty FROM report_days WHERE source_id = %s", (sid,)).fetchall() == [(False,)]
    assert [r[:4] for r in _rows(db, sid) if r[0] == "total"] == [("total", "", False, "")]


def test_the_store_path_marks_late_days(settings, db):
    """Through the pipeline: a stored event of a closed day marks it, in the store's transaction."""
    source, _ = add_source(settings.database_url, "segment", "web", "wk-pipe")
    batch_events = [_page(1, source.id, "a", 0, "/")]
    pipeline.persist(db, PersistBatch(batch_id="b1", events=batch_events), None)
    marked = db.execute("SELECT day, dirty FROM report_days WHERE source_id = %s", (source.id,)).fetchall()
    assert marked == [(DAY, True)]


def test_the_closed_day_is_queued_once_and_the_job_rebuilds_it(settings, db, rdb, drain, monkeypatch):
    source, _ = add_source(settings.database_url, "segment", "web", "wk-job")
    queue = Queue(PERSIST_QUEUE, connection=rdb, serializer=MsgspecJSONSerializer)
    monkeypatch.setattr(aggregate, "_checked_day", None)
    # the first worker of an installation records the day closed, with nothing to catch up
    assert aggregate.schedule_daily(rdb, date(2026, 3, 18)) == []
    assert rdb.get(aggregate.LAST_SCHEDULED_KEY) == b"2026-03-17" and queue.count == 0
    # the next day: the first job queues the day that closed, once
    today = date(2026, 3, 19)
    assert aggregate.schedule_daily(rdb, today) == ["2026-03-18"]
    assert aggregate.schedule_daily(rdb, today) == []  # this process checked today already
    monkeypatch.setattr(aggregate, "_checked_day", None)
    assert aggregate.schedule_daily(rdb, today) == []  # another process: the day is queued
    assert [(j.func_name, list(j.args)) for j in queue.jobs] == [(aggregate.AGGREGATE_FUNC, ["2026-03-18"])]
    drain()
    marked = db.execute("SELECT day, dirty FROM report_days WHERE source_id = %s", (source.id,)).fetchall()
    assert marked == [(DAY, False)]
    # workers down for three days: each skipped day is queued
    monkeypatch.setattr(aggregate, "_checked_day", None)
    assert aggregate.schedule_daily(rdb, date(2026, 3, 22)) == ["2026-03-19", "2026-03-20", "2026-03-21"]
