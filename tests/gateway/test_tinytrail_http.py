"""TinyTrail over HTTP: the seed's examples sent as curl would (httpx against a live gateway), every
documented answer, and what lands in PostgreSQL (seeds/tinytrail-api.md, "Event Collection")."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from starlette.testclient import TestClient

from tests.helpers import SEED_PAGE_VIEW, SEED_WEBSITE, live_gateway, queued_jobs, stored
from trackgate.gateway.app import create_app
from trackgate.gateway.tinytrail import BROWSER_UA, new_source
from trackgate.sources import add_source

BROWSER = {"User-Agent": BROWSER_UA, "Content-Type": "application/json"}
ACCEPTED = b'{"status":"accepted"}'


def flags(row: dict, *names: str) -> dict:
    """The adapter's flags in a stored row (the workers' enrichment adds more beside them)."""
    return {name: row["enrichment"].get(name) for name in names}


def website(settings, key: str = SEED_WEBSITE, name: str = "example.com", **options) -> str:
    created = new_source(key, {"domain": "example.com", **options})
    source, _ = add_source(settings.database_url, "tinytrail", name, created["key"], created["settings"])
    return source.id


@pytest.fixture
def roomy(settings):
    """Settings whose rate limit does not get in the way of a test that sends many requests."""
    return msgspec.structs.replace(settings, tinytrail_rate_limit=1000)


@pytest.fixture
def gateway(roomy) -> Iterator[str]:
    website(roomy)
    with live_gateway(roomy) as base:
        yield base


def post(base: str, body, headers: dict | None = None, path: str = "/api/v1/collect") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(base + path, content=content, headers=headers if headers is not None else BROWSER)


def assert_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert set(body) == {"status", "error"} and set(body["error"]) == {"code", "message"}
    return body


def assert_nothing_kept(rdb, db, drain) -> None:
    assert queued_jobs(rdb) == 0
    drain()
    assert stored(db) == []


# --- the seed's example and every default event type ----------------------------------------------


def test_seed_page_view_is_202_and_stored_as_a_page(gateway, roomy, drain, db):
    source_id = db.execute("SELECT id FROM sources WHERE dialect = 'tinytrail'").fetchone()[0]
    r = post(gateway, SEED_PAGE_VIEW)
    assert r.status_code == 202
    assert r.content == ACCEPTED
    assert r.headers["content-type"] == "application/json"
    drain()
    [row] = stored(db)
    assert row["source_id"] == source_id
    assert row["dialect"] == "tinytrail" and row["dialect_version"] == "v1"
    assert row["type"] == "page" and row["name"] is None
    assert row["user_id"] is None and row["anonymous_id"] is None
    assert row["properties"] == {}
    assert row["context"] == {
        "ip": "127.0.0.1",
        "user_agent": BROWSER_UA,
        "page": {
            "url": "https://example.com/blog/post-1?utm_source=twitter",
            "path": "/blog/post-1",
            "referrer": "https://t.co/abc123",
            "search": "?utm_source=twitter",
        },
        "screen": {"width": 1920, "height": 1080},
        "campaign": {"source": "twitter"},
    }
    assert flags(row, "is_bot", "is_excluded") == {"is_bot": False, "is_excluded": False}
    assert row["raw"] == SEED_PAGE_VIEW
    assert row["timestamp"] == row["received_at"]


@pytest.mark.parametrize("event_type", ["close_tab", "scroll_25", "scroll_50", "scroll_75", "outbound_link"])
def test_default_event_types_are_tracks_named_after_the_type(gateway, drain, db, event_type):
    properties = {"href": "https://other.example/"} if event_type == "outbound_link" else None
    body = {**SEED_PAGE_VIEW, "event_type": event_type}
    if properties:
        body["properties"] = properties
    r = post(gateway, body)
    assert (r.status_code, r.content) == (202, ACCEPTED)
    drain()
    [row] = stored(db)
    assert (row["type"], row["name"]) == ("track", event_type)
    assert row["properties"] == (properties or {})
    assert row["context"]["page"]["path"] == "/blog/post-1"


def test_custom_event_is_named_by_its_properties_name(gateway, drain, db):
    body = {
        "website_id": SEED_WEBSITE,
        "event_type": "custom",
        "url": "https://example.com/pricing",
        "path": "/pricing",
        "properties": {"name": "signup_complete", "plan": "pro", "source": "pricing_page"},
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_campaign": "launch",
    }
    assert post(gateway, body).status_code == 202
    # another type than the defaults is taken as it comes; custom without a name stays "custom"
    assert post(gateway, {**body, "event_type": "video_play", "properties": {"id": 7}}).status_code == 202
    assert post(gateway, {**body, "properties": {"plan": "pro"}}).status_code == 202
    drain()
    rows = stored(db)
    assert [(r["type"], r["name"]) for r in rows] == [
        ("track", "signup_complete"),
        ("track", "video_play"),
        ("track", "custom"),
    ]
    assert rows[0]["properties"] == {"name": "signup_complete", "plan": "pro", "source": "pricing_page"}
    # explicit UTM fields; no query string in the url
    assert rows[0]["context"]["campaign"] == {"source": "newsletter", "medium": "email", "name": "launch"}
    assert "referrer" not in rows[0]["context"]["page"] and "screen" not in rows[0]["context"]


def test_prefixed_path_and_upper_case_website_id(gateway, drain, db):
    body = {**SEED_PAGE_VIEW, "website_id": SEED_WEBSITE.upper()}
    assert post(gateway, body, path="/tinytrail/api/v1/collect").status_code == 202
    drain()
    assert len(stored(db)) == 1


def test_content_group_is_matched_from_the_websites_settings(roomy, drain, db):
    website(
        roomy, content_groups=[{"name": "Docs", "pattern": "/docs/*"}, {"name": "Blog", "pattern": "/blog/*"}]
    )
    with live_gateway(roomy) as base:
        assert post(base, SEED_PAGE_VIEW).status_code == 202
        assert post(base, {**SEED_PAGE_VIEW, "path": "/pricing"}).status_code == 202
    drain()
    first, second = stored(db)
    assert flags(first, "is_bot", "is_excluded", "content_group") == {
        "is_bot": False,
        "is_excluded": False,
        "content_group": "Blog",
    }
    assert "content_group" not in second["enrichment"]


# --- silent drops (204) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "website_id",
    ["6ba7b810-9dad-11d1-80b4-00c04fd430c8", "not-a-uuid"],
    ids=["unknown", "not-a-uuid"],
)
def test_unknown_website_is_204_and_nothing_is_stored(gateway, rdb, db, drain, website_id):
    r = post(gateway, {**SEED_PAGE_VIEW, "website_id": website_id})
    assert r.status_code == 204
    assert r.content == b""
    assert "content-length" not in r.headers or r.headers["content-length"] == "0"
    assert_nothing_kept(rdb, db, drain)


@pytest.mark.parametrize(
    "user_agent",
    ["curl/8.5.0", "python-httpx/0.27.0", "Googlebot/2.1 (+http://www.google.com/bot.html)"],
)
def test_bot_is_204_but_stored_flagged(gateway, db, drain, user_agent):
    r = post(gateway, SEED_PAGE_VIEW, headers={"User-Agent": user_agent, "Content-Type": "application/json"})
    assert r.status_code == 204 and r.content == b""
    drain()
    [row] = stored(db)
    assert flags(row, "is_bot", "is_excluded") == {"is_bot": True, "is_excluded": False}
    assert row["context"]["user_agent"] == user_agent


def test_excluded_ip_is_204_but_stored_flagged(roomy, db, drain):
    website(roomy, excluded_ips=["10.0.0.0/8", "127.0.0.1"])
    with live_gateway(roomy) as base:
        r = post(base, SEED_PAGE_VIEW)
    assert r.status_code == 204 and r.content == b""
    drain()
    [row] = stored(db)
    assert flags(row, "is_bot", "is_excluded") == {"is_bot": False, "is_excluded": True}


def test_an_other_range_does_not_exclude(roomy, db, drain):
    website(roomy, excluded_ips=["10.0.0.0/8", "2001:db8::/32"])
    with live_gateway(roomy) as base:
        assert post(base, SEED_PAGE_VIEW).status_code == 202
    drain()
    assert stored(db)[0]["enrichment"]["is_excluded"] is False


# --- 400 INVALID_PAYLOAD --------------------------------------------------------------------------


INVALID = {
    "missing_website_id": {k: v for k, v in SEED_PAGE_VIEW.items() if k != "website_id"},
    "missing_event_type": {k: v for k, v in SEED_PAGE_VIEW.items() if k != "event_type"},
    "missing_url": {k: v for k, v in SEED_PAGE_VIEW.items() if k != "url"},
    "missing_path": {k: v for k, v in SEED_PAGE_VIEW.items() if k != "path"},
    "empty_event_type": {**SEED_PAGE_VIEW, "event_type": ""},
    "website_id_number": {**SEED_PAGE_VIEW, "website_id": 42},
    "screen_width_string": {**SEED_PAGE_VIEW, "screen_width": "1920"},
    "screen_height_bool": {**SEED_PAGE_VIEW, "screen_height": True},
    "properties_array": {**SEED_PAGE_VIEW, "properties": [1, 2]},
    "referrer_object": {**SEED_PAGE_VIEW, "referrer": {}},
    "utm_source_number": {**SEED_PAGE_VIEW, "utm_source": 1},
    "array_body": [SEED_PAGE_VIEW],
    "not_json": b'{"website_id": ',
    "empty_body": b"",
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_payload_is_400_in_tinytrails_envelope(gateway, rdb, db, drain, case):
    r = post(gateway, INVALID[case])
    assert_error(r, 400, "INVALID_PAYLOAD")
    assert_nothing_kept(rdb, db, drain)


def test_invalid_payload_for_an_unknown_website_is_still_400(gateway, rdb, db, drain):
    """The body is validated before the website is looked up."""
    body = {k: v for k, v in SEED_PAGE_VIEW.items() if k != "path"}
    r = post(gateway, {**body, "website_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"})
    assert_error(r, 400, "INVALID_PAYLOAD")
    assert "path" in r.json()["error"]["message"]
    assert_nothing_kept(rdb, db, drain)


def test_oversized_body_is_400(gateway, rdb, db, drain):
    big = {**SEED_PAGE_VIEW, "properties": {"x": "y" * 70_000}}
    assert_error(post(gateway, big), 400, "INVALID_PAYLOAD")
    assert_nothing_kept(rdb, db, drain)


# --- 429 RATE_LIMITED -----------------------------------------------------------------------------


def test_eleventh_request_in_ten_seconds_is_429_with_retry_after(settings, rdb, db, drain):
    assert settings.tinytrail_rate_limit == 10 and settings.tinytrail_rate_window == 10
    website(settings)
    with live_gateway(settings) as base:
        answers = [post(base, SEED_PAGE_VIEW).status_code for _ in range(10)]
        limited = post(base, SEED_PAGE_VIEW)
        # unknown websites and bots count too (the limit is per IP, before the drop)
        unknown = post(base, {**SEED_PAGE_VIEW, "website_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"})
    assert answers == [202] * 10
    assert_error(limited, 429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["retry-after"]) <= 10
    assert_error(unknown, 429, "RATE_LIMITED")
    drain()
    assert len(stored(db)) == 10


def test_rate_limit_is_shared_through_redis_and_its_window_ends(settings, rdb, db, drain):
    """Two gateway apps (as two processes would) share one count; a new window starts afresh."""
    short = msgspec.structs.replace(settings, tinytrail_rate_limit=3, tinytrail_rate_window=1)
    website(short)
    with live_gateway(short) as one, live_gateway(short) as two:
        answers = [post(base, SEED_PAGE_VIEW).status_code for base in (one, two, one, two)]
        assert answers == [202, 202, 202, 429]
        assert int(rdb.get("trackgate:tinytrail:rate:127.0.0.1")) == 4
        time.sleep(1.1)
        assert post(two, SEED_PAGE_VIEW).status_code == 202
    drain()
    assert len(stored(db)) == 4


def test_rate_limit_zero_turns_it_off(settings, db, drain):
    off = msgspec.structs.replace(settings, tinytrail_rate_limit=0)
    website(off)
    with live_gateway(off) as base:
        assert {post(base, SEED_PAGE_VIEW).status_code for _ in range(15)} == {202}


# --- CORS -----------------------------------------------------------------------------------------


def test_preflight_is_204_with_the_documented_headers(gateway):
    for path in ("/api/v1/collect", "/tinytrail/api/v1/collect"):
        r = httpx.options(
            gateway + path,
            headers={
                "Origin": "https://example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert r.status_code == 204
        assert r.content == b""
        assert r.headers["access-control-allow-origin"] == "https://example.com"
        assert r.headers["access-control-allow-methods"] == "POST, OPTIONS"
        assert r.headers["access-control-allow-headers"] == "Content-Type"
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["vary"] == "Origin"


def test_post_answers_carry_the_same_cors_headers(gateway):
    origin = {"Origin": "https://example.com"}
    for body, status in (
        (SEED_PAGE_VIEW, 202),
        ({**SEED_PAGE_VIEW, "website_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, 204),
        ({"website_id": SEED_WEBSITE}, 400),
    ):
        r = post(gateway, body, headers={**BROWSER, **origin})
        assert r.status_code == status
        assert r.headers.get_list("access-control-allow-origin") == ["https://example.com"]
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["vary"] == "Origin"


# --- tracker.js -----------------------------------------------------------------------------------


def test_tracker_js_is_served_with_its_headers(gateway):
    for path in ("/js/tracker.js", "/tinytrail/js/tracker.js"):
        r = httpx.get(gateway + path)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/javascript; charset=utf-8"
        assert r.headers["cache-control"] == "public, max-age=86400"
        for needle in ("data-id", "/api/v1/collect", "page_view", "close_tab", "scroll_", "outbound_link"):
            assert needle in r.text
        assert "analytics.track" in r.text


# --- 503 ------------------------------------------------------------------------------------------


def test_redis_down_is_503_and_nothing_kept(settings, db, rdb, drain):
    website(settings)
    down = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.5)
    with TestClient(create_app(down)) as client:
        r = client.post("/api/v1/collect", json=SEED_PAGE_VIEW, headers={"User-Agent": BROWSER_UA})
    assert r.status_code == 503
    assert r.json()["status"] == "error" and int(r.headers["retry-after"]) > 0
    assert_nothing_kept(rdb, db, drain)


# --- the curl line `trackgate up` prints ----------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl: apt-get install -y curl")
def test_demo_curl_line_works(roomy, drain, db):
    from trackgate.gateway.tinytrail import demo_lines

    created = new_source(None, {"domain": "localhost"})
    add_source(roomy.database_url, "tinytrail", "demo", created["key"], created["settings"])
    with live_gateway(roomy) as base:
        line = demo_lines(base, created)[0]
        out = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=10, check=True)
    assert out.stdout == ACCEPTED.decode()
    drain()
    [row] = stored(db)
    assert (row["type"], row["context"]["page"]["path"]) == ("page", "/blog/post-1")
