"""The live debugger in a real headless Chromium: the page asks for the admin key, opens the stream,
and events sent through two dialects (Segment, OpenPanel) appear as the worker stores them, with a
duplicate marked and a refused request in red; the filters and the pause button work. A screenshot is
kept as a test artefact (``build/screenshots/``, as every browser test's; its path is printed).

Needs Debian's chromium and its driver (the ``chromium`` fixture of ``tests/e2e/conftest.py``).
"""

from __future__ import annotations

import time

import httpx
import msgspec

from tests.helpers import live_gateway, until
from trackgate import api_keys
from trackgate.gateway.openpanel import new_source as openpanel_source
from trackgate.schemas import debug_feed
from trackgate.sources import add_source
from trackgate.workers.debug_feed import WATCH


def items(browser) -> list[dict]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#events article')).map(a => ({kind: a.dataset.kind,"
        " text: a.textContent, red: getComputedStyle(a).backgroundColor}))"
    )


def test_events_of_two_dialects_appear_live(settings, write_key, db, rdb, drain, chromium, screenshot):
    browser = chromium  # the e2e conftest's headless Chromium (skips without it)
    key = api_keys.create_key(
        msgspec.structs.replace(settings, secret_key="a-long-test-secret"), settings.database_url
    ).key
    browser.set_window_size(1500, 1100)  # the page's items side by side
    op = openpanel_source(None, {})
    add_source(settings.database_url, "openpanel", "app", op["key"], op["settings"], op["extra_keys"])
    op_headers = {"openpanel-client-id": op["key"], "openpanel-client-secret": op["extra_keys"]["secret"]}
    with live_gateway(settings) as gateway:
        browser.get(f"{gateway}/debugger")
        browser.find_element("id", "api-key").send_keys(key)
        browser.find_element("id", "connect").click()
        until(lambda: browser.find_element("id", "status").text == "live", "the stream to open")
        assert browser.execute_script("return sessionStorage.getItem('trackgate.debugger.apiKey')") == key
        until(lambda: rdb.exists(debug_feed.WATCHERS), "the watchers key")
        time.sleep(1.2)  # the gateway reads the watch flag once a second
        WATCH.forget()

        track = {"userId": "u-42", "event": "Signed Up", "messageId": "m-1", "properties": {"plan": "pro"}}
        with httpx.Client(base_url=gateway, timeout=5) as http:
            assert http.post("/v1/track", json=track, auth=(write_key, "")).status_code == 200
            assert http.post("/v1/track", json=track, auth=(write_key, "")).status_code == 200  # a retry
            opened = {
                "type": "track",
                "payload": {"name": "checkout_opened", "profileId": "u-7", "properties": {"cart": 3}},
            }
            assert http.post("/track", json=opened, headers=op_headers).status_code == 200
            assert http.post("/v1/track", json={"userId": "u-42"}, auth=(write_key, "")).status_code == 400
            drain()
            shown = until(lambda: len(items(browser)) >= 4 and items(browser), "four items on the page")

        by_kind: dict[str, list[dict]] = {}
        for item in shown:
            by_kind.setdefault(item["kind"], []).append(item)
        assert sorted(by_kind) == ["duplicate", "refused", "stored"]
        stored = " ".join(item["text"] for item in by_kind["stored"])
        assert (
            "segment" in stored
            and "Signed Up" in stored
            and "openpanel" in stored
            and "checkout_opened" in stored
        )
        assert (
            '"plan": "pro"' in stored and "visitor_id" in stored
        )  # raw, canonical and enrichment side by side
        (duplicate,) = by_kind["duplicate"]
        assert "Signed Up" in duplicate["text"]
        (refused,) = by_kind["refused"]
        assert "missing_event" in refused["text"] and "400 /v1/track" in refused["text"]
        assert refused["red"] == "rgb(254, 242, 242)"

        name_filter = browser.find_element("id", "f-name")
        name_filter.send_keys("checkout*")
        assert [item["text"].count("checkout_opened") > 0 for item in items(browser)] == [True]
        name_filter.clear()
        browser.execute_script("document.getElementById('f-name').dispatchEvent(new Event('input'))")
        assert len(items(browser)) == 4

        from selenium.webdriver.support.select import Select

        (op_id,) = db.execute("SELECT id FROM sources WHERE dialect = 'openpanel'").fetchone()
        Select(browser.find_element("id", "f-source")).select_by_visible_text(f"app (openpanel, {op_id})")
        assert [item["text"].count("checkout_opened") > 0 for item in items(browser)] == [True]
        assert "app (openpanel, src_" in items(browser)[0]["text"]  # the source by its name
        Select(browser.find_element("id", "f-source")).select_by_visible_text("all sources")
        assert len(items(browser)) == 4

        browser.find_element("id", "pause").click()
        with httpx.Client(base_url=gateway, timeout=5) as http:
            later = {"userId": "u-42", "event": "Paused Event", "messageId": "m-2"}
            assert http.post("/v1/track", json=later, auth=(write_key, "")).status_code == 200
        drain()
        until(lambda: "1 waiting" in browser.find_element("id", "counts").text, "the paused event to wait")
        assert len(items(browser)) == 4
        browser.find_element("id", "pause").click()
        assert "Paused Event" in items(browser)[0]["text"]  # newest first

        browser.set_window_size(1500, 2600)  # every item, the refused one in red at the bottom
        browser.execute_script("window.scrollTo(0, 0)")
        shot = screenshot(browser)
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000
