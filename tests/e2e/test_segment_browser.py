"""analytics.js (``@segment/analytics-next``, the standalone bundle trackgate serves) in a real headless
Chromium, loaded by Segment's classic snippet with its CDN host replaced by the gateway, with and without
the first-party prefix: page, track, identify, group, alias, and a batch flushed on page unload all land
in PostgreSQL exactly once, with the browser's context, and the anonymousId survives a reload.

Each page's URL carries a marker (``?run=...``); rows are counted by it."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from tests.helpers import console_errors, live_gateway, stored
from trackgate.gateway.tinytrail import BROWSER_UA
from trackgate.sources import add_source

VERSION = (Path(__file__).parents[2] / "gateway" / "static" / "segment" / "VERSION").read_text().strip()

SNIPPET = """
!function(){var i="analytics",analytics=window[i]=window[i]||[];if(!analytics.initialize)if(analytics.invoked)
window.console&&console.error&&console.error("Segment snippet included twice.");else{analytics.invoked=!0;
analytics.methods=["trackSubmit","trackClick","trackLink","trackForm","pageview","identify","reset","group",
"track","ready","alias","debug","page","screen","once","off","on","addSourceMiddleware",
"addIntegrationMiddleware","setAnonymousId","addDestinationMiddleware","register"];
analytics.factory=function(e){return function(){if(window[i].initialized)return window[i][e].apply(window[i],
arguments);var n=Array.prototype.slice.call(arguments);if(["track","screen","alias","group","page","identify"]
.indexOf(e)>-1){var c=document.querySelector("link[rel='canonical']");n.push({__t:"bpc",
c:c&&c.getAttribute("href")||void 0,p:location.pathname,u:location.href,s:location.search,t:document.title,
r:document.referrer})}n.unshift(e);analytics.push(n);return analytics}};
for(var n=0;n<analytics.methods.length;n++){var key=analytics.methods[n];
analytics[key]=analytics.factory(key)}
analytics.load=function(key,n){
var t=document.createElement("script");t.type="text/javascript";t.async=!0;
t.setAttribute("data-global-segment-analytics-key",i);
t.src="%(cdn)s/analytics.js/v1/" + key + "/analytics.min.js";
var r=document.getElementsByTagName("script")[0];r.parentNode.insertBefore(t,r);analytics._loadOptions=n};
analytics._writeKey="%(key)s";analytics._cdn="%(cdn)s";analytics.SNIPPET_VERSION="5.2.0";
analytics.load("%(key)s", %(options)s);
analytics.page("Shop", {section: "shoes"});
analytics.ready(function(){var a=window.analytics;document.getElementById("status").textContent=
"analytics.js "+a.VERSION+" ready, anonymousId "+a.user().anonymousId();window.ajsReady=true});
}}();
"""

BATCHING = {
    "integrations": {
        "Segment.io": {
            "deliveryStrategy": {"strategy": "batching", "config": {"size": 100, "timeout": 60000}}
        }
    }
}
"""The batch is never full and never times out within the test: only the unload flush sends it."""


def shop_page(cdn: str, key: str, options: dict) -> bytes:
    snippet = SNIPPET % {"cdn": cdn, "key": key, "options": json.dumps(options)}
    return f"""<!doctype html>
<html><head><title>Shop</title><script>{snippet}</script></head>
<body><h1>Shop (Segment analytics.js, classic snippet)</h1>
<p>CDN and API: <code>{cdn}</code></p><p id="status">loading analytics.js...</p>
<a id="away" href="/away">away</a></body></html>""".encode()


START = b'<!doctype html><html><body><a id="go" href="/shop?run=RUN">shop</a></body></html>'


def wait_rows(db, drain, where: str, n: int, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        drain()
        rows = stored(db, where)
        if len(rows) >= n or time.monotonic() > deadline:
            assert len(rows) == n, [(r["type"], r["name"]) for r in rows]
            return rows
        time.sleep(0.2)


@pytest.mark.parametrize("prefix", ["", "/t"], ids=["root", "first-party"])
def test_analytics_js_snippet_in_chromium(settings, chromium, pages, screenshot, db, drain, prefix):
    key = "wk_" + secrets.token_hex(8)
    add_source(settings.database_url, "segment", "web", key)
    run = secrets.token_hex(6)
    marker = f"run={run}"
    served = msgspec.structs.replace(settings, first_party_prefix=prefix or None)
    with live_gateway(served) as gateway:
        cdn = gateway + prefix
        origin = pages(
            {
                "/start": START.replace(b"RUN", run.encode()),
                "/shop": shop_page(cdn, key, {}),
                "/batch": shop_page(cdn, key, BATCHING),
                "/away": b"<p>away</p>",
            }
        )
        chromium.get(f"{origin}/start")
        chromium.find_element("id", "go").click()  # the shop page has a referrer
        _wait_ready(chromium)
        chromium.execute_script(
            """
            analytics.track("Order Completed", {order_id: "o-1", revenue: 42});
            analytics.alias("user-RUN", analytics.user().anonymousId());
            analytics.identify("user-RUN", {email: "shopper@example.com", plan: "pro"});
            analytics.group("acme-RUN", {name: "Acme"});
            """.replace("RUN", run)
        )
        mine = f"context->'page'->>'search' = '?{marker}'"
        first = wait_rows(db, drain, mine, 5)
        anonymous_id = chromium.execute_script("return analytics.user().anonymousId()")
        screenshot(chromium)

        chromium.get(f"{origin}/shop?{marker}")  # a reload: the anonymousId is kept (cookie + localStorage)
        _wait_ready(chromium)
        assert chromium.execute_script("return analytics.user().anonymousId()") == anonymous_id
        second = wait_rows(db, drain, mine, 6)

        chromium.get(f"{origin}/batch?{marker}")
        _wait_ready(chromium)
        chromium.execute_script(
            "analytics.track('Batched One', {n: 1}); analytics.track('Batched Two', {n: 2});"
        )
        time.sleep(0.5)
        assert len(stored(db, mine)) == 6  # still in the batch, not sent
        chromium.find_element("id", "away").click()  # pagehide: the batch goes with keepalive
        rows = wait_rows(db, drain, mine, 9)
        errors = console_errors(chromium)

    kinds = sorted((row["type"], row["name"] or "") for row in rows)
    assert kinds == sorted(
        [
            ("page", "Shop"),
            ("track", "Order Completed"),
            ("identify", ""),
            ("group", ""),
            ("alias", ""),
            ("page", "Shop"),  # the reload
            ("page", "Shop"),  # the batching page
            ("track", "Batched One"),
            ("track", "Batched Two"),
        ]
    ), kinds
    assert len({row["message_id"] for row in rows}) == 9  # each once
    assert {row["anonymous_id"] for row in rows} == {anonymous_id}
    by_kind = {(row["type"], row["name"]): row for row in first}
    page = by_kind[("page", "Shop")]
    context = page["context"]
    assert context["user_agent"] == BROWSER_UA
    assert context["page"]["url"] == f"{origin}/shop?{marker}"
    assert context["page"]["path"] == "/shop"
    assert context["page"]["referrer"] == f"{origin}/start"
    assert context["page"]["title"] == "Shop"
    assert context["library"] == {"name": "analytics.js", "version": f"next-{VERSION}"}
    assert context["locale"]
    assert context["timezone"]
    assert page["properties"]["section"] == "shoes"
    track = by_kind[("track", "Order Completed")]
    assert track["properties"] == {"order_id": "o-1", "revenue": 42}
    identify = by_kind[("identify", None)]
    assert identify["user_id"] == f"user-{run}"
    assert identify["traits"] == {"email": "shopper@example.com", "plan": "pro"}
    group = by_kind[("group", None)]
    assert group["group_id"] == f"acme-{run}"
    alias = by_kind[("alias", None)]
    # the anonymous visitor aliased to the id it is then identified by (analytics.js 1.84 replaces an
    # alias's userId by the identified user's id, so alias comes first, as Segment's docs show it)
    assert (alias["user_id"], alias["previous_id"]) == (f"user-{run}", anonymous_id)
    assert {row["user_id"] for row in second[5:]} == {f"user-{run}"}  # kept across the reload
    assert not [e for e in errors if "favicon" not in e], errors


def _wait_ready(driver, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not driver.execute_script("return window.ajsReady === true"):
        if time.monotonic() > deadline:
            for entry in driver.get_log("browser"):
                print(entry["message"])
            raise AssertionError(driver.find_element("id", "status").text)
        time.sleep(0.1)


# --- the npm way: @segment/analytics-next bundled into the site's own script --------------------------

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
ESBUILD = BROWSER_DIR / "node_modules" / ".bin" / "esbuild"

NPM_ENTRY = """
import { AnalyticsBrowser } from "@segment/analytics-next";
const { writeKey, cdnURL } = window.SHOP;
const analytics = AnalyticsBrowser.load({ writeKey, cdnURL });
window.analytics = analytics;
analytics.page("Shop", { section: "shoes" });
analytics.then(([a]) => {  // AnalyticsBrowser is a promise of [Analytics, Context]
  document.getElementById("status").textContent =
    "@segment/analytics-next " + a.VERSION + " ready, anonymousId " + a.user().anonymousId();
  window.ajsInstance = a;
  window.ajsReady = true;
});
"""


@pytest.fixture(scope="module")
def npm_bundle() -> bytes:
    """The page's script: ``NPM_ENTRY`` bundled by esbuild with the pinned npm package."""
    if not ESBUILD.exists():
        pytest.skip("needs the npm packages: npm ci --prefix tests/e2e/browser")
    out = subprocess.run(
        [str(ESBUILD), "--bundle", "--format=iife", "--log-level=warning"],
        input=NPM_ENTRY.encode(),
        cwd=BROWSER_DIR,
        capture_output=True,
        check=True,
    )
    return out.stdout


@pytest.mark.parametrize("prefix", ["", "/t"], ids=["root", "first-party"])
def test_analytics_next_npm_in_chromium(settings, chromium, pages, screenshot, db, drain, npm_bundle, prefix):
    key = "wk_" + secrets.token_hex(8)
    add_source(settings.database_url, "segment", "web", key)
    run = secrets.token_hex(6)
    served = msgspec.structs.replace(settings, first_party_prefix=prefix or None)
    with live_gateway(served) as gateway:
        cdn = gateway + prefix
        shop = json.dumps({"writeKey": key, "cdnURL": cdn})
        origin = pages(
            {
                "/shop": f"""<!doctype html><html><head><title>Shop</title>
<script>window.SHOP = {shop};</script><script src="/shop.js"></script></head>
<body><h1>Shop (@segment/analytics-next from npm, bundled)</h1><p>cdnURL: <code>{cdn}</code></p>
<p id="status">loading...</p></body></html>""".encode(),
                "/shop.js": npm_bundle,
            }
        )
        chromium.get(f"{origin}/shop?run={run}")
        _wait_ready(chromium)
        chromium.execute_script(
            """
            const a = window.ajsInstance;
            a.track("Order Completed", {order_id: "o-1"});
            a.alias("user-RUN", a.user().anonymousId());
            a.identify("user-RUN", {plan: "pro"});
            a.group("acme-RUN", {name: "Acme"});
            """.replace("RUN", run)
        )
        rows = wait_rows(db, drain, f"context->'page'->>'search' = '?run={run}'", 5)
        screenshot(chromium)
        errors = console_errors(chromium)

    assert sorted((row["type"], row["name"] or "") for row in rows) == [
        ("alias", ""),
        ("group", ""),
        ("identify", ""),
        ("page", "Shop"),
        ("track", "Order Completed"),
    ]
    assert len({row["anonymous_id"] for row in rows}) == 1
    page = next(row for row in rows if row["type"] == "page")
    assert page["context"]["library"] == {"name": "analytics.js", "version": f"npm:next-{VERSION}"}
    assert page["context"]["page"]["path"] == "/shop"
    assert not [e for e in errors if "favicon" not in e], errors
