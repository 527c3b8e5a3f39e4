"""GET /dashboard in a real headless Chromium, over the real API: an account, its user and a TinyTrail
website are made through the API, a Segment source of the same account is a second website; a fixture of
events (Segment pages and tracks over two closed days and today, with more than a thousand page views on
one day; TinyTrail collect calls today) is sent over HTTP, stored by a worker drain, and the closed days
aggregated by ``POST /api/v1/admin/aggregate``. The page is opened, the user's key typed, a website and a
period picked, and every number on screen (summary tiles with their comparison, top pages, sources by
channel / referrer / campaign, the four device lists, custom events, the realtime count) must equal what
the API answers for the same parameters (fetched here with httpx). The realtime count refreshes itself, a
CSV button downloads the API's CSV, a refused key and a rate limit are shown plainly, and signing out
forgets the key. A screenshot is kept: build/screenshots/dashboard.png.

Needs Debian's chromium and its driver (the ``chromium`` fixture of ``tests/e2e/conftest.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec

from tests.e2e.conftest import SCREENSHOTS
from tests.helpers import live_gateway, until
from trackgate import api_keys
from trackgate.gateway.tinytrail import BROWSER_UA
from trackgate.sources import add_source, announce_change

SECRET = "a-long-test-secret-for-the-dashboard"
KEY_STORE = "trackgate.dashboard.apiKey"

DESKTOP = BROWSER_UA
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.4 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Mobile Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
MAC_FIREFOX = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0"
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.4 Mobile/15E148 Safari/604.1"
)

# --- the numbers as the page writes them (en-US, at most two decimals) -----------------------------------


def two(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def count(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else two(value)


def duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    h, m, rest = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h {m}m" if h else f"{m}m {rest}s" if m else f"{rest}s"


TILE_KINDS = {
    "visits": count,
    "unique_visitors": count,
    "pageviews": count,
    "bounce_rate": lambda v: two(v) + "%",
    "avg_session_duration_sec": duration,
}


def expected_tiles(summary: dict) -> list[dict]:
    tiles = []
    for name, show in TILE_KINDS.items():
        metric = summary["metrics"][name]
        pct = metric.get("change_pct")
        change = "–" if pct is None else ("↑ " if pct > 0 else "↓ " if pct < 0 else "") + two(abs(pct)) + "%"
        tiles.append(
            {
                "metric": name,
                "value": show(metric["value"]),
                "change": change,
                "previous": "from " + show(metric["previous"]),
            }
        )
    return tiles


def label(value: str | None) -> str:
    return value if value else "(none)"


SOURCE_NAMES: dict[str, Callable[[dict], str]] = {
    "channel": lambda r: label(r["channel"]),
    "domain": lambda r: label(r["referrer"]),
    "utm": lambda r: " / ".join(label(r[k]) for k in ("utmSource", "utmMedium", "utmCampaign")),
}
DEVICE_NAMES = {
    "device_types": "deviceType",
    "browsers": "browserFamily",
    "os_families": "osFamily",
    "screen_resolutions": "bucket",
}

# --- what is on the page ---------------------------------------------------------------------------------

READ_TILES = """return [...document.querySelectorAll('#tiles .tile')].map(t => ({
  metric: t.dataset.metric, value: t.querySelector('.value').innerText,
  change: t.querySelector('.change') ? t.querySelector('.change').innerText : null,
  previous: t.querySelector('.previous') ? t.querySelector('.previous').innerText : null}))"""
READ_SERIES = """return [...document.querySelectorAll('#chart-table tbody tr')].map(
  r => [...r.cells].map(c => c.textContent))"""
READ_ROWS = """return [...document.querySelectorAll('#' + arguments[0] + ' .row')].map(
  r => [...r.querySelectorAll('.label, .tag, .num')].map(c => c.innerText))"""


def settled(read: Callable[[], Any], expected: Any, what: str, timeout: float = 15) -> None:
    """Wait until the page shows ``expected`` (its loads are asynchronous), then compare once more so that a
    mismatch fails with both sides."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read() != expected:
        time.sleep(0.1)
    assert read() == expected, what


# --- the API, as the test calls it -------------------------------------------------------------------------


def api(http: httpx.Client, method: str, path: str, key: str, **kwargs: Any) -> Any:
    r = http.request(method, path, headers={"X-API-KEY": key}, **kwargs)
    assert r.status_code in (200, 201), (method, path, r.status_code, r.text)
    return r.json()["data"]


def segment_fixture(now: datetime) -> list[dict]:
    """Segment pages and tracks nine days ago, the day before yesterday, yesterday and in the last half
    hour; more than a thousand page views yesterday (thousands separators on screen)."""
    day = now.replace(hour=10, minute=0, second=0, microsecond=0)
    two_days_ago, yesterday = day - timedelta(days=2), day - timedelta(days=1)
    messages: list[dict] = []

    def page(at: datetime, who: str, ip: str, ua: str, width: int, path: str, referrer: str = "", query=""):
        messages.append(
            {
                "type": "page",
                "anonymousId": who,
                "messageId": f"m-{len(messages)}",
                "timestamp": at.isoformat(),
                "context": {
                    "ip": ip,
                    "userAgent": ua,
                    "screen": {"width": width, "height": 800},
                    "page": {"url": f"https://app.example{path}{query}", "path": path, "referrer": referrer},
                },
            }
        )

    def track(at: datetime, who: str, ip: str, ua: str, name: str):
        messages.append(
            {
                "type": "track",
                "event": name,
                "anonymousId": who,
                "messageId": f"m-{len(messages)}",
                "timestamp": at.isoformat(),
                "context": {"ip": ip, "userAgent": ua},
            }
        )

    google = "https://www.google.com/search?q=app"
    # nine days ago (the previous period of 7d): F from Google reads two pages, G comes direct and leaves
    nine_days_ago = day - timedelta(days=9)
    page(nine_days_ago, "f", "203.0.113.6", DESKTOP, 1440, "/", google)
    page(nine_days_ago + timedelta(minutes=4), "f", "203.0.113.6", DESKTOP, 1440, "/pricing", google)
    page(nine_days_ago + timedelta(hours=1), "g", "203.0.113.7", IPHONE, 390, "/")
    # the day before yesterday: A from Google reads two pages; B from a tweet's campaign bounces
    page(two_days_ago, "a", "203.0.113.1", DESKTOP, 1440, "/", google)
    page(two_days_ago + timedelta(minutes=2), "a", "203.0.113.1", DESKTOP, 1440, "/pricing", google)
    page(
        two_days_ago + timedelta(hours=1),
        "b",
        "203.0.113.2",
        IPHONE,
        390,
        "/blog/hello",
        "https://t.co/x",
        "?utm_source=twitter&utm_medium=social&utm_campaign=launch",
    )
    # yesterday: A direct, C from Hacker News, D reads the home page 1,100 times in one visit
    page(yesterday, "a", "203.0.113.1", DESKTOP, 1440, "/")
    page(yesterday + timedelta(minutes=3), "a", "203.0.113.1", DESKTOP, 1440, "/docs")
    page(
        yesterday + timedelta(hours=2),
        "c",
        "203.0.113.3",
        ANDROID,
        412,
        "/pricing",
        "https://news.ycombinator.com/",
    )
    for i in range(1100):
        page(yesterday + timedelta(hours=3, seconds=i), "d", "203.0.113.4", MAC_FIREFOX, 1280, "/")
    track(yesterday + timedelta(hours=3, minutes=30), "d", "203.0.113.4", MAC_FIREFOX, "Signed Up")
    # the last half hour: A and E, who also add to their carts
    page(now - timedelta(minutes=12), "a", "203.0.113.1", DESKTOP, 1440, "/")
    page(now - timedelta(minutes=10), "e", "203.0.113.5", IPAD, 820, "/pricing", google)
    track(now - timedelta(minutes=9), "e", "203.0.113.5", IPAD, "Added to Cart")
    track(now - timedelta(minutes=8), "a", "203.0.113.1", DESKTOP, "Added to Cart")
    # and a crawler, counted only with include_bots=true (the "Include bots" toggle)
    page(now - timedelta(minutes=7), "bot", "66.249.66.1", GOOGLEBOT, 1024, "/pricing")
    return messages


def send_segment(http: httpx.Client, write_key: str, messages: list[dict]) -> None:
    for start in range(0, len(messages), 400):
        r = http.post("/v1/batch", json={"batch": messages[start : start + 400]}, auth=(write_key, ""))
        assert r.status_code == 200, r.text


def send_tinytrail(http: httpx.Client, website_id: str, call: dict, ua: str) -> None:
    r = http.post(
        "/api/v1/collect",
        json={"website_id": website_id, **call},
        headers={"User-Agent": ua, "Origin": "https://shop.example"},
    )
    assert r.status_code == 202, r.text


@contextmanager
def dashboard_site(settings, drain) -> Iterator[dict[str, Any]]:
    """The live gateway, an account with a user, its TinyTrail website and a Segment source, the fixture
    sent, stored and aggregated; yields what the test needs."""
    # no raw cache: the page and the test must read the same numbers after the test sends one more event
    served = msgspec.structs.replace(
        settings, secret_key=SECRET, api_rate_limit=0, tinytrail_rate_limit=0, reports_raw_cache_seconds=0
    )
    admin = api_keys.create_key(served, settings.database_url).key
    now = datetime.now(UTC)
    with live_gateway(served) as gateway, httpx.Client(base_url=gateway, timeout=30) as http:
        account = api(http, "POST", "/api/v1/accounts", admin, json={"name": "Shop"})["id"]
        user = api(http, "POST", "/api/v1/users", admin, json={"account_id": account, "role": "user"})
        key = user["apiKey"]
        # the Segment source first: the picker still lists the TinyTrail website first
        _, write_key = add_source(settings.database_url, "segment", "app.example", workspace=account)
        shop = api(
            http,
            "POST",
            "/api/v1/websites",
            key,
            json={"domain": "shop.example", "content_groups": [{"name": "Shoes", "pattern": "/shoes*"}]},
        )
        assert announce_change(settings.redis_url)[1] >= 1  # the gateway knows the new source at once
        messages = segment_fixture(now)
        send_segment(http, write_key, messages)
        for ua, path, width in ((DESKTOP, "/", 1920), (IPHONE, "/shoes", 375), (DESKTOP, "/shoes", 1920)):
            call = {
                "event_type": "page_view",
                "url": f"https://shop.example{path}",
                "path": path,
                "referrer": "https://www.bing.com/",
                "screen_width": width,
                "screen_height": 900,
            }
            send_tinytrail(http, shop["id"], call, ua)
        send_tinytrail(
            http,
            shop["id"],
            {
                "event_type": "custom",
                "url": "https://shop.example/shoes",
                "path": "/shoes",
                "properties": {"name": "add_to_cart"},
            },
            IPHONE,
        )
        drain()
        for back in (9, 2, 1):
            day = (now - timedelta(days=back)).date().isoformat()
            api(http, "POST", "/api/v1/admin/aggregate", admin, json={"date": day})
        websites = {w["domain"]: w for w in api(http, "GET", "/api/v1/websites", key)}
        assert {"shop.example", "app.example"} <= set(websites), websites
        yield {
            "gateway": gateway,
            "http": http,
            "key": key,
            "shop": websites["shop.example"],
            "app": websites["app.example"],
            "messages": messages,
        }


def sign_in(browser, gateway: str, key: str) -> None:
    browser.get(f"{gateway}/dashboard")
    until(lambda: browser.find_element("id", "key-form").is_displayed(), "the key form")
    browser.find_element("id", "api-key").send_keys(key)
    browser.find_element("id", "sign-in").click()
    until(lambda: browser.find_element("id", "board").is_displayed(), "the board")


def pick(browser, select_id: str, value: str) -> None:
    from selenium.webdriver.support.select import Select

    Select(browser.find_element("id", select_id)).select_by_value(value)


def check_board(browser, http: httpx.Client, key: str, website: str, period: str, **extra: str) -> dict:
    """Every number on screen equals the API's for ``website``, ``period`` (and ``extra`` parameters, a
    content group); returns the API's answers."""
    params = {"website_id": website, **({"period": period} if period else {}), **extra}
    summary = api(
        http, "GET", "/api/v1/reports/summary", key, params={**params, "compare": "previous_period"}
    )
    settled(lambda: browser.execute_script(READ_TILES), expected_tiles(summary), "summary tiles")

    pages = api(http, "GET", "/api/v1/reports/pages", key, params={**params, "per_page": 10})["rows"]
    expected_pages = [
        [
            label(r["path"]),
            *([r["contentGroup"]] if r["contentGroup"] else []),
            count(r["pageviews"]),
            count(r["uniquePageviews"]),
        ]
        for r in pages
    ]
    settled(lambda: browser.execute_script(READ_ROWS, "pages"), expected_pages, "top pages")

    answers = {"summary": summary, "pages": pages}
    flow = api(http, "GET", "/api/v1/reports/flow", key, params={**params, "per_page": 10})
    for tab, rows, field in (("landing", "landing_pages", "entries"), ("exit", "exit_pages", "exits")):
        browser.find_element("css selector", f"#pages-tabs [data-tab='{tab}']").click()
        expected = [[label(r["path"]), count(r[field])] for r in flow[rows]]
        settled(lambda: browser.execute_script(READ_ROWS, "pages"), expected, f"{tab} pages")
    browser.find_element("css selector", "#pages-tabs [data-tab='pages']").click()
    settled(lambda: browser.execute_script(READ_ROWS, "pages"), expected_pages, "top pages again")
    answers["flow"] = flow
    for tab, name in SOURCE_NAMES.items():
        browser.find_element("css selector", f"#sources-tabs [data-tab='{tab}']").click()
        rows = api(
            http, "GET", "/api/v1/reports/sources", key, params={**params, "group_by": tab, "per_page": 10}
        )
        expected = [[name(r), count(r["visits"])] for r in rows["rows"]]
        settled(lambda: browser.execute_script(READ_ROWS, "sources"), expected, f"sources by {tab}")
        answers[f"sources_{tab}"] = rows["rows"]
    browser.find_element("css selector", "#sources-tabs [data-tab='channel']").click()

    devices = api(http, "GET", "/api/v1/reports/devices", key, params=params)
    for tab, field in DEVICE_NAMES.items():
        browser.find_element("css selector", f"#devices-tabs [data-tab='{tab}']").click()
        expected = [[label(r[field]), count(r["visits"])] for r in devices[tab]]
        settled(lambda: browser.execute_script(READ_ROWS, "devices"), expected, f"devices: {tab}")
    browser.find_element("css selector", "#devices-tabs [data-tab='device_types']").click()
    answers["devices"] = devices

    events = api(http, "GET", "/api/v1/reports/custom-events", key, params={**params, "per_page": 10})["rows"]
    expected_events = [[label(r["name"]), count(r["count"])] for r in events]
    settled(lambda: browser.execute_script(READ_ROWS, "events"), expected_events, "custom events")
    answers["events"] = events

    realtime = api(http, "GET", "/api/v1/reports/realtime", key, params={"website_id": website})
    settled(
        lambda: browser.find_element("id", "realtime-count").text,
        count(realtime["active_visitors"]),
        "realtime",
    )
    answers["realtime"] = realtime
    return answers


def test_the_dashboard_shows_the_apis_numbers(settings, db, rdb, drain, chromium, screenshot, tmp_path):
    browser = chromium
    browser.set_window_size(1280, 1500)
    with dashboard_site(settings, drain) as site:
        http, key, app, shop = site["http"], site["key"], site["app"], site["shop"]
        sign_in(browser, site["gateway"], key)
        assert browser.execute_script(f"return localStorage.getItem('{KEY_STORE}')") == key
        # each website with its dialect, TinyTrail's first (the API lists the Segment source first)
        options = browser.find_elements("css selector", "#website option")
        assert [(o.text, o.get_attribute("value")) for o in options] == [
            ("shop.example (tinytrail)", shop["id"]),
            ("app.example (segment)", app["id"]),
        ]

        # the Segment website over the last 7 days: aggregated days and today's raw events together
        pick(browser, "website", app["id"])
        pick(browser, "period", "7d")
        seen = check_board(browser, http, key, app["id"], "7d")
        pageviews = seen["summary"]["metrics"]["pageviews"]
        assert pageviews["value"] > 1000 and "," in count(pageviews["value"])  # the day of 1,100 page views
        assert pageviews["previous"] > 0 and pageviews["change_pct"] > 0  # nine days ago, the period before
        assert [r["path"] for r in seen["pages"]][:1] == ["/"]
        assert seen["realtime"]["active_visitors"] >= 1

        # the chart: its metric switch (and a click on a tile) asks the API for that metric's series; the
        # chart's numbers are also a table for screen readers, which is what is compared here
        for metric, show in (
            ("visits", count),
            ("bounce_rate", lambda v: two(v) + "%"),
            ("avg_session_duration", duration),
        ):
            pick(browser, "metric", metric)
            series = api(
                http,
                "GET",
                "/api/v1/reports/timeseries",
                key,
                params={"website_id": app["id"], "period": "7d", "metric": metric},
            )["series"]
            assert len(series) == 7  # a point a day
            expected_series = [[p["date"], show(p["value"])] for p in series]
            settled(lambda: browser.execute_script(READ_SERIES), expected_series, f"the chart of {metric}")
        assert browser.execute_script("return document.querySelector('#chart canvas') !== null")
        browser.find_element("css selector", ".tile[data-chart='visits']").click()
        assert browser.find_element("id", "metric").get_attribute("value") == "visits"
        assert "metric=visits" in browser.execute_script("return location.hash")

        # "Include bots" adds include_bots=true to every report (kept in the URL): the crawler's page view
        browser.find_element("id", "include-bots").click()
        with_bots = check_board(browser, http, key, app["id"], "7d", include_bots="true")
        assert with_bots["summary"]["metrics"]["pageviews"]["value"] == pageviews["value"] + 1
        assert "bots=1" in browser.execute_script("return location.hash")
        browser.find_element("id", "include-bots").click()
        check_board(browser, http, key, app["id"], "7d")
        assert "bots=1" not in browser.execute_script("return location.hash")

        # a CSV button downloads the API's CSV (fetched with the key, handed over as a Blob)
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        browser.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        browser.find_element("css selector", "button[data-csv='pages']").click()
        (csv_file,) = until(
            lambda: [p for p in downloads.iterdir() if p.suffix == ".csv"], "the CSV download"
        )
        csv_api = http.get(
            "/api/v1/reports/pages",
            params={"website_id": app["id"], "period": "7d", "per_page": 500, "format": "csv"},
            headers={"X-API-KEY": key},
        )
        assert csv_api.headers["content-type"].startswith("text/csv")
        until(lambda: csv_file.read_bytes() == csv_api.content, "the downloaded CSV to be the API's")

        browser.set_window_size(1280, browser.execute_script("return document.body.scrollHeight") + 140)
        browser.execute_script("window.scrollTo(0, 0)")
        shot = screenshot(browser)
        kept = SCREENSHOTS / "dashboard.png"
        shot.replace(kept)
        print(f"screenshot: {kept}")
        assert kept.stat().st_size > 20_000

        # a custom range: the day before yesterday to yesterday, both aggregated
        pick(browser, "period", "custom")
        assert browser.find_element("id", "custom-range").is_displayed()
        start = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
        end = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        browser.execute_script(
            "document.getElementById('start-date').value = arguments[0];"
            " document.getElementById('end-date').value = arguments[1];",
            start,
            end,
        )
        browser.find_element("id", "apply-range").click()
        custom = check_board(browser, http, key, app["id"], "", start_date=start, end_date=end)
        assert custom["summary"]["period"] == {"start": start, "end": end}
        sent = [
            m
            for m in site["messages"]
            if m["type"] == "page"
            and start <= m["timestamp"][:10] <= end
            and m["context"]["userAgent"] != GOOGLEBOT
        ]
        # 3 the day before yesterday, 1,103 yesterday (and the last half hour's, run just past midnight)
        assert len(sent) >= 1106
        assert custom["summary"]["metrics"]["pageviews"]["value"] == len(sent)
        assert f"from={start}" in browser.execute_script("return location.hash")
        pick(browser, "period", "7d")
        assert not browser.find_element("id", "custom-range").is_displayed()

        # the key is asked for once: a reload opens the same website and period (kept in the URL) at once
        browser.refresh()
        until(lambda: browser.find_element("id", "board").is_displayed(), "the board after a reload")
        assert not browser.find_element("id", "key-form").is_displayed()
        assert browser.find_element("id", "website").get_attribute("value") == app["id"]
        assert browser.find_element("id", "period").get_attribute("value") == "7d"
        settled(
            lambda: browser.execute_script(READ_TILES),
            expected_tiles(seen["summary"]),
            "tiles after a reload",
        )

        # the TinyTrail website, today: raw events only
        pick(browser, "website", shop["id"])
        pick(browser, "period", "today")
        today = check_board(browser, http, key, shop["id"], "today")
        assert today["summary"]["metrics"]["pageviews"]["value"] == 3  # the three page_view calls

        # its content group filters every report but the realtime count
        assert browser.find_element("id", "group-picker").is_displayed()
        pick(browser, "content-group", "Shoes")
        shoes = check_board(browser, http, key, shop["id"], "today", content_group="Shoes")
        assert shoes["summary"]["metrics"]["pageviews"]["value"] == 2  # /shoes twice
        assert [r["path"] for r in shoes["pages"]] == ["/shoes"]
        pick(browser, "content-group", "")

        # the realtime count refreshes itself: a new visitor appears within one refresh
        before = today["realtime"]["active_visitors"]
        send_tinytrail(
            http,
            shop["id"],
            {"event_type": "page_view", "url": "https://shop.example/", "path": "/"},
            ANDROID,
        )
        drain()
        after = api(http, "GET", "/api/v1/reports/realtime", key, params={"website_id": shop["id"]})
        assert after["active_visitors"] == before + 1
        settled(
            lambda: browser.find_element("id", "realtime-count").text,
            count(after["active_visitors"]),
            "the realtime count after a refresh",
            timeout=25,
        )

        # every period of the picker asks the API for that period
        for period in ("yesterday", "30d", "90d", "12m", "ytd", "all"):
            pick(browser, "period", period)
            summary = api(
                http,
                "GET",
                "/api/v1/reports/summary",
                key,
                params={"website_id": shop["id"], "period": period, "compare": "previous_period"},
            )
            settled(
                lambda: browser.execute_script(READ_TILES), expected_tiles(summary), f"tiles for {period}"
            )

        took = browser.execute_script(
            "return performance.getEntriesByName('trackgate:board').map(m => Math.round(m.duration))"
        )
        print(f"board filled in (ms, each load since the reload): {took}")

        # no script error, no request the Content-Security-Policy refused, no failed request on the way
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []

        # signing out forgets the key
        browser.find_element("id", "sign-out").click()
        until(lambda: browser.find_element("id", "key-form").is_displayed(), "the key form after signing out")
        assert browser.execute_script(f"return localStorage.getItem('{KEY_STORE}')") is None
        assert not browser.find_element("id", "board").is_displayed()


def test_a_refused_key_and_a_rate_limit_are_shown_plainly(settings, db, rdb, chromium):
    browser = chromium
    served = msgspec.structs.replace(settings, secret_key=SECRET, api_rate_limit=4)
    key = api_keys.create_key(served, settings.database_url).key  # an admin key sees every website
    add_source(settings.database_url, "segment", "app.example")
    with live_gateway(served) as gateway:
        browser.get(f"{gateway}/dashboard")
        browser.find_element("id", "api-key").send_keys("tt_not_a_key")
        browser.find_element("id", "sign-in").click()
        error = until(lambda: browser.find_element("id", "error").text, "the error")
        assert "401 UNAUTHORIZED" in error and "refused" in error
        assert browser.find_element("id", "key-form").is_displayed()
        assert browser.execute_script(f"return localStorage.getItem('{KEY_STORE}')") is None

        # four requests a minute: the websites, then the reports run into the limit
        browser.find_element("id", "api-key").send_keys(key)
        browser.find_element("id", "sign-in").click()
        error = until(lambda: "429" in (text := browser.find_element("id", "error").text) and text, "the 429")
        assert "429 RATE_LIMITED" in error and "trying again in" in error
        seconds = int(error.split("trying again in ")[1].split(" s")[0])
        assert 0 < seconds <= 60
        assert browser.find_element("id", "board").is_displayed()  # what loaded stays; the error above it
