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


CampaignValues = tuple[object, object, object, object, object]
"""``context.campaign``'s source, medium, name, term and content."""


def _fields(
    campaign: CampaignValues | None, url: str | None, search: str | None
) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    if campaign is not None:
        for key, value in zip(_FROM_CONTEXT, campaign, strict=True):
            if isinstance(value, str) and value.strip():
                out[key] = value.strip()[:MAX_VALUE]
    if url and "?" in url:
        fields = url_fields(url)
    elif search and "=" in search:
        fields = query_fields(search)
    else:
        fields = ()
    for key, value in fields:
        out.setdefault(key, value)
    return tuple(out.items())


_cached_fields = lru_cache(maxsize=16384)(_fields)
"""The whole result for one combination of campaign fields and page URL (a site's URLs repeat);
tuples of strings, so nothing an event holds is shared mutably."""


def fields_of(event: Event) -> tuple[tuple[str, str], ...]:
    campaign = event.context.campaign
    page = event.context.page
    values: CampaignValues | None = None
    if campaign is not None:
        values = (campaign.source, campaign.medium, campaign.name, campaign.term, campaign.content)
    url = page.url if page is not None else None
    search = page.search if page is not None else None
    try:
        return _cached_fields(values, url, search)
    except TypeError:  # an unhashable value (a struct built by hand, not decoded): not cached
        return _fields(values, url, search)


def campaign_fields(event: Event) -> dict[str, str]:
    return dict(fields_of(event))


def process(event: Event, env) -> None:
    fields = fields_of(event)
    if fields:
        enrichment = event.enrichment
        for key, value in fields:
            enrichment.setdefault(key, value)
