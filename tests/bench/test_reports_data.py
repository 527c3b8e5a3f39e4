"""The reports benchmark's data (``bench/reports_data.py``): its rows are what trackgate stores for the
same requests, its traffic has the shape the bench claims, and a filled database is reused."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import httpx
import msgspec
import psycopg
from psycopg.conninfo import make_conninfo

from bench import reports_data as rd
from tests.helpers import live_gateway
from trackgate.gateway.tinytrail import new_source
from trackgate.schemas import enrichment_columns
from trackgate.sources import add_source
from trackgate.workers.enrich import runner

COMPARED = (
    "dialect",
    "dialect_version",
    "type",
    "name",
    "properties",
    "context",
    "enrichment",
    "raw",
    *enrichment_columns.COLUMNS,
)


def _website(settings) -> str:
    created = new_source(rd.WEBSITE_ID, rd.SETTINGS)
    source, _ = add_source(settings.database_url, "tinytrail", rd.DOMAIN, created["key"], created["settings"])
    return source.id


def _row(values: dict) -> str:
    """The compared columns of a row, as one JSON text (JSON columns parsed: key order aside)."""
    out = {}
    for column in COMPARED:
        value = values[column]
        out[column] = (
            json.loads(value) if isinstance(value, str) and column != "name" and value[:1] in "{[" else value
        )
    return json.dumps(out, sort_keys=True)


def test_generated_rows_are_what_the_gateway_and_the_worker_store(settings, db, drain, monkeypatch):
    """The same hits sent as a browser would (collect bodies, user agents, client IPs) through the real
    gateway and a real worker drain give exactly the generator's rows (ids and times aside)."""
    source_id = _website(settings)
    now = datetime.now(UTC)
    today = now.date()
    # the worker uses the generator's salt for today (a fresh Enricher reads it from visitor_salts)
    db.execute("DELETE FROM visitor_salts WHERE day = %s", (today,))
    db.execute("INSERT INTO visitor_salts (day, salt) VALUES (%s, %s)", (today, rd.day_salt(7, today)))
    monkeypatch.setattr(runner, "_current", None)
    site = rd.Site.build(7)
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    hits = rd.day_hits(site, today, 400, max(now, midnight + timedelta(hours=1)))
    expected = sorted(
        _row(dict(zip(rd.store.COLUMNS, rd.store.event_row(event, "b"), strict=True)))
        for event in rd.day_events(site, source_id, today, 400, max(now, midnight + timedelta(hours=1)))
    )
    proxied = msgspec.structs.replace(settings, trusted_proxies="127.0.0.0/8", tinytrail_rate_limit=0)
    with live_gateway(proxied) as base, httpx.Client(base_url=base) as client:
        for hit in hits:
            r = client.post(
                "/api/v1/collect",
                content=hit.body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": hit.visitor.agent,
                    "X-Forwarded-For": hit.visitor.ip,
                },
            )
            assert r.status_code in (202, 204), r.text
    drain()
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        stored = cur.execute("SELECT * FROM events WHERE source_id = %s", (source_id,)).fetchall()
    got = sorted(
        _row({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()}) for r in stored
    )
    assert len(got) == 400
    assert got == expected
    kinds = Counter(json.loads(r)["type"] for r in got)
    assert kinds["page"] > 100 and kinds["track"] > 100  # both kinds of rows were compared


def test_traffic_has_the_shape_the_bench_describes():
    site = rd.Site.build(12)
    day = date(2026, 3, 11)  # a Wednesday
    hits = rd.day_hits(site, day, 20_000, datetime(2026, 3, 12, tzinfo=UTC))
    assert len(hits) == 20_000
    assert [h.at for h in hits] == sorted(h.at for h in hits)
    assert all(h.at.date() == day for h in hits)
    bodies = [json.loads(h.body) for h in hits]
    bots = sum(h.visitor.kind == "bot" for h in hits) / len(hits)
    assert 0.03 <= bots <= 0.05
    types = Counter(b["event_type"] for b in bodies)
    assert 0.35 <= types["page_view"] / len(hits) <= 0.5
    names = {b["properties"]["name"] for b in bodies if b["event_type"] == "custom"}
    assert len(names) == 20
    paths = Counter(b["path"] for b in bodies if b["event_type"] == "page_view")
    assert len(paths) > 1000  # a long tail ...
    top = paths.most_common(10)
    assert sum(n for _, n in top) > 0.2 * sum(paths.values())  # ... under a few popular pages
    # visits: a visitor's page views less than 30 minutes apart; 1 to 8 page views, ~45% bounces
    views: dict[tuple[str, str], list[datetime]] = {}
    for h, b in zip(hits, bodies, strict=True):
        if b["event_type"] == "page_view" and h.visitor.kind != "bot":
            views.setdefault((h.visitor.ip, h.visitor.agent), []).append(h.at)
    lengths = []
    for times in views.values():
        n = 1
        for a, b in zip(times, times[1:], strict=False):
            if b - a >= rd.SESSION_GAP:
                lengths.append(n)
                n = 0
            n += 1
        lengths.append(n)
    assert max(lengths) <= 8 * 2  # at most 8 a visit (two visits of a returning visitor may touch)
    assert 0.35 <= lengths.count(1) / len(lengths) <= 0.55
    assert 2 <= statistics.mean(lengths) <= 4


def test_days_follow_the_week_and_sum_to_n():
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    plan = rd.plan_days(1_000_000, now)
    assert sum(n for _, n, _ in plan) == 1_000_000
    assert plan[0][0] == date(2025, 12, 6) and plan[-1][0] == date(2026, 12, 6)
    assert plan[-1][2] == now  # today until the moment of generation, at about half a day's volume
    weekday = statistics.mean(n for d, n, _ in plan[:-1] if d.weekday() < 5)
    weekend = statistics.mean(n for d, n, _ in plan[:-1] if d.weekday() >= 5)
    assert 0.55 < weekend / weekday < 0.75
    assert 0.3 < plan[-1][1] / statistics.mean(n for _, n, _ in plan[-8:-1]) < 0.7


def test_a_filled_database_is_kept_and_reused(servers):
    admin_url = servers[0]
    name = rd.database_name(1000)
    try:
        first = rd.ensure_database(admin_url, 1000, processes=1, progress=lambda _: None)
        assert not first.reused
        with psycopg.connect(first.url) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (1000,)
            assert conn.execute("SELECT count(*) FROM events_default").fetchone() == (0,)
            conn.execute("INSERT INTO bench_reports_meta (source_id) VALUES ('marker')")
            conn.commit()
        again = rd.ensure_database(admin_url, 1000, processes=1, progress=lambda _: None)
        assert again.reused and again.source_id == first.source_id
        with psycopg.connect(again.url) as conn:  # not generated again: the marker is still there
            assert conn.execute("SELECT count(*) FROM bench_reports_meta").fetchone() == (2,)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert make_conninfo(admin_url, dbname=name) == first.url


def test_plans_are_read_from_the_server_log_per_database():
    from bench.reports import plans_in

    log = (
        "2026-12-06 17:37:01.989 UTC [26026] root@bench_reports_9_v1 LOG:  duration: 76.007 ms  plan:\n"
        "\tQuery Text: select 1\n"
        "\tResult  (actual time=0.001..0.001 rows=1 loops=1)\n"
        "2026-12-06 17:37:02.100 UTC [26027] root@other LOG:  duration: 99.0 ms  plan:\n"
        "\tQuery Text: select 2\n"
        "2026-12-06 17:37:02.200 UTC [2228] LOG:  checkpoint starting: time\n"
    )
    assert plans_in(log, "bench_reports_9_v1") == [
        "2026-12-06 17:37:01.989 UTC [26026] root@bench_reports_9_v1 LOG:  duration: 76.007 ms  plan:\n"
        "\tQuery Text: select 1\n"
        "\tResult  (actual time=0.001..0.001 rows=1 loops=1)"
    ]
