"""User agent → browser/OS/device type, and bot flags: table-driven."""

from __future__ import annotations

import pytest

from tests.workers.enrich.helpers import CHROME, event
from trackgate.workers.enrich import Env, bots, user_agent

ENV = Env()

UA_CASES = [
    # (user agent, browser, major version prefix, os, device type)
    (CHROME, "Chrome", "124", "Windows", "desktop"),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15",
        "Safari",
        "17",
        "Mac OS X",
        "desktop",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
        "Firefox",
        "126",
        "Linux",
        "desktop",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "17",
        "iOS",
        "mobile",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "16",
        "iOS",
        "tablet",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile",
        "124",
        "Android",
        "mobile",
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Chrome",
        "124",
        "Android",
        "tablet",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
        "Edge",
        "124",
        "Windows",
        "desktop",
    ),
]


@pytest.mark.parametrize(("ua", "browser", "major", "os", "device"), UA_CASES)
def test_user_agent(ua, browser, major, os, device):
    e = event(ua=ua)
    bots.process(e, ENV)
    user_agent.process(e, ENV)
    assert e.enrichment["browser"] == browser
    assert e.enrichment["browser_version"].split(".")[0] == major
    assert e.enrichment["os"] == os
    assert e.enrichment["device_type"] == device
    assert "is_bot" not in e.enrichment


BOT_CASES = [
    # (user agent, library, is_bot)
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", None, True),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", None, True),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 "
        "Safari/537.36",
        None,
        True,
    ),
    (
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 "
        "Safari/538.1",
        None,
        True,
    ),
    # an HTTP client library posting tracking calls is server-side tracking, not a crawler (crawler
    # lists name these because, for a web page, they are scrapers)
    ("curl/8.5.0", None, False),
    ("python-requests/2.31.0", None, False),
    ("python-httpx/0.28.1", None, False),
    ("node", None, False),
    ("Wget/1.21.4", None, False),
    ("Scrapy/2.11.0 (+https://scrapy.org)", None, True),
    (CHROME, None, False),
    # a server-side SDK's HTTP client is not a crawler
    ("python-requests/2.31.0", "analytics-python", False),
    ("Go-http-client/1.1", "analytics-go", False),
    # ... but a headless browser is a bot whatever library it names
    ("HeadlessChrome/124.0.0.0", "analytics.js", True),
]


@pytest.mark.parametrize(("ua", "library", "expected"), BOT_CASES)
def test_bots(ua, library, expected):
    e = event(ua=ua, library=library)
    bots.process(e, ENV)
    user_agent.process(e, ENV)
    assert e.enrichment.get("is_bot", False) is expected
    assert (e.enrichment["device_type"] == "bot") is expected


def test_adapter_flags_and_client_fields_kept():
    # an adapter's is_bot True stays even for a browser user agent; client-set keys are not overwritten
    e = event(ua=CHROME, enrichment={"is_bot": True, "browser": "Custom"})
    bots.process(e, ENV)
    user_agent.process(e, ENV)
    assert e.enrichment["is_bot"] is True
    assert e.enrichment["browser"] == "Custom"
    assert e.enrichment["device_type"] == "bot"


def test_no_user_agent_adds_nothing():
    e = event()
    bots.process(e, ENV)
    user_agent.process(e, ENV)
    assert e.enrichment == {}


def test_parse_is_cached():
    user_agent.parse_user_agent.cache_clear()
    user_agent.parse_user_agent(CHROME)
    user_agent.parse_user_agent(CHROME)
    assert user_agent.parse_user_agent.cache_info().hits == 1
