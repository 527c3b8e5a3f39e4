"""Bots: ``crawlerdetect``'s maintained crawler list plus headless and automated browsers.

Sets ``enrichment.is_bot = true`` on a bot's events (absent means not a bot, as adapters flag it); a
True an adapter already set stays. Bot events are stored like any other: the worker never drops them.

Server-side SDKs send from HTTP client libraries that crawler lists name (``Go-http-client``,
``okhttp``, ``python-requests``). An event that names its SDK in ``context.library`` and whose user agent
is not a browser's (no ``Mozilla/``) is judged by the headless list only, not by the crawler list; so
is any event sent with a bare HTTP client library (``curl``, ``python-requests``): server-side tracking.
A dialect that only a browser should speak (TinyTrail) flags those at the gateway, and that True stays.
An agent longer than ``adapters.traffic.OVERLONG_UA_CHARS`` is a bot whatever it says.
"""

from __future__ import annotations

import re
from functools import lru_cache

from trackgate.adapters.traffic import OVERLONG_UA_CHARS, bounded_user_agent, is_crawler
from trackgate.schemas.event import Event

HEADLESS = re.compile(
    r"HeadlessChrome|PhantomJS|SlimerJS|Headless|Puppeteer|Playwright|Selenium|WebDriver|Electron/.*HappyDOM"
    r"|jsdom|Splash|Lighthouse|Chrome-Lighthouse|PTST/|Cypress",
    re.I,
)

HTTP_CLIENT = re.compile(
    r"^(curl|Wget|python-requests|python-httpx|python-urllib|aiohttp|Go-http-client|okhttp|axios"
    r"|node-fetch|node|undici|Java/|Apache-HttpClient|Ruby|PHP|GuzzleHttp|libwww-perl|HTTPie|PostmanRuntime)\b",
    re.I,
)
"""HTTP client libraries. A tracking call sent with one is server-side tracking (a backend, a cron job,
``curl``), not a crawler: crawler lists name them because, fetching a web page, they are scrapers."""


@lru_cache(maxsize=16384)
def is_headless(ua: str) -> bool:
    return HEADLESS.search(ua) is not None


@lru_cache(maxsize=16384)
def is_bot_ua(ua: str) -> bool:
    """A crawler (crawlerdetect, ~0.6 ms a new string, hence the cache) or a headless browser."""
    return is_headless(ua) or is_crawler(ua)


def is_bot(ua: str | None, library: str | None = None) -> bool:
    """An agent over OVERLONG_UA_CHARS is a bot by rule; of others only the bounded prefix is looked
    at (and cached), so a hostile agent costs no more than a normal one."""
    if not ua:
        return False
    if len(ua) > OVERLONG_UA_CHARS:
        return True
    ua = bounded_user_agent(ua)
    if (library and not ua.startswith("Mozilla/")) or HTTP_CLIENT.match(ua):
        return is_headless(ua)
    return is_bot_ua(ua)


@lru_cache(maxsize=16384)
def verdict(ua: str, names_library: bool) -> bool:
    """:func:`is_bot`'s whole answer for one user agent, and whether the event names its SDK, cached
    (a worker's events repeat a few thousand agents). Callers decide agents over OVERLONG_UA_CHARS
    themselves and pass the bounded prefix of others (all that :func:`is_bot` reads of them), so a
    key is at most CLASSIFIED_UA_CHARS long."""
    return is_bot(ua, "library" if names_library else None)


def process(event: Event, env) -> None:
    ua = event.context.user_agent
    out = event.enrichment
    if not ua or out.get("is_bot") is True:
        return
    library = event.context.library
    if len(ua) > OVERLONG_UA_CHARS or verdict(
        bounded_user_agent(ua), library is not None and bool(library.name)
    ):
        out["is_bot"] = True
