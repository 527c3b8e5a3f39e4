"""Issue 12's done-when for the reports: one hand-countable story of two visitors and a bot, sent over
HTTP through FOUR dialects (TinyTrail collect, Segment page + track, OpenPanel screen_view + custom
events, Commanders Act page_view + events) into four websites, stored by a real worker drain, spread
over two closed days and today. Every website's nine reports (JSON and CSV) give exactly the numbers
counted by hand below: first from raw events, then from the aggregates of the closed days (the raw
events of those days deleted, to prove it), after a re-run of the aggregation and a re-sent event.

The gateway's clock is moved to each event's time (TinyTrail's collect has no client timestamp: its
events happen when received), so "today" is 2026-03-19 for the reports too.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.testclient import TestClient

from tests.helpers import SECRET_KEY
from trackgate import api_keys
from trackgate.gateway import openpanel as gateway_openpanel
from trackgate.gateway.app import create_app
from trackgate.gateway.tinytrail import new_source as tinytrail_source
from trackgate.sources import add_source

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "tinytrail_api"

D1, D2, TODAY = "2026-03-17", "2026-03-18", "2026-03-19"
NOW = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.5 Mobile/15E148 Safari/604.1"
)
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
WIDTH = {CHROME: 1920, IPHONE: 390, BOT: 1024}
CONTENT_GROUPS = [{"name": "Blog", "pattern": "/blog/*"}]


class Hit(msgspec.Struct, frozen=True):
    """One thing a visitor did: a page view (``name`` None) or a custom event, at ``at`` (UTC)."""

    at: str
    ua: str
    path: str
    name: str | None = None
    referrer: str | None = None
    query: str = ""


# The story. A = Chrome on Windows (desktop, 1920 px), B = Safari on an iPhone (mobile, 390 px).
STORY = [
    # 2026-03-17
    Hit(f"{D1}T10:00:00", CHROME, "/", referrer="https://www.google.com/"),  # A visit 1 (Organic Search)
    Hit(f"{D1}T10:05:00", CHROME, "/pricing"),
    Hit(f"{D1}T10:06:00", CHROME, "/pricing", name="signup"),
    Hit(f"{D1}T10:10:00", CHROME, "/signup"),  # A visit 1 ends: 3 page views, 600 s
    Hit(f"{D1}T11:00:00", CHROME, "/blog/post-1"),  # 50 idle minutes: A visit 2, a bounce, Direct
    Hit(  # B's visit: from t.co, tagged twitter / social / launch (Social)
        f"{D1}T12:00:00",
        IPHONE,
        "/blog/post-1",
        referrer="https://t.co/abc123",
        query="?utm_source=twitter&utm_medium=social&utm_campaign=launch",
    ),
    Hit(f"{D1}T12:01:00", IPHONE, "/pricing"),  # B's visit ends: 2 page views, 60 s
    Hit(f"{D1}T12:30:00", BOT, "/"),  # a bot: counted only with include_bots=true
    # 2026-03-18
    Hit(f"{D2}T09:00:00", CHROME, "/"),  # A: Direct
    Hit(f"{D2}T09:02:00", CHROME, "/pricing"),
    Hit(f"{D2}T09:03:00", CHROME, "/pricing", name="download"),  # A's visit: 2 page views, 180 s
    Hit(
        f"{D2}T15:00:00", IPHONE, "/pricing", referrer="https://news.ycombinator.com/"
    ),  # B: Referral, bounce
    # 2026-03-19, today (the reports are asked at 12:00)
    Hit(f"{TODAY}T11:40:00", CHROME, "/"),  # A: Direct
    Hit(f"{TODAY}T11:44:00", CHROME, "/", name="signup"),
    Hit(f"{TODAY}T11:45:00", CHROME, "/blog/post-1"),  # A's visit: 2 page views, 300 s
    Hit(f"{TODAY}T11:50:00", IPHONE, "/pricing"),  # B: Direct, bounce
    Hit(f"{TODAY}T11:55:00", BOT, "/"),
]


def _when(hit: Hit) -> datetime:
    return datetime.fromisoformat(hit.at).replace(tzinfo=UTC)


def _url(hit: Hit) -> str:
    return f"https://example.com{hit.path}{hit.query}"


# --- four dialects -----------------------------------------------------------------------------------


class MovingClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Site(msgspec.Struct):
    dialect: str
    website_id: str
    key: str
    extra: dict[str, str] = {}


def _tinytrail(hit: Hit, site: Site, n: int) -> tuple[str, dict, dict]:
    body: dict[str, Any] = {
        "website_id": site.key,
        "event_type": "custom" if hit.name else "page_view",
        "url": _url(hit),
        "path": hit.path,
        "screen_width": WIDTH[hit.ua],
        "screen_height": 800,
    }
    if hit.referrer:
        body["referrer"] = hit.referrer
    if hit.name:
        body["properties"] = {"name": hit.name}
    return "/api/v1/collect", body, {"user-agent": hit.ua}


def _segment(hit: Hit, site: Site, n: int) -> tuple[str, dict, dict]:
    page: dict[str, Any] = {"path": hit.path, "url": _url(hit)}
    if hit.referrer:
        page["referrer"] = hit.referrer
    if hit.query:
        page["search"] = hit.query
    body: dict[str, Any] = {
        "messageId": f"seg-{n}",
        "anonymousId": f"anon-{WIDTH[hit.ua]}",
        "timestamp": _when(hit).isoformat(),
        "context": {"userAgent": hit.ua, "page": page, "screen": {"width": WIDTH[hit.ua], "height": 800}},
    }
    if hit.name:
        body["event"] = hit.name
    auth = base64.b64encode(f"{site.key}:".encode()).decode()
    return ("/v1/track" if hit.name else "/v1/page"), body, {"Authorization": f"Basic {auth}"}


def _openpanel(hit: Hit, site: Site, n: int) -> tuple[str, dict, dict]:
    properties: dict[str, Any] = {
        "__path": _url(hit),
        "__timestamp": _when(hit).isoformat(),
        "screen_width": WIDTH[hit.ua],
    }
    if hit.referrer:
        properties["__referrer"] = hit.referrer
    body = {"type": "track", "payload": {"name": hit.name or "screen_view", "properties": properties}}
    headers = {"openpanel-client-id": site.key, "origin": "https://example.com", "user-agent": hit.ua}
    return "/track", body, headers


def _commandersact(hit: Hit, site: Site, n: int) -> tuple[str, dict, dict]:
    page: dict[str, Any] = {"url": _url(hit), "path": hit.path}
    if hit.referrer:
        page["referrer"] = hit.referrer
    body = {
        "event_name": hit.name or "page_view",
        "screen_width": WIDTH[hit.ua],
        "context": {
            "event_id": f"ca-{n}",
            "event_timestamp": int(_when(hit).timestamp() * 1000),
            "page": page,
            "device": {"user_agent": hit.ua},
        },
    }
    return f"/events?token={site.key}", body, {}


SENDERS = {
    "tinytrail": _tinytrail,
    "segment": _segment,
    "openpanel": _openpanel,
    "commandersact": _commandersact,
}


@pytest.fixture
def keyed(settings):
    return msgspec.structs.replace(settings, secret_key=SECRET_KEY, api_rate_limit=0, tinytrail_rate_limit=0)


@pytest.fixture
def clock() -> MovingClock:
    return MovingClock()


@pytest.fixture
def api(keyed, clock, sites) -> Iterator[TestClient]:
    """The gateway, started once the four websites exist (its source cache loads them)."""
    with TestClient(create_app(keyed, clock=clock)) as client:
        yield client


@pytest.fixture
def admin(keyed) -> dict[str, str]:
    return {"X-API-KEY": api_keys.create_key(keyed, keyed.database_url).key}


def _website_id(db, source_id: str) -> str:
    return db.execute("SELECT website_id::text FROM sources WHERE id = %s", (source_id,)).fetchone()[0]


@pytest.fixture
def sites(keyed, db) -> dict[str, Site]:
    url = keyed.database_url
    groups = {"content_groups": CONTENT_GROUPS}
    out: dict[str, Site] = {}
    made = tinytrail_source(str(uuid.uuid4()), {"domain": "example.com", **groups})
    source, _ = add_source(url, "tinytrail", "tt", made["key"], made["settings"])
    out["tinytrail"] = Site("tinytrail", _website_id(db, source.id), made["key"])
    source, key = add_source(url, "segment", "seg", "wk-reports", {"domain": "example.com", **groups})
    out["segment"] = Site("segment", _website_id(db, source.id), key)
    made = gateway_openpanel.new_source(None, {"origins": ["https://example.com"]})
    source, _ = add_source(
        url, "openpanel", "op", made["key"], {**made["settings"], **groups}, made["extra_keys"]
    )
    out["openpanel"] = Site("openpanel", _website_id(db, source.id), made["key"])
    source, key = add_source(url, "commandersact", "ca", "ca-reports", groups)
    out["commandersact"] = Site("commandersact", _website_id(db, source.id), key)
    return out


def _send(api: TestClient, clock: MovingClock, site: Site, hits: list[Hit], first: int = 0) -> None:
    for n, hit in enumerate(hits, start=first):
        path, body, headers = SENDERS[site.dialect](hit, site, n)
        clock.now = _when(hit)
        r = api.post(path, json=body, headers=headers)
        assert r.status_code in (200, 202, 204), (site.dialect, path, r.status_code, r.text)
    clock.now = NOW


@pytest.fixture
def stored_story(api, clock, sites, drain) -> dict[str, Site]:
    # an installation's first worker queues no aggregation (tests/workers/test_aggregate.py): the test
    # runs it itself, when it wants
    for site in sites.values():
        _send(api, clock, site, STORY)
    drain()
    return sites


# --- what a reader counts by hand --------------------------------------------------------------------
# 7d = 2026-03-13 .. 2026-03-19. Visits, humans only:
#   03-17: A1 (/ /pricing [signup] /signup, 600 s, Organic Search, google.com), A2 (/blog/post-1, bounce,
#          Direct), B (/blog/post-1 /pricing, 60 s, Social, t.co, twitter/social/launch)
#   03-18: A (/ /pricing [download], 180 s, Direct), B (/pricing, bounce, Social, news.ycombinator.com)
#   today: A (/ [signup] /blog/post-1, 300 s, Direct), B (/pricing, bounce, Direct)
# visits 3 + 2 + 2 = 7; page views 6 + 3 + 3 = 12; visitors (daily uniques summed) 2 + 2 + 2 = 6;
# bounces 3 of 7 = 42.86 %; duration 600 + 60 + 180 + 300 = 1140 s over 7 visits = 162.86 -> 163 s.

SUMMARY_7D = {
    "visits": {"value": 7},
    "unique_visitors": {"value": 6},
    "pageviews": {"value": 12},
    "bounce_rate": {"value": 42.86},
    "avg_session_duration_sec": {"value": 163},
}
# with the bot (03-17 and today, one page view each: a visit, a visitor, a bounce per day):
# visits 9, visitors 8, page views 14, bounces 5 of 9 = 55.56 %, 1140 s / 9 = 126.67 -> 127 s
SUMMARY_7D_BOTS = {
    "visits": {"value": 9},
    "unique_visitors": {"value": 8},
    "pageviews": {"value": 14},
    "bounce_rate": {"value": 55.56},
    "avg_session_duration_sec": {"value": 127},
}
# content group Blog (/blog/*): its page views alone make the visits: 03-17 A and B, today A, each
# one page view (the Blog events of a visitor's run), so 3 visits, 3 bounces, 0 s
SUMMARY_7D_BLOG = {
    "visits": {"value": 3},
    "unique_visitors": {"value": 3},
    "pageviews": {"value": 3},
    "bounce_rate": {"value": 100.0},
    "avg_session_duration_sec": {"value": 0},
}
# yesterday (03-18 only): 2 visits, 3 page views, 2 visitors, 1 bounce = 50 %, 180 s / 2 = 90 s;
# compared with the day before (03-17: 3 visits, 6 page views, 2 visitors, 33.33 %, 660 / 3 = 220 s)
SUMMARY_YESTERDAY = {
    "visits": {"value": 2, "previous": 3, "change_pct": -33.33},
    "unique_visitors": {"value": 2, "previous": 2, "change_pct": 0.0},
    "pageviews": {"value": 3, "previous": 6, "change_pct": -50.0},
    "bounce_rate": {"value": 50.0, "previous": 33.33, "change_pct": 50.02},
    "avg_session_duration_sec": {"value": 90, "previous": 220, "change_pct": -59.09},
}
# today: 2 visits, 3 page views, 2 visitors, 1 bounce, 300 s / 2 = 150 s
SUMMARY_TODAY = {
    "visits": {"value": 2},
    "unique_visitors": {"value": 2},
    "pageviews": {"value": 3},
    "bounce_rate": {"value": 50.0},
    "avg_session_duration_sec": {"value": 150},
}
# pages (7d): /pricing 2 + 2 + 1 = 5 views in 5 visits; / 1 + 1 + 1 = 3 in 3; /blog/post-1 2 + 0 + 1 = 3
# in 3; /signup 1 in 1. Ties by path.
PAGES_7D = [
    {"path": "/pricing", "contentGroup": None, "pageviews": 5, "uniquePageviews": 5},
    {"path": "/", "contentGroup": None, "pageviews": 3, "uniquePageviews": 3},
    {"path": "/blog/post-1", "contentGroup": "Blog", "pageviews": 3, "uniquePageviews": 3},
    {"path": "/signup", "contentGroup": None, "pageviews": 1, "uniquePageviews": 1},
]
# channels by visit: Direct = A2 03-17, A 03-18, A today, B today = 4; Social = B 03-17 (t.co, tagged
# social) and B 03-18 (news.ycombinator.com is a social site in GA4's list of sources) = 2; Organic
# Search = A1 03-17 (google) = 1
CHANNELS_7D = [
    {"channel": "Direct", "visits": 4},
    {"channel": "Social", "visits": 2},
    {"channel": "Organic Search", "visits": 1},
]
DOMAINS_7D = [
    {"referrer": "google.com", "visits": 1},
    {"referrer": "news.ycombinator.com", "visits": 1},
    {"referrer": "t.co", "visits": 1},
]
UTM_7D = [{"utmSource": "twitter", "utmMedium": "social", "utmCampaign": "launch", "visits": 1}]
# devices by visit: A's 4 visits (desktop, Chrome, Windows, 1441+), B's 3 (mobile, Mobile Safari, iOS,
# 376-768)
DEVICES_7D = {
    "device_types": [{"deviceType": "desktop", "visits": 4}, {"deviceType": "mobile", "visits": 3}],
    "browsers": [{"browserFamily": "Chrome", "visits": 4}, {"browserFamily": "Mobile Safari", "visits": 3}],
    "os_families": [{"osFamily": "Windows", "visits": 4}, {"osFamily": "iOS", "visits": 3}],
    "screen_resolutions": [{"bucket": "1441+", "visits": 4}, {"bucket": "376-768", "visits": 3}],
}
# landing: / (A1 03-17, A 03-18, A today) 3, /blog/post-1 (A2, B 03-17) 2, /pricing (B 03-18, B today) 2;
# exits: /pricing (B 03-17, A 03-18, B 03-18, B today) 4, /blog/post-1 (A2 03-17, A today) 2, /signup 1
LANDING_7D = [
    {"path": "/", "entries": 3},
    {"path": "/blog/post-1", "entries": 2},
    {"path": "/pricing", "entries": 2},
]
EXITS_7D = [
    {"path": "/pricing", "exits": 4},
    {"path": "/blog/post-1", "exits": 2},
    {"path": "/signup", "exits": 1},
]
# funnel / -> /pricing -> signup: visits with / (A1, A 03-18, A today) 3; then /pricing (A1, A 03-18) 2;
# then signup after it (A1) 1: 100, 2/3 = 66.67, 1/2 = 50
FUNNEL_STEPS = ["/", "/pricing", "signup"]
FUNNEL_7D = [
    {"step": "/", "sessions": 3, "conversion_rate": 100},
    {"step": "/pricing", "sessions": 2, "conversion_rate": 66.67},
    {"step": "signup", "sessions": 1, "conversion_rate": 50.0},
]
# custom events: signup (03-17, today) 2, download 1
EVENTS_7D = [{"name": "signup", "count": 2}, {"name": "download", "count": 1}]
# page views per day; /pricing's; bounce rate per day (03-17: 1 of 3, 03-18: 1 of 2, today 1 of 2)
EMPTY = ["2026-03-13", "2026-03-14", "2026-03-15", "2026-03-16"]
PAGEVIEWS_SERIES = [*((d, 0) for d in EMPTY), (D1, 6), (D2, 3), (TODAY, 3)]
PRICING_SERIES = [*((d, 0) for d in EMPTY), (D1, 2), (D2, 2), (TODAY, 1)]
BOUNCE_SERIES = [*((d, 0.0) for d in EMPTY), (D1, 33.33), (D2, 50.0), (TODAY, 50.0)]
# realtime at 12:00 (since 11:30, no bot): A and B active; /, /blog/post-1 (A) and /pricing (B) one
# visitor each; 3 page views and 1 signup
REALTIME = {
    "active_visitors": 2,
    "top_pages": [
        {"path": "/", "visitors": 1},
        {"path": "/blog/post-1", "visitors": 1},
        {"path": "/pricing", "visitors": 1},
    ],
    "events_by_type": [{"eventType": "page_view", "count": 3}, {"eventType": "signup", "count": 1}],
}


# --- asking ------------------------------------------------------------------------------------------


def _get(api: TestClient, headers: dict, report: str, site: Site, **params: Any) -> Any:
    r = api.get(
        f"/api/v1/reports/{report}", params={"website_id": site.website_id, **params}, headers=headers
    )
    assert r.status_code == 200, (site.dialect, report, params, r.text)
    body = r.json()
    assert body["status"] == "success"
    return body["data"]


def _csv(api: TestClient, headers: dict, report: str, site: Site, **params: Any) -> list[list[str]]:
    r = api.get(
        f"/api/v1/reports/{report}",
        params={"website_id": site.website_id, "format": "csv", **params},
        headers=headers,
    )
    assert r.status_code == 200, (site.dialect, report, r.text)
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith(f'attachment; filename="{report}_')
    return list(csv.reader(io.StringIO(r.text)))


def _series(data: dict) -> list[tuple[str, float]]:
    return [(p["date"], p["value"]) for p in data["series"]]


def check_every_report(api: TestClient, headers: dict, site: Site) -> None:
    """Every report of ``site`` against the hand counts, in JSON and CSV."""
    seven = {"period": "7d"}
    data = _get(api, headers, "summary", site, **seven)
    assert data["period"] == {"start": "2026-03-13", "end": TODAY}
    assert data["metrics"] == SUMMARY_7D, site.dialect
    assert _get(api, headers, "summary", site, include_bots="true")["metrics"] == SUMMARY_7D_BOTS
    assert _get(api, headers, "summary", site, content_group="Blog")["metrics"] == SUMMARY_7D_BLOG
    yesterday = _get(api, headers, "summary", site, period="yesterday", compare="previous_period")
    assert yesterday["comparison"] == f"{D1} to {D1}"
    assert yesterday["metrics"] == SUMMARY_YESTERDAY
    assert _get(api, headers, "summary", site, period="today")["metrics"] == SUMMARY_TODAY
    assert _csv(api, headers, "summary", site) == [
        ["metric", "value", "previous", "change_pct"],
        ["visits", "7", "", ""],
        ["unique_visitors", "6", "", ""],
        ["pageviews", "12", "", ""],
        ["bounce_rate", "42.86", "", ""],
        ["avg_session_duration_sec", "163", "", ""],
    ]

    pages = _get(api, headers, "pages", site)
    assert (pages["page"], pages["per_page"], pages["rows"]) == (1, 50, PAGES_7D), site.dialect
    assert _get(api, headers, "pages", site, page=2, per_page=1)["rows"] == [PAGES_7D[1]]
    assert _get(api, headers, "pages", site, content_group="Blog")["rows"] == [PAGES_7D[2]]
    assert _csv(api, headers, "pages", site) == [
        ["path", "contentGroup", "pageviews", "uniquePageviews"],
        ["/pricing", "", "5", "5"],
        ["/", "", "3", "3"],
        ["/blog/post-1", "Blog", "3", "3"],
        ["/signup", "", "1", "1"],
    ]

    assert _get(api, headers, "sources", site)["rows"] == CHANNELS_7D, site.dialect
    assert _get(api, headers, "sources", site, group_by="domain")["rows"] == DOMAINS_7D
    assert _get(api, headers, "sources", site, group_by="utm")["rows"] == UTM_7D
    assert _csv(api, headers, "sources", site, group_by="utm") == [
        ["utmSource", "utmMedium", "utmCampaign", "visits"],
        ["twitter", "social", "launch", "1"],
    ]
    assert _csv(api, headers, "sources", site)[1] == ["Direct", "4"]

    devices = _get(api, headers, "devices", site)
    assert {k: v for k, v in devices.items() if k != "period"} == DEVICES_7D, site.dialect
    assert _csv(api, headers, "devices", site) == [
        ["deviceType", "visits"],
        ["desktop", "4"],
        ["mobile", "3"],
    ]

    flow = _get(api, headers, "flow", site)
    assert (flow["landing_pages"], flow["exit_pages"]) == (LANDING_7D, EXITS_7D), site.dialect
    assert _csv(api, headers, "flow", site) == [
        ["path", "entries"],
        ["/", "3"],
        ["/blog/post-1", "2"],
        ["/pricing", "2"],
    ]

    funnel = _get(api, headers, "funnel", site, **{"steps[]": FUNNEL_STEPS})
    assert funnel["funnel"] == FUNNEL_7D, site.dialect
    assert _csv(api, headers, "funnel", site, **{"steps[]": FUNNEL_STEPS}) == [
        ["step", "sessions", "conversion_rate"],
        ["/", "3", "100"],
        ["/pricing", "2", "66.67"],
        ["signup", "1", "50.0"],
    ]

    assert _get(api, headers, "custom-events", site)["rows"] == EVENTS_7D, site.dialect
    assert _get(api, headers, "custom-events", site, event_name="signup")["rows"] == EVENTS_7D[:1]
    assert _csv(api, headers, "custom-events", site) == [
        ["name", "count"],
        ["signup", "2"],
        ["download", "1"],
    ]

    series = _get(api, headers, "timeseries", site)
    assert (series["metric"], series["path"], _series(series)) == ("pageviews", "*", PAGEVIEWS_SERIES)
    pricing = _get(api, headers, "timeseries", site, path="/pricing")
    assert (pricing["path"], _series(pricing)) == ("/pricing", PRICING_SERIES)
    assert _series(_get(api, headers, "timeseries", site, metric="bounce_rate")) == BOUNCE_SERIES
    assert _csv(api, headers, "timeseries", site)[-3:] == [[D1, "6"], [D2, "3"], [TODAY, "3"]]

    assert _get(api, headers, "realtime", site) == REALTIME, site.dialect
    assert _csv(api, headers, "realtime", site) == [
        ["path", "visitors"],
        ["/", "1"],
        ["/blog/post-1", "1"],
        ["/pricing", "1"],
    ]


def _aggregate(api: TestClient, headers: dict, day: str) -> None:
    r = api.post("/api/v1/admin/aggregate", json={"date": day}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "success", "data": {"message": f"Aggregation completed for {day}"}}


def test_four_dialects_give_the_hand_counted_numbers_raw_and_aggregated(
    api, admin, stored_story, clock, db, drain
):
    sites = stored_story
    # every day's events arrived late (03-17 to 03-19 are before the worker's real today): 4 x 3 dirty
    assert db.execute("SELECT count(*) FROM report_days WHERE dirty").fetchone()[0] == 12
    for site in sites.values():  # raw events only
        check_every_report(api, admin, site)

    _aggregate(api, admin, D1)
    _aggregate(api, admin, D2)
    assert db.execute("SELECT count(*) FROM report_days WHERE NOT dirty").fetchone()[0] == 8  # 4 x 2
    first = db.execute("SELECT * FROM report_rows ORDER BY source_id, dim, scope, day, bots, key").fetchall()
    _aggregate(api, admin, D1)  # a re-run: the same rows
    again = db.execute("SELECT * FROM report_rows ORDER BY source_id, dim, scope, day, bots, key").fetchall()
    assert again == first and first
    # the closed days are read from the aggregates alone: their raw events can go
    db.execute('DELETE FROM events WHERE "timestamp" < %s', (datetime(2026, 3, 19, tzinfo=UTC),))
    for site in sites.values():
        check_every_report(api, admin, site)


def test_a_resent_event_changes_nothing(api, admin, stored_story, clock, db, drain):
    sites = stored_story
    _aggregate(api, admin, D1)
    for dialect in ("segment", "commandersact"):  # the two whose events carry their own ids
        _send(api, clock, sites[dialect], STORY[:1])
    drain()
    assert db.execute("SELECT count(*) FROM report_days WHERE dirty AND day = %s", (D1,)).fetchone()[0] == 0
    for dialect in ("segment", "commandersact"):
        check_every_report(api, admin, sites[dialect])


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "params", "named"),
    [
        ("summary", {"period": "1w"}, "period"),
        ("summary", {"start_date": "2026-3-1"}, "start_date"),
        ("summary", {"start_date": "2026-03-02", "end_date": "2026-03-01"}, "start_date"),
        ("summary", {"compare": "last_year"}, "compare"),
        ("pages", {"per_page": "501"}, "per_page"),
        ("pages", {"page": "0"}, "page"),
        ("pages", {"per_page": "ten"}, "per_page"),
        ("pages", {"include_bots": "yes"}, "include_bots"),
        ("pages", {"format": "xml"}, "format"),
        ("sources", {"group_by": "country"}, "group_by"),
        ("funnel", {"steps[]": ["/only-one"]}, "steps"),
        ("timeseries", {"metric": "revenue"}, "metric"),
        # far dates: 400, never a 500 (the reports' days run from 2000-01-01 to the day after today)
        ("summary", {"start_date": "0001-01-01", "end_date": "9999-12-31"}, "start_date"),
        ("summary", {"start_date": "2026-03-01", "end_date": "9999-12-31"}, "end_date"),
        ("summary", {"start_date": "9999-12-01", "end_date": "9999-12-31", "compare": "yoy"}, "start_date"),
        ("summary", {"start_date": "1999-12-31", "compare": "previous_period"}, "start_date"),
        ("timeseries", {"end_date": "0001-01-01"}, "end_date"),
        # a start after today (2026-03-19) with no end: the same as two dates in the wrong order
        ("summary", {"start_date": "2026-03-20"}, "start_date"),
        ("pages", {"start_date": "2026-12-01"}, "start_date"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(api, admin, sites, report, params, named):
    r = api.get(
        f"/api/v1/reports/{report}",
        params={"website_id": sites["tinytrail"].website_id, **params},
        headers=admin,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID_PAYLOAD" and named in error["message"]


def test_missing_website_and_bad_dates_for_the_aggregation(api, admin, sites):
    r = api.get("/api/v1/reports/summary", headers=admin)
    assert r.status_code == 400 and "website_id" in r.json()["error"]["message"]
    for body in (
        {"date": "18-03-2026"},
        {"date": "2026-02-30"},
        {"date": 20260318},
        {"date": "9999-12-31"},
        {"date": "0001-01-01"},
    ):
        r = api.post("/api/v1/admin/aggregate", json=body, headers=admin)
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_PAYLOAD", body
        assert "date" in r.json()["error"]["message"], body
    big = b'{"date": "2026-03-18", "pad": "' + b"x" * 70_000 + b'"}'  # over the API's 64 KB: not read on
    r = api.post("/api/v1/admin/aggregate", content=big, headers=admin)
    assert r.status_code == 400 and "larger than" in r.json()["error"]["message"]
    r = api.post("/api/v1/admin/aggregate", headers=admin)  # no body: yesterday (the gateway's clock)
    assert r.json()["data"] == {"message": "Aggregation completed for 2026-03-18"}


# --- the document's shapes ---------------------------------------------------------------------------


def _shape(value: Any) -> Any:
    """Keys and value types: a number is a number (int or float), a null fits any scalar."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "null"


def _fits(golden: Any, actual: Any) -> bool:
    if isinstance(golden, dict):
        return (
            isinstance(actual, dict)
            and golden.keys() == actual.keys()
            and all(_fits(golden[k], actual[k]) for k in golden)
        )
    if isinstance(golden, list):
        return isinstance(actual, list) and (not golden or not actual or _fits(golden[0], actual[0]))
    return actual == "null" or golden == actual


GOLDEN_CALLS: dict[str, dict[str, Any]] = {
    "summary": {"compare": "previous_period"},
    "pages": {},
    "sources": {},
    "sources_domain": {"group_by": "domain"},
    "sources_utm": {"group_by": "utm"},
    "devices": {},
    "flow": {},
    "funnel": {"steps[]": FUNNEL_STEPS},
    "realtime": {},
    "custom-events": {},
    "timeseries": {},
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CALLS))
def test_each_report_answers_in_the_documents_shape(api, admin, stored_story, name):
    golden = json.loads((GOLDEN / f"reports_{name.replace('-', '_')}.json").read_text())
    r = api.get(
        f"/api/v1/reports/{name.split('_')[0]}",
        params={"website_id": stored_story["tinytrail"].website_id, **GOLDEN_CALLS[name]},
        headers=admin,
    )
    body = r.json()
    if "rows" in golden and "status" not in golden:  # the document shows only the rows of sources
        body = {"rows": body["data"]["rows"]}
    assert _fits(_shape(golden), _shape(body)), (name, body)
