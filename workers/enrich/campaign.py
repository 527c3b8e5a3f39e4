"""Campaign: UTM fields and ad click ids.

Enrichment keys: ``utm_source``, ``utm_medium``, ``utm_campaign``, ``utm_term``, ``utm_content``, ``gclid``,
``msclkid``, ``fbclid``. The dialect's own campaign fields (``context.campaign``, which analytics.js and
others fill from the page URL) come first; a field they lack is read from the page URL's query
(``context.page.url``, else ``context.page.search``). Parameter names are matched case-insensitively;
values are kept as sent (URL-decoded), cut to 500 characters.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

from trackgate.schemas.event import Event

UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
CLICK_IDS = ("gclid", "msclkid", "fbclid")
WANTED = frozenset(UTM + CLICK_IDS)
MAX_VALUE = 500
_FROM_CONTEXT = {
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_campaign": "name",
    "utm_term": "term",
    "utm_content": "content",
}


@lru_cache(maxsize=8192)
def query_fields(query: str) -> tuple[tuple[str, str], ...]:
    """The campaign parameters in a query string, first occurrence of each, as (name, value)."""
    found: dict[str, str] = {}
    for name, value in parse_qsl(query.lstrip("?"), keep_blank_values=False):
        key = name.lower()
        if key in WANTED and key not in found and value.strip():
            found[key] = value.strip()[:MAX_VALUE]
    return tuple(found.items())


def url_query(url: str | None) -> str:
    if not url or "?" not in url:
        return ""
    try:
        return urlsplit(url).query
    except ValueError:
        return ""


@lru_cache(maxsize=16384)
def url_fields(url: str) -> tuple[tuple[str, str], ...]:
    """The campaign parameters of a page URL, cached by URL (a site's tagged URLs repeat)."""
    query = url_query(url)
    return query_fields(query) if "=" in query else ()


def campaign_fields(event: Event) -> dict[str, str]:
    out: dict[str, str] = {}
    campaign = event.context.campaign
    if campaign is not None:
        for key, attr in _FROM_CONTEXT.items():
            value = getattr(campaign, attr)
            if isinstance(value, str) and value.strip():
                out[key] = value.strip()[:MAX_VALUE]
    page = event.context.page
    if page is not None:
        if page.url and "?" in page.url:
            fields = url_fields(page.url)
        elif page.search and "=" in page.search:
            fields = query_fields(page.search)
        else:
            fields = ()
        for key, value in fields:
            out.setdefault(key, value)
    return out


def process(event: Event, env) -> None:
    fields = campaign_fields(event)
    if fields:
        enrichment = event.enrichment
        for key, value in fields.items():
            enrichment.setdefault(key, value)
