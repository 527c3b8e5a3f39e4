"""Referrer → referrer domain, traffic source/medium and channel (GA4's default channel grouping).

Enrichment keys:
- ``referrer_domain``: the referrer's host, lower-cased, without ``www.`` (kept for internal referrers).
- ``traffic_source`` / ``traffic_medium``: what GA4 would call the session source and medium of this
  hit: the UTM source/medium when tagged; else ``google``/``cpc`` for a ``gclid``, ``bing``/``cpc`` for
  a ``msclkid`` (auto-tagging); else for an external referrer its domain with medium ``organic`` when
  the domain is a search engine of GA4's list, ``referral`` otherwise; else
  ``(direct)``/``(none)``. A referrer on the page's own host is internal: it counts as no referrer.
  Events with neither a page nor campaign fields (server-side calls) get none of these three.
- ``channel``: GA4's default channel group, by GA4's published rules evaluated in GA4's order, with the
  source category from GA4's published list of sources (``data/ga4_sources.csv``).

``schemas/channels.py`` maps a GA4 channel onto TinyTrail's six (Organic Search, Paid Search, Social,
Email, Referral, Direct).
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from importlib import resources
from urllib.parse import urlsplit

from trackgate.schemas.event import Event

SEARCH = "SOURCE_CATEGORY_SEARCH"
SOCIAL = "SOURCE_CATEGORY_SOCIAL"
SHOPPING = "SOURCE_CATEGORY_SHOPPING"
VIDEO = "SOURCE_CATEGORY_VIDEO"

CHANNELS = (
    "Direct",
    "Cross-network",
    "Paid Shopping",
    "Paid Search",
    "Paid Social",
    "Paid Video",
    "Display",
    "Paid Other",
    "Organic Shopping",
    "Organic Social",
    "Organic Video",
    "Organic Search",
    "Email",
    "Affiliates",
    "Referral",
    "Audio",
    "SMS",
    "Mobile Push Notifications",
    "Unassigned",
)
"""GA4's default channel groups, in the order GA4 evaluates them."""

_PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$")
_SHOP_CAMPAIGN = re.compile(r"^(.*(([^a-df-z]|^)shop|shopping).*)$")
_DISPLAY_MEDIUMS = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
_SOCIAL_MEDIUMS = frozenset(
    {"social", "social-network", "social-media", "sm", "social network", "social media"}
)
_EMAIL = frozenset({"email", "e-mail", "e_mail", "e mail"})
_REFERRAL_MEDIUMS = frozenset({"referral", "app", "link"})
# second-level labels under which a country's registrable names live (google.co.uk, yahoo.com.au)
_CAMPAIGN_KEYS = ("utm_source", "utm_medium", "utm_campaign", "gclid", "msclkid")
_SLD = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gob", "mil"})


@lru_cache(maxsize=1)
def source_categories() -> dict[str, str]:
    """GA4's list of sources → source category, from the package data file (names lower-cased)."""
    text = (resources.files("trackgate.workers.enrich") / "data" / "ga4_sources.csv").read_text()
    rows = csv.reader(text.splitlines()[1:])
    return {row[0].strip().lower(): row[1].strip() for row in rows if len(row) >= 2 and row[0].strip()}


@lru_cache(maxsize=16384)
def host_of(url: str | None) -> str | None:
    """The lower-cased host of ``url`` without ``www.``; None if it has none."""
    if not url:
        return None
    try:
        host = urlsplit(url if "//" in url else "//" + url).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.rstrip(".")
    return host[4:] if host.startswith("www.") else host


def _registrable_label(host: str) -> str | None:
    """``google`` for ``news.google.co.uk``: the label before the public suffix (a heuristic: one TLD,
    or a country code preceded by one of the usual second-level labels)."""
    labels = host.split(".")
    if len(labels) < 2:
        return None
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SLD:
        return labels[-3]
    return labels[-2]


@lru_cache(maxsize=16384)
def source_category(source: str | None) -> str | None:
    """The GA4 source category of a source or referrer host: the name itself, then each parent domain,
    then the registrable label (GA4's list names ``google``, ``bing``, ``yahoo`` by label)."""
    if not source:
        return None
    table = source_categories()
    name = source.lower().strip()
    if name in table:
        return table[name]
    labels = name.split(".")
    for i in range(1, len(labels) - 1):
        parent = ".".join(labels[i:])
        if parent in table:
            return table[parent]
    label = _registrable_label(name)
    if label and label in table:
        return table[label]
    return None


@lru_cache(maxsize=16384)
def default_channel(source: str, medium: str, campaign: str = "", category: str | None = None) -> str:
    """GA4's default channel group of a source/medium/campaign, by its published rules in order."""
    source = (source or "").lower()
    medium = (medium or "").lower()
    campaign = (campaign or "").lower()
    if category is None:
        category = source_category(source)
    paid = _PAID_MEDIUM.match(medium) is not None
    if source == "(direct)" and medium in ("(not set)", "(none)", ""):
        return "Direct"
    if "cross-network" in campaign:
        return "Cross-network"
    shopping = category == SHOPPING or _SHOP_CAMPAIGN.match(campaign) is not None
    if shopping and paid:
        return "Paid Shopping"
    if category == SEARCH and paid:
        return "Paid Search"
    if category == SOCIAL and paid:
        return "Paid Social"
    if category == VIDEO and paid:
        return "Paid Video"
    if medium in _DISPLAY_MEDIUMS:
        return "Display"
    if paid:
        return "Paid Other"
    if shopping:
        return "Organic Shopping"
    if category == SOCIAL or medium in _SOCIAL_MEDIUMS:
        return "Organic Social"
    if category == VIDEO or "video" in medium:
        return "Organic Video"
    if category == SEARCH or medium == "organic":
        return "Organic Search"
    if source in _EMAIL or medium in _EMAIL:
        return "Email"
    if medium == "affiliate":
        return "Affiliates"
    if medium in _REFERRAL_MEDIUMS:
        return "Referral"
    if medium == "audio":
        return "Audio"
    if source == "sms" or medium == "sms":
        return "SMS"
    if medium.endswith("push") or "mobile" in medium or "notification" in medium or source == "firebase":
        return "Mobile Push Notifications"
    return "Unassigned"


def traffic_source(
    referrer_host: str | None, page_host: str | None, utm: dict, click_ids: dict
) -> tuple[str, str]:
    """(source, medium) as GA4 would attribute this hit."""
    source = utm.get("utm_source")
    medium = utm.get("utm_medium")
    if source or medium:
        return (source or "(not set)").lower(), (medium or "(not set)").lower()
    if click_ids.get("gclid"):
        return "google", "cpc"
    if click_ids.get("msclkid"):
        return "bing", "cpc"
    if referrer_host and referrer_host != page_host:
        category = source_category(referrer_host)
        if category == SEARCH:
            label = _registrable_label(referrer_host)
            return (label if label and label in source_categories() else referrer_host), "organic"
        return referrer_host, "referral"
    return "(direct)", "(none)"


@lru_cache(maxsize=16384)
def referrer_fields(
    referrer: str | None,
    page_url: str | None,
    utm_source: str | None,
    utm_medium: str | None,
    utm_campaign: str | None,
    gclid: bool,
    msclkid: bool,
) -> tuple[tuple[str, str], ...]:
    """The referrer keys of one combination of inputs (cached: a site's referrers and URLs repeat)."""
    out: list[tuple[str, str]] = []
    ref_host = host_of(referrer)
    if ref_host:
        out.append(("referrer_domain", ref_host))
    utm = {"utm_source": utm_source, "utm_medium": utm_medium}
    source, medium = traffic_source(ref_host, host_of(page_url), utm, {"gclid": gclid, "msclkid": msclkid})
    out.append(("traffic_source", source))
    out.append(("traffic_medium", medium))
    out.append(("channel", default_channel(source, medium, utm_campaign or "")))
    return tuple(out)


def process(event: Event, env) -> None:
    page = event.context.page
    out = event.enrichment
    if page is None and not any(key in out for key in _CAMPAIGN_KEYS):
        return  # not a web hit (a server-side call): no traffic source to speak of
    referrer = page.referrer if page is not None else None
    url = page.url if page is not None else None
    if out.keys().isdisjoint(_CAMPAIGN_KEYS):  # the usual hit: untagged
        fields = referrer_fields(referrer, url, None, None, None, False, False)
    else:
        get = out.get
        fields = referrer_fields(
            referrer,
            url,
            get("utm_source"),
            get("utm_medium"),
            get("utm_campaign"),
            bool(get("gclid")),
            bool(get("msclkid")),
        )
    for key, value in fields:
        out.setdefault(key, value)
