"""The data of ``python -m bench reports``: N events of one TinyTrail website over the last 12 months.

Every row is what trackgate itself stores for the request a browser would send: the generator makes
TinyTrail collect bodies and request metadata (IP, user agent, the gateway's ``is_bot``/``is_excluded``
hints), decodes them with the real adapter (``adapters/tinytrail.py``), runs the real enrichment chain
(``workers.enrich.enrich_event``, with a salt per day as the workers keep them) and COPYs
``workers.store.event_row`` rows with ``workers.store.COPY_SQL``. Only the HTTP hop and the queue are
skipped, so ``enrichment`` holds exactly the keys and values the chain writes (visitor_id, is_bot,
device_type, browser, os, screen_bucket, channel, referrer_domain, utm_*, content_group, country ...).

The traffic (a documentation/blog/product site, :class:`Site`):
- days: 365 closed days ending yesterday, plus today until the moment of generation; daily volume
  with weekly seasonality (weekends at ~65%), a yearly wave (summer and late-December dips), a 35%
  growth over the year and day-to-day noise, scaled so that the total is exactly N;
- hours: a diurnal curve (European and American daytime), sessions start at random minutes;
- sessions of 1–8 page views (45% bounce), dwell times log-normal around 40 s (always under 30 minutes),
  a visitor's second session the same day starts 35 minutes to 6 hours after the first;
- ~3,000 paths with a long tail (Zipf, s = 1.05), landing pages from the same law, a funnel
  ``/pricing`` → ``/signup`` → ``/onboarding``; content groups Blog, Docs, Features, Changelog;
- per page view scroll_25/50/75, outbound_link, 20 custom event names (``custom`` with
  ``properties.name``), ``close_tab`` at the end of half the sessions: page views are ~42% of events;
- first hits from search engines, social sites, referrals (a long tail of domains), e-mail and paid
  campaigns (UTM-tagged, gclid), direct traffic; later hits have the previous page as referrer;
- 52 real user agents (desktop, mobile, tablet), screen widths that fit the device (2% none);
- ~4% of events from crawlers and headless browsers; ~0.5% from the site's office network (excluded).

Deterministic per seed and day (the ids excepted, which are uuid7 as the gateway makes them), so the
set of rows does not depend on how many processes generate it. Days are spread over ``processes``
processes, each COPYing its days into the database in day order, one transaction a day.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import itertools
import math
import multiprocessing
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import uuid_utils
from psycopg.conninfo import make_conninfo

from trackgate.adapters import tinytrail
from trackgate.adapters.traffic import is_crawler, is_excluded
from trackgate.gateway.tinytrail import new_source
from trackgate.migrate import migrate
from trackgate.schemas.event import Event
from trackgate.schemas.request import RequestMeta
from trackgate.sources import add_source
from trackgate.workers import store
from trackgate.workers.enrich import Env, enrich_event

GENERATOR_VERSION = 2  # 2: the enrichment in typed columns (migration 0018)
"""Bump when the rows change: a cached database of another version is not reused."""

WEBSITE_ID = "5e1f0c3a-7b2d-4c8e-9f10-b3a4c5d6e7f8"
DOMAIN = "docs-and-blog.example"
CONTENT_GROUPS = [
    {"name": "Blog", "pattern": "/blog/*"},
    {"name": "Docs", "pattern": "/docs/*"},
    {"name": "Features", "pattern": "/features/*"},
    {"name": "Changelog", "pattern": "/changelog/*"},
]
OFFICE = "81.2.69.0/24"
EXCLUDED_IPS = [OFFICE]
SETTINGS: dict[str, Any] = {"domain": DOMAIN, "excluded_ips": EXCLUDED_IPS, "content_groups": CONTENT_GROUPS}
FUNNEL = ("/pricing", "/signup", "/onboarding")
DAYS = 365

SESSION_GAP = timedelta(minutes=30)

# --- the site -------------------------------------------------------------------------------------

_WORDS = [
    "privacy",
    "analytics",
    "cookie",
    "consent",
    "tracking",
    "pixel",
    "server",
    "events",
    "schema",
    "gateway",
    "dashboard",
    "funnel",
    "retention",
    "cohort",
    "segment",
    "campaign",
    "referrer",
    "channel",
    "bounce",
    "session",
    "visitor",
    "browser",
    "mobile",
    "release",
    "pricing",
    "migration",
    "export",
    "import",
    "webhook",
    "api",
    "sdk",
    "guide",
    "tutorial",
    "deep",
    "dive",
    "benchmark",
    "postgres",
    "redis",
    "queue",
    "worker",
    "scaling",
    "latency",
    "cache",
    "index",
    "partition",
    "rollup",
    "daily",
    "weekly",
]

CUSTOM_EVENTS: tuple[tuple[str, float], ...] = (
    ("cta_click", 14),
    ("search", 11),
    ("video_play", 9),
    ("copy_code", 8),
    ("newsletter_subscribe", 6),
    ("download_pdf", 5),
    ("share_click", 5),
    ("faq_expand", 4),
    ("pricing_toggle", 4),
    ("form_start", 4),
    ("chat_open", 3),
    ("theme_toggle", 3),
    ("language_switch", 2),
    ("plan_select", 2),
    ("demo_request", 2),
    ("form_submit", 2),
    ("login", 2),
    ("video_complete", 1.5),
    ("invite_sent", 1),
    ("signup_complete", 1),
)
"""Twenty custom event names and their relative frequency."""

_CHROME = "Mozilla/5.0 ({os}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 {m}Safari/537.36"
_WIN = "Windows NT 10.0; Win64; x64"
_MAC = "Macintosh; Intel Mac OS X 10_15_7"
_LINUX = "X11; Linux x86_64"


def _agents() -> list[tuple[str, str, float]]:
    """(user agent, device kind, weight): real browsers' strings, weighted as a tech site's traffic."""
    out: list[tuple[str, str, float]] = []
    for v in (126, 127, 128, 129, 130, 131):
        out.append((_CHROME.format(os=_WIN, v=v, m=""), "desktop", 6))
        out.append((_CHROME.format(os=_MAC, v=v, m=""), "desktop", 3))
        out.append((_CHROME.format(os=_LINUX, v=v, m=""), "desktop", 1))
        out.append((_CHROME.format(os=_WIN, v=v, m="") + f" Edg/{v}.0.0.0", "desktop", 1.5))
        out.append((_CHROME.format(os="Linux; Android 10; K", v=v, m="Mobile "), "mobile", 4))
    for safari in ("17.5", "17.6", "18.0", "18.1"):
        out.append(
            (
                f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
                f" Version/{safari} Safari/605.1.15",
                "desktop",
                2,
            )
        )
        ios = safari.replace(".", "_")
        out.append(
            (
                f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
                f" Gecko) Version/{safari} Mobile/15E148 Safari/604.1",
                "mobile",
                5,
            )
        )
        out.append(
            (
                f"Mozilla/5.0 (iPad; CPU OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
                f" Version/{safari} Mobile/15E148 Safari/604.1",
                "tablet",
                1,
            )
        )
    for v in (128, 130, 131, 132):
        out.append((f"Mozilla/5.0 ({_WIN}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0", "desktop", 1.5))
        out.append(
            (
                f"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
                "desktop",
                0.7,
            )
        )
    out.append(
        (
            "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko)"
            " SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
            "mobile",
            1.5,
        )
    )
    out.append(
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/130.0.0.0 Safari/537.36",
            "tablet",
            0.6,
        )
    )
    return out


BOT_AGENTS: tuple[tuple[str, float], ...] = (
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 5),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1;"
        " +http://www.google.com/bot.html) Chrome/130.0.6723.69 Safari/537.36",
        4,
    ),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 3),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", 2),
    ("Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)", 1.5),
    ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", 1),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/130.0.0.0"
        " Safari/537.36",
        2,
    ),
)

WIDTHS = {
    "desktop": ((1280, 800), (1366, 768), (1440, 900), (1536, 864), (1600, 900), (1920, 1080), (2560, 1440)),
    "mobile": ((360, 800), (375, 812), (390, 844), (393, 852), (412, 915), (414, 896), (430, 932)),
    "tablet": ((768, 1024), (810, 1080), (820, 1180), (834, 1194), (1024, 1366)),
}

SEARCH = (("https://www.google.com/", 80), ("https://www.bing.com/", 8), ("https://duckduckgo.com/", 7),
          ("https://search.yahoo.com/", 2), ("https://www.ecosia.org/", 3))  # fmt: skip
SOCIAL = (("https://t.co/", 30), ("https://l.facebook.com/", 20), ("https://www.linkedin.com/", 25),
          ("https://www.reddit.com/", 15), ("https://www.youtube.com/", 10))  # fmt: skip
CAMPAIGNS = (
    ("twitter", "social", "launch", "https://t.co/", 4),
    ("linkedin", "social", "webinar", "https://www.linkedin.com/", 2),
    ("newsletter", "email", "weekly", None, 5),
    ("partner", "referral", "integration", "https://partner.example.org/", 1),
)


@dataclass
class Visitor:
    ip: str
    agent: str
    kind: str
    screen: tuple[int, int] | None


@dataclass
class Site:
    """Everything that is the same for every day: paths, agents, referrers, a returning-visitor pool."""

    seed: int
    paths: list[str] = field(default_factory=list)
    path_cum: list[float] = field(default_factory=list)
    agents: list[tuple[str, str, float]] = field(default_factory=list)
    agent_cum: list[float] = field(default_factory=list)
    referral_domains: list[str] = field(default_factory=list)
    referral_cum: list[float] = field(default_factory=list)
    returning: list[Visitor] = field(default_factory=list)

    @classmethod
    def build(cls, seed: int) -> Site:
        rnd = random.Random(f"{seed}:site")
        site = cls(seed=seed)
        core = ["/", "/pricing", "/features", "/docs", "/blog", "/signup", "/about", "/features/analytics",
                "/features/privacy", "/features/api", "/changelog", "/contact", "/login", "/onboarding",
                "/careers", "/legal/privacy", "/legal/terms", "/security", "/status"]  # fmt: skip
        tail: list[str] = []
        seen = set(core)
        while len(tail) < 1800:
            slug = "-".join(rnd.sample(_WORDS, 3))
            if f"/blog/{slug}" not in seen:
                seen.add(f"/blog/{slug}")
                tail.append(f"/blog/{slug}")
        sections = ["getting-started", "sdk", "api", "guides", "reference", "self-hosting", "recipes"]
        for i in range(900):
            tail.append(f"/docs/{sections[i % len(sections)]}/{rnd.choice(_WORDS)}-{i}")
        for i in range(300):
            tail.append(f"/changelog/{2019 + i // 50}-{i % 12 + 1:02d}-{i}")
        rnd.shuffle(tail)
        site.paths = core + tail
        weights = [1 / (rank + 1) ** 1.05 for rank in range(len(site.paths))]
        site.path_cum = list(itertools.accumulate(weights))
        site.agents = _agents()
        site.agent_cum = list(itertools.accumulate(w for _, _, w in site.agents))
        site.referral_domains = [f"https://{rnd.choice(_WORDS)}-{i}.example.net/" for i in range(400)]
        site.referral_cum = list(itertools.accumulate(1 / (r + 1) for r in range(400)))
        site.returning = [site.new_visitor(rnd) for _ in range(20_000)]
        return site

    def new_visitor(self, rnd: random.Random) -> Visitor:
        agent, kind, _ = self.agents[bisect.bisect(self.agent_cum, rnd.random() * self.agent_cum[-1])]
        screen = None if rnd.random() < 0.02 else rnd.choice(WIDTHS[kind])
        ip = OFFICE.replace("0/24", str(rnd.randrange(1, 40))) if rnd.random() < 0.005 else public_ip(rnd)
        return Visitor(ip=ip, agent=agent, kind=kind, screen=screen)

    def path(self, rnd: random.Random) -> str:
        return self.paths[bisect.bisect(self.path_cum, rnd.random() * self.path_cum[-1])]

    def next_path(self, rnd: random.Random, current: str) -> str:
        r = rnd.random()
        if current == "/pricing" and r < 0.25:
            return "/signup"
        if current == "/signup" and r < 0.45:
            return "/onboarding"
        if current == "/" and r < 0.3:
            return "/pricing"
        return self.path(rnd)

    def referral(self, rnd: random.Random) -> str:
        return self.referral_domains[bisect.bisect(self.referral_cum, rnd.random() * self.referral_cum[-1])]


def public_ip(rnd: random.Random) -> str:
    while True:
        address = ipaddress.IPv4Address(rnd.getrandbits(32))
        if address.is_global and not address.is_multicast:
            return str(address)


# --- days -----------------------------------------------------------------------------------------


def day_weight(day: date, first: date) -> float:
    """Relative volume of a day: weekly and yearly seasonality and growth (noise is added per day)."""
    weekly = (1.0, 1.05, 1.05, 1.0, 0.92, 0.66, 0.62)[day.weekday()]
    doy = day.timetuple().tm_yday
    yearly = 1 + 0.12 * math.cos(2 * math.pi * (doy - 40) / 365)  # high in February, low in August
    if (day.month, day.day) >= (12, 22) or (day.month, day.day) <= (1, 2):
        yearly *= 0.55  # the holidays
    growth = 1 + 0.35 * (day - first).days / DAYS
    noise = random.Random(f"noise:{day.isoformat()}").uniform(0.9, 1.1)
    return weekly * yearly * growth * noise


def plan_days(n: int, now: datetime) -> list[tuple[date, int, datetime]]:
    """(day, events, end) for the 365 closed days before ``now`` and today until ``now``: volumes by
    :func:`day_weight`, today's in proportion to the time passed, summing to exactly ``n``."""
    today = now.date()
    first = today - timedelta(days=DAYS)
    days = [first + timedelta(days=i) for i in range(DAYS + 1)]
    elapsed = (now - datetime(today.year, today.month, today.day, tzinfo=UTC)).total_seconds() / 86400
    weights = [day_weight(d, first) * (elapsed if d == today else 1.0) for d in days]
    total = sum(weights)
    exact = [n * w / total for w in weights]
    counts = [math.floor(x) for x in exact]
    for i in sorted(range(len(days)), key=lambda i: counts[i] - exact[i])[: n - sum(counts)]:
        counts[i] += 1
    ends = [
        now if d == today else datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1) for d in days
    ]
    return list(zip(days, counts, ends, strict=True))


HOURS = (0.25, 0.18, 0.14, 0.13, 0.15, 0.25, 0.45, 0.7, 0.95, 1.1, 1.2, 1.2, 1.15, 1.2, 1.3, 1.35, 1.3,
         1.2, 1.05, 0.95, 0.85, 0.7, 0.5, 0.35)  # fmt: skip
_HOUR_CUM = list(itertools.accumulate(HOURS))


@dataclass(frozen=True, slots=True)
class Hit:
    """One collect request: what the tracker sends, and from where."""

    at: datetime
    body: bytes
    visitor: Visitor
    view: tuple[datetime, str]
    """The page view the hit belongs to (its time and URL): the hits of one page view have the same
    URL, path, referrer, screen, IP and agent, so the chain gives them the same enrichment."""


def day_salt(seed: int, day: date) -> bytes:
    return hashlib.sha256(f"{seed}:salt:{day.isoformat()}".encode()).digest()


def _landing(site: Site, rnd: random.Random, path: str) -> tuple[str, str | None]:
    """The first hit's URL and referrer: where the visit came from."""
    url = f"https://{DOMAIN}{path}"
    r = rnd.random()
    if r < 0.35:
        return url, None  # direct
    if r < 0.68:
        return url, SEARCH[bisect.bisect(_SEARCH_CUM, rnd.random() * _SEARCH_CUM[-1])][0]
    if r < 0.78:
        return url, SOCIAL[bisect.bisect(_SOCIAL_CUM, rnd.random() * _SOCIAL_CUM[-1])][0]
    if r < 0.88:
        return url, site.referral(rnd)
    if r < 0.92:  # paid search
        return (
            f"{url}?utm_source=google&utm_medium=cpc&utm_campaign=brand&gclid=Cj0K{rnd.getrandbits(40):x}",
            ("https://www.google.com/"),
        )
    source, medium, campaign, referrer, _ = CAMPAIGNS[
        bisect.bisect(_CAMPAIGN_CUM, rnd.random() * _CAMPAIGN_CUM[-1])
    ]
    if medium == "email":
        campaign = f"weekly-{rnd.randrange(1, 53)}"
    return f"{url}?utm_source={source}&utm_medium={medium}&utm_campaign={campaign}", referrer


_SEARCH_CUM = list(itertools.accumulate(w for _, w in SEARCH))
_SOCIAL_CUM = list(itertools.accumulate(w for _, w in SOCIAL))
_CAMPAIGN_CUM = list(itertools.accumulate(c[-1] for c in CAMPAIGNS))
_CUSTOM_CUM = list(itertools.accumulate(w for _, w in CUSTOM_EVENTS))
_BOT_CUM = list(itertools.accumulate(w for _, w in BOT_AGENTS))
_BOT_IPS = ("66.249.66.", "66.249.68.", "40.77.167.", "157.55.39.", "54.36.148.", "85.208.96.", "5.255.231.")


def _body(
    visitor: Visitor, event_type: str, url: str, path: str, referrer: str | None, **extra: Any
) -> bytes:
    item: dict[str, Any] = {"website_id": WEBSITE_ID, "event_type": event_type, "url": url, "path": path}
    if referrer:
        item["referrer"] = referrer
    if visitor.screen is not None:
        item["screen_width"], item["screen_height"] = visitor.screen
    item.update(extra)
    return msgspec.json.encode(item)


def session_hits(site: Site, rnd: random.Random, visitor: Visitor, start: datetime) -> list[Hit]:
    """One visit: 1-8 page views with their scrolls, clicks and custom events."""
    pages = 1 if rnd.random() < 0.45 else min(8, 2 + int(rnd.expovariate(0.45)))
    hits: list[Hit] = []
    at = start
    path = site.path(rnd)
    url, referrer = _landing(site, rnd, path)
    for i in range(pages):
        view = (at, url)

        def hit(t: datetime, event_type: str, props: dict | None = None, view=view, path=path, ref=referrer):
            extra = {"properties": props} if props else {}
            hits.append(Hit(t, _body(visitor, event_type, view[1], path, ref, **extra), visitor, view))

        hit(at, "page_view")
        dwell = min(1500.0, rnd.lognormvariate(math.log(40), 1.0))
        depth = rnd.random()
        for mark, needed in ((25, 0.4), (50, 0.65), (75, 0.82)):
            if depth > needed:
                hit(at + timedelta(seconds=dwell * mark / 100), f"scroll_{mark}")
        if rnd.random() < 0.11:
            name = CUSTOM_EVENTS[bisect.bisect(_CUSTOM_CUM, rnd.random() * _CUSTOM_CUM[-1])][0]
            if path == "/onboarding" and rnd.random() < 0.5:
                name = "signup_complete"
            props = {"name": name, "label": path.rsplit("/", 1)[-1] or "home"}
            hit(at + timedelta(seconds=dwell * rnd.random()), "custom", props)
        if rnd.random() < 0.04:
            target = {"href": site.referral(rnd) + "docs"}
            hit(at + timedelta(seconds=dwell * 0.9), "outbound_link", target)
        if i == pages - 1:
            if rnd.random() < 0.5:
                hit(at + timedelta(seconds=dwell), "close_tab")
            break
        at = at + timedelta(seconds=dwell)
        referrer = url
        path = site.next_path(rnd, path)
        url = f"https://{DOMAIN}{path}"
    return hits


def bot_hits(site: Site, rnd: random.Random, start: datetime) -> list[Hit]:
    """A crawler's or a headless browser's run: page views only, no referrer, seconds apart."""
    agent = BOT_AGENTS[bisect.bisect(_BOT_CUM, rnd.random() * _BOT_CUM[-1])][0]
    visitor = Visitor(
        ip=rnd.choice(_BOT_IPS) + str(rnd.randrange(1, 255)), agent=agent, kind="bot", screen=None
    )
    hits = []
    at = start
    for _ in range(rnd.randrange(3, 25)):
        path = site.path(rnd) if rnd.random() < 0.7 else rnd.choice(site.paths)
        url = f"https://{DOMAIN}{path}"
        hits.append(Hit(at, _body(visitor, "page_view", url, path, None), visitor, (at, url)))
        at += timedelta(seconds=rnd.uniform(0.5, 20))
    return hits


def day_hits(site: Site, day: date, count: int, end: datetime) -> list[Hit]:
    """Exactly ``count`` hits of ``day`` before ``end``, in time order."""
    rnd = random.Random(f"{site.seed}:{day.isoformat()}")
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    span = (end - midnight).total_seconds()
    hour_cum = _HOUR_CUM[: max(1, math.ceil(span / 3600))]
    hits: list[Hit] = []
    produced = 0
    while produced < count:
        hour = bisect.bisect(hour_cum, rnd.random() * hour_cum[-1])
        start = midnight + timedelta(seconds=hour * 3600 + rnd.random() * 3600)
        if rnd.random() < 0.02:  # ~4% of events: a bot's run is ~13.5 hits, a visit (+ return) ~6.7
            session = bot_hits(site, rnd, start)
        else:
            visitor = rnd.choice(site.returning) if rnd.random() < 0.3 else site.new_visitor(rnd)
            session = session_hits(site, rnd, visitor, start)
            if rnd.random() < 0.12:  # the same visitor comes back later that day
                again = session[-1].at + SESSION_GAP + timedelta(seconds=300 + rnd.random() * 19_800)
                session += session_hits(site, rnd, visitor, again)
        kept = [h for h in session if h.at < end]
        hits.extend(kept[: count - produced])
        produced += min(len(kept), count - produced)
    hits.sort(key=lambda h: h.at)
    return hits


# --- rows -----------------------------------------------------------------------------------------

_CRAWLER: dict[str, bool] = {}
_EXCLUDED: dict[str, bool] = {}


def hit_event(hit: Hit, source_id: str) -> Event:
    """The canonical event the gateway makes of the hit: TinyTrail's adapter, the gateway's hints."""
    agent = hit.visitor.agent
    crawler = _CRAWLER.get(agent)
    if crawler is None:
        crawler = _CRAWLER[agent] = is_crawler(agent)
    ip = hit.visitor.ip
    excluded = _EXCLUDED.get(ip)
    if excluded is None:
        excluded = _EXCLUDED[ip] = is_excluded(ip, EXCLUDED_IPS)
    ns = int(hit.at.timestamp() * 1e9)
    meta = RequestMeta(
        source_id=source_id,
        dialect=tinytrail.DIALECT,
        call="collect",
        received_at=hit.at,
        request_id=str(uuid_utils.uuid7(nanoseconds=ns)),
        ip=hit.visitor.ip,
        user_agent=agent,
        hints={"is_bot": crawler, "is_excluded": excluded},
    )
    (event,) = tinytrail.decode(meta, tinytrail.parse("collect", hit.body))
    event.id = str(uuid_utils.uuid7(nanoseconds=ns))
    return event


def day_events(site: Site, source_id: str, day: date, count: int, end: datetime) -> Iterator[Event]:
    """The day's events, enriched by the real chain (the day's own salt, the website's settings)."""
    env = Env(salts={day: day_salt(site.seed, day)}, settings={source_id: SETTINGS})
    enriched: dict[tuple[datetime, str, str], dict[str, Any]] = {}
    for hit in day_hits(site, day, count, end):
        event = hit_event(hit, source_id)
        key = (*hit.view, hit.visitor.ip)
        done = enriched.get(key)
        if done is None:
            enrich_event(event, env)
            enriched[key] = event.enrichment
        else:  # what the chain wrote for the same inputs (the page view's other hits)
            event.enrichment = dict(done)
        yield event


def copy_day(
    conn: psycopg.Connection, site: Site, source_id: str, day: date, count: int, end: datetime
) -> int:
    """COPY one day's rows in one transaction; a batch id per 100 events, as group commit makes them."""
    n = 0
    with conn.transaction(), conn.cursor() as cur, cur.copy(store.COPY_SQL) as copy:
        batch_id = ""
        for event in day_events(site, source_id, day, count, end):
            if n % 100 == 0:
                batch_id = str(uuid_utils.uuid7(nanoseconds=int(event.received_at.timestamp() * 1e9)))
            copy.write_row(store.event_row(event, batch_id))
            n += 1
    return n


@dataclass(frozen=True)
class Job:
    database_url: str
    seed: int
    source_id: str
    days: tuple[tuple[date, int, datetime], ...]


RETRIES = 30
_SITE: dict[int, Site] = {}
"""Sites by seed, built once in the parent: the forked processes inherit them."""


def _fill(job: Job) -> int:
    site = _SITE.get(job.seed) or _SITE.setdefault(job.seed, Site.build(job.seed))
    total = 0
    with psycopg.connect(job.database_url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for day, count, end in job.days:
            for attempt in range(RETRIES):
                try:
                    total += copy_day(conn, site, job.source_id, day, count, end)
                    break
                except psycopg.errors.OutOfMemory:
                    # the server's shared lock table is full: another database on the server holds
                    # thousands of locks for a while (a test, another bench); the day's transaction
                    # rolled back, so try it again
                    if attempt == RETRIES - 1:
                        raise
                    time.sleep(5)
    return total


def fill(
    database_url: str,
    source_id: str,
    n: int,
    now: datetime,
    *,
    seed: int = 12,
    processes: int = 2,
    progress: Callable[[str], None] = print,
) -> list[tuple[date, int, datetime]]:
    """Generate and COPY ``n`` events; days are dealt round-robin to ``processes`` processes."""
    plan = plan_days(n, now)
    _SITE.setdefault(seed, Site.build(seed))
    jobs = [
        Job(database_url, seed, source_id, tuple(plan[k :: processes * 4]))
        for k in range(processes * 4)
        if plan[k :: processes * 4]
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_partitions(conn, months_of(plan))
    started = time.monotonic()
    done = 0
    if processes <= 1:
        for job in jobs:
            done += _fill(job)
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:  # fork can hang (threads)
            for i, stored in enumerate(pool.imap_unordered(_fill, jobs), 1):
                done += stored
                rate = done / (time.monotonic() - started)
                progress(f"    {done:,} events ({i}/{len(jobs)} parts, {rate:,.0f} events/s)")
    if done != n:
        raise RuntimeError(f"generated {done} events, expected {n}")
    return plan


def months_of(plan: Sequence[tuple[date, int, datetime]]) -> set[tuple[int, int]]:
    return {(d.year, d.month) for d, _, _ in plan}


def create_partitions(conn: psycopg.Connection, months: set[tuple[int, int]]) -> None:
    """The month partitions the worker would create (``workers.store.ensure_partitions``' names and
    bounds), made up front so that no row lands in the default partition."""
    for year, month in sorted(months):
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        conn.execute(
            f"CREATE UNLOGGED TABLE IF NOT EXISTS events_y{year:04d}m{month:02d} PARTITION OF events"
            f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )


# --- the cached database --------------------------------------------------------------------------

META_TABLE = "bench_reports_meta"


@dataclass(frozen=True)
class BenchData:
    """A filled database: where it is and what it holds."""

    url: str
    name: str
    source_id: str
    website_id: str
    events: int
    generated_at: datetime
    generate_seconds: float
    reused: bool
    first_day: date
    last_day: date


def database_name(n: int) -> str:
    return f"bench_reports_{n}_v{GENERATOR_VERSION}"


def ensure_database(
    admin_url: str,
    n: int,
    *,
    processes: int = 2,
    seed: int = 12,
    regenerate: bool = False,
    progress: Callable[[str], None] = print,
) -> BenchData:
    """The database ``bench_reports_<n>_v<version>`` next to ``admin_url``: reused when a complete one
    exists (its meta row is written last), else (re)created, migrated and filled. Migrations newer
    than the cached database (an aggregate table, an index) are applied to it either way."""
    name = database_name(n)
    url = make_conninfo(admin_url, dbname=name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if exists and not regenerate:
        meta = _read_meta(url)
        if meta is not None:
            progress(f"  reusing {name} ({n:,} events generated {meta[3]:%Y-%m-%d %H:%M} UTC)")
            migrate(url)
            return BenchData(url, name, meta[0], meta[1], n, meta[3], meta[4], True, meta[5], meta[6])
        progress(f"  {name} exists but is incomplete: generating it again")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(url)
    created = new_source(
        WEBSITE_ID, {"domain": DOMAIN, "excluded_ips": EXCLUDED_IPS, "content_groups": CONTENT_GROUPS}
    )
    source, _ = add_source(url, "tinytrail", DOMAIN, created["key"], created["settings"])
    now = datetime.now(UTC).replace(microsecond=0)
    progress(f"  generating {n:,} events into {name} ({processes} processes) ...")
    started = time.monotonic()
    plan = fill(url, source.id, n, now, seed=seed, processes=processes, progress=progress)
    with psycopg.connect(url, autocommit=True) as conn:
        progress("  VACUUM ANALYZE events ...")
        conn.execute("VACUUM (ANALYZE) events")
    seconds = time.monotonic() - started
    first, last = plan[0][0], plan[-1][0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {META_TABLE} (source_id text, website_id text, events bigint,"
            " generated_at timestamptz, seconds float8, first_day date, last_day date, generator_version int)"
        )
        conn.execute(
            f"INSERT INTO {META_TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (source.id, WEBSITE_ID, n, now, seconds, first, last, GENERATOR_VERSION),
        )
    progress(
        f"  generated {n:,} events in {seconds:.0f} s ({n / seconds:,.0f} events/s, VACUUM ANALYZE included)"
    )
    return BenchData(url, name, source.id, WEBSITE_ID, n, now, seconds, False, first, last)


def _read_meta(url: str) -> tuple | None:
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (META_TABLE,)).fetchone()
        if found is None or found[0] is None:
            return None
        return conn.execute(
            "SELECT source_id, website_id, events, generated_at, seconds, first_day, last_day"
            f" FROM {META_TABLE} WHERE generator_version = %s",
            (GENERATOR_VERSION,),
        ).fetchone()
