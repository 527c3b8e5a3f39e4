"""The chain inside the worker, on real PostgreSQL and Redis: salts, source settings, the geo database,
and a browser page view sent through the gateway and stored enriched."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.helpers import stored
from tests.workers.enrich.helpers import CHROME, event
from trackgate.schemas.settings import Settings
from trackgate.sources import add_source
from trackgate.workers.enrich import runner, salts, visitor
from trackgate.workers.enrich.sources import SourceSettings

GEO_DB = str(Path(__file__).parent / "data" / "GeoIP2-City-Test.mmdb")


@pytest.fixture(autouse=True)
def fresh_enricher():
    """The worker's Enricher caches salts per process: these tests delete them, so start from none."""
    runner._current = None
    yield
    runner._current = None


@pytest.fixture
def conn(settings):
    with psycopg.connect(settings.database_url) as c:
        c.execute("DELETE FROM visitor_salts")
        c.commit()
        yield c


def test_salts_today_and_yesterday_kept_older_deleted(conn):
    today = date(2026, 11, 23)
    for back in (1, 2, 5):
        with conn.transaction():
            conn.execute(
                "INSERT INTO visitor_salts (day, salt) VALUES (%s, %s)",
                (today - timedelta(days=back), bytes([back]) * 32),
            )
    got = salts.load_salts(conn, today)
    assert sorted(got) == [today - timedelta(days=1), today]
    assert got[today - timedelta(days=1)] == bytes([1]) * 32
    assert len(got[today]) == 32
    left = [row[0] for row in conn.execute("SELECT day FROM visitor_salts ORDER BY day")]
    assert left == [today - timedelta(days=1), today]
    # the same salt on every later read
    assert salts.load_salts(conn, today)[today] == got[today]


def test_concurrent_workers_agree_on_one_salt(settings, conn):
    today = date(2026, 11, 24)
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def worker():
        with psycopg.connect(settings.database_url) as c:
            barrier.wait()
            results.append(salts.load_salts(c, today)[today])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert conn.execute("SELECT count(*) FROM visitor_salts WHERE day = %s", (today,)).fetchone()[0] == 1


def test_salt_cache_rereads_on_a_new_day(conn):
    cache = salts.SaltCache()
    first = cache.get(conn, date(2026, 11, 23))
    assert cache.get(conn, date(2026, 11, 23)) is first
    second = cache.get(conn, date(2026, 11, 24))
    assert second[date(2026, 11, 23)] == first[date(2026, 11, 23)]
    assert second[date(2026, 11, 24)] != first[date(2026, 11, 23)]


def test_source_settings_cache_refreshes(settings, conn):
    source, _ = add_source(settings.database_url, "segment", "web", "wk_1", settings={"ip_policy": "drop"})
    now = [100.0]
    cache = SourceSettings(refresh_seconds=5, clock=lambda: now[0])
    cache.refresh(conn, [source.id])
    assert cache.get(source.id)["ip_policy"] == "drop"
    with conn.transaction():
        conn.execute(
            "UPDATE sources SET settings = %s WHERE id = %s", (json.dumps({"ip_policy": "keep"}), source.id)
        )
    now[0] += 2
    cache.refresh(conn, [source.id])
    assert cache.get(source.id)["ip_policy"] == "drop"  # still fresh
    now[0] += 4
    cache.refresh(conn, [source.id])
    assert cache.get(source.id)["ip_policy"] == "keep"
    # an unknown source is looked up at once (at most once a second)
    other, _ = add_source(settings.database_url, "segment", "app", "wk_2", settings={"ip_policy": "truncate"})
    now[0] += 1.5
    cache.refresh(conn, [other.id])
    assert cache.get(other.id)["ip_policy"] == "truncate"
    assert cache.get("nope") == {}


def test_enricher_with_geo_database_and_midnight_carry(settings, conn):
    settings = Settings(database_url=settings.database_url, redis_url=settings.redis_url, geoip_db=GEO_DB)
    enricher = runner.Enricher(settings)
    source, _ = add_source(settings.database_url, "segment", "web", "wk_3")
    late = event(
        ip="81.2.69.142",
        ua=CHROME,
        source_id=source.id,
        received_at=datetime(2026, 11, 22, 23, 50, tzinfo=UTC),
    )
    enricher.run(conn, [late], now=datetime(2026, 11, 22, 23, 50, tzinfo=UTC))
    assert late.enrichment["city"] == "London" and late.enrichment["region"] == "England"
    assert late.enrichment["country"] == "GB"
    # after midnight, the same visitor keeps its id in the first 30 minutes ...
    early = event(
        ip="81.2.69.142",
        ua=CHROME,
        source_id=source.id,
        received_at=datetime(2026, 11, 23, 0, 10, tzinfo=UTC),
    )
    # ... a new visitor gets today's
    new = event(
        ip="81.2.69.143",
        ua=CHROME,
        source_id=source.id,
        received_at=datetime(2026, 11, 23, 0, 10, tzinfo=UTC),
    )
    later = event(
        ip="81.2.69.142",
        ua=CHROME,
        source_id=source.id,
        received_at=datetime(2026, 11, 23, 0, 45, tzinfo=UTC),
    )
    enricher.run(conn, [early, new, later], now=datetime(2026, 11, 23, 0, 45, tzinfo=UTC))
    assert early.enrichment["visitor_id"] == late.enrichment["visitor_id"]
    today_salt = enricher.salts.salts[date(2026, 11, 23)]
    assert new.enrichment["visitor_id"] == visitor.visitor_hash(today_salt, "81.2.69.143", CHROME, source.id)
    assert later.enrichment["visitor_id"] == visitor.visitor_hash(
        today_salt, "81.2.69.142", CHROME, source.id
    )
    enricher.close()


def test_midnight_carry_reads_ids_other_workers_stored(settings, conn, source_id):
    """A worker that did not see yesterday's late event itself finds its id in the events table."""
    yesterday_late = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    day = yesterday_late.date()
    salt = salts.load_salts(conn, day)[day]
    known = visitor.visitor_hash(salt, "81.2.69.142", CHROME, source_id)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    at = midnight - timedelta(minutes=10)
    with conn.transaction():
        conn.execute(
            'INSERT INTO events (id, source_id, message_id, dialect, type, "timestamp", received_at,'
            " visitor_id, raw) VALUES (gen_random_uuid(), %s, 'm-late', 'segment', 'page', %s, %s, %s, '{}')",
            (source_id, at, at, known),
        )
    enricher = runner.Enricher(settings)
    e = event(ip="81.2.69.142", ua=CHROME, source_id=source_id, received_at=midnight + timedelta(minutes=5))
    enricher.run(conn, [e], now=midnight + timedelta(minutes=5))
    assert e.enrichment["visitor_id"] == known


def test_page_view_through_the_gateway_is_stored_enriched(client, write_key, source_id, drain, db):
    body = {
        "type": "page",
        "anonymousId": "anon-1",
        "messageId": "enrich-e2e-1",
        "name": "Pricing",
        "context": {
            "ip": "81.2.69.142",
            "userAgent": CHROME,
            "page": {
                "url": "https://shop.example.com/pricing?utm_source=google&utm_medium=organic"
                "&utm_campaign=launch&utm_term=analytics&gclid=CjwKCA",
                "path": "/pricing",
                "referrer": "https://www.google.com/",
            },
            "screen": {"width": 1440, "height": 900},
        },
    }
    response = client.post("/v1/page", json=body, auth=(write_key, ""))
    assert response.status_code == 200, response.text
    drain()
    rows = stored(db)
    assert len(rows) == 1
    enrichment = rows[0]["enrichment"]
    assert enrichment["browser"] == "Chrome" and enrichment["browser_version"].startswith("124")
    assert enrichment["os"] == "Windows"
    assert enrichment["device_type"] == "desktop"
    assert "is_bot" not in enrichment
    assert enrichment["country"] == "GB"
    assert enrichment["utm_source"] == "google" and enrichment["utm_campaign"] == "launch"
    assert enrichment["utm_term"] == "analytics" and enrichment["gclid"] == "CjwKCA"
    assert enrichment["referrer_domain"] == "google.com"
    assert enrichment["channel"] == "Organic Search"
    assert enrichment["screen_bucket"] == "1025-1440"
    salt = db.execute(
        "SELECT salt FROM visitor_salts WHERE day = %s", (rows[0]["received_at"].date(),)
    ).fetchone()[0]
    assert enrichment["visitor_id"] == visitor.visitor_hash(bytes(salt), "81.2.69.142", CHROME, source_id)
    # what the client sent is untouched
    assert rows[0]["context"]["ip"] == "81.2.69.142"
    assert rows[0]["context"]["user_agent"] == CHROME


def test_source_rules_and_ip_policy_through_the_worker(settings, client, drain, db):
    key = "wk_rules"
    source, _ = add_source(
        settings.database_url,
        "segment",
        "rules",
        key,
        settings={
            "ip_policy": "truncate",
            "excluded_ips": ["81.2.69.0/24"],
            "content_groups": [{"name": "Docs", "pattern": "/docs/*"}],
        },
    )
    body = {
        "userId": "u1",
        "event": "Viewed",
        "messageId": "rules-1",
        "context": {
            "ip": "81.2.69.142",
            "userAgent": "Googlebot/2.1 (+http://www.google.com/bot.html)",
            "page": {"path": "/docs/start"},
        },
    }
    deadline = time.monotonic() + 5
    while (status := client.post("/v1/track", json=body, auth=(key, "")).status_code) == 401:
        assert time.monotonic() < deadline, "the gateway did not load the new source"
        time.sleep(0.05)  # the gateway re-reads sources every 0.2 s in tests
    assert status == 200
    drain()
    (row,) = stored(db, "source_id = %s", (source.id,))
    assert row["context"]["ip"] == "81.2.69.0"
    assert "81.2.69.142" not in json.dumps(row["raw"])
    e = row["enrichment"]
    assert e["is_excluded"] is True and e["is_bot"] is True and e["device_type"] == "bot"
    assert e["content_group"] == "Docs" and e["ip_policy"] == "truncate"
    assert e["country"] == "GB"  # geo ran before the IP was truncated


def test_geoip_db_setting_from_the_environment():
    from trackgate.schemas.settings import settings_from_env

    assert settings_from_env({"TRACKGATE_GEOIP_DB": GEO_DB}).geoip_db == GEO_DB
    assert settings_from_env({}).geoip_db is None


def test_a_percent_encoded_nul_in_a_campaign_field_is_stored_replaced(client, write_key, drain, db):
    """``%00`` in a page URL's query decodes to a NUL in ``utm_source``, bound for a text column: the
    event and its batch neighbour are stored, the NUL replaced by U+FFFD (nothing quarantined)."""
    pages = [
        {"type": "page", "anonymousId": "anon-1", "messageId": f"nul-{i}", "context": {"page": {"url": url}}}
        for i, url in enumerate(["https://x.example/?utm_source=a%00b", "https://x.example/?utm_source=ok"])
    ]
    response = client.post("/v1/batch", json={"batch": pages}, auth=(write_key, ""))
    assert response.status_code == 200, response.text
    drain()
    assert sorted(db.execute("SELECT message_id, utm_source FROM events").fetchall()) == [
        ("nul-0", "a\ufffdb"),
        ("nul-1", "ok"),
    ]
    assert db.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)


def test_the_pipeline_enriches_each_event_once_even_one_stored_before(settings, conn):
    """``pipeline.persist`` enriches new events as the store writes their rows and, once the store
    returns, the rest (an event stored before): every event of the batch comes back enriched, once."""
    from tests.helpers import make_event
    from trackgate.schemas.jobs import PersistBatch
    from trackgate.workers import pipeline
    from trackgate.workers.enrich import BatchEnricher

    source = add_source(settings.database_url, "segment", "enrich-once")[0]
    old = make_event("p-old", source_id=source.id)
    pipeline.persist(conn, PersistBatch(batch_id="p0", events=[old]), settings)
    calls: list[str] = []
    real = BatchEnricher.__call__

    def counted(self, event):
        calls.append(event.message_id)
        return real(self, event)

    events = [make_event(m, source_id=source.id) for m in ("p-1", "p-old", "p-2")]
    try:
        BatchEnricher.__call__ = counted  # type: ignore[method-assign]
        result = pipeline.persist(conn, PersistBatch(batch_id="p1", events=events), settings)
    finally:
        BatchEnricher.__call__ = real  # type: ignore[method-assign]
    assert result.n_stored == 2
    assert sorted(calls) == ["p-1", "p-2", "p-old"]  # each once: the stored ones in the COPY, then the rest
    assert all(e.enrichment.get("visitor_id") for e in events)
    row = conn.execute("SELECT visitor_id FROM events WHERE message_id = 'p-1'").fetchone()
    assert row == (events[0].enrichment["visitor_id"],)
