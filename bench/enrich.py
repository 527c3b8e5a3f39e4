"""Phase (e): what the enrichment chain adds to a worker's per-event cost.

The same canonical events as (d), made realistic for enrichment (a pool of real browser, mobile and
bot user agents, public IPs, search/social/other referrers, a fifth of the URLs UTM-tagged, screens),
are stored twice into PostgreSQL in job-sized batches, in the same run and the same process:

- ``store``: ``workers.store.store_batch`` alone (dedupe claim + COPY, what a worker does per job),
- ``store+chain``: ``workers.enrich.enrich_batch`` then ``store_batch``: the chain apart, as the goal
  defines it (the worker itself now enriches each new event inside the COPY, ``workers/pipeline.py``,
  where the chain's Python overlaps PostgreSQL's parsing; bench (d) measures that),

and the ratio (store+chain)/(store) of the seconds per event is printed. Goal: at most 1.3 (the chain
adds at most half). Both run under the worker process's GC settings. Caches are warm for the measured
run (the steady state of a worker: a site's user agents repeat); a run with every cache cleared first
is reported beside it. The store-only and store+chain runs alternate ``rounds`` times and each side's
median is used.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from dataclasses import dataclass

import msgspec
import psycopg

from bench import persist
from trackgate.schemas.event import Event, Page, Screen
from trackgate.schemas.jobs import PersistBatch
from trackgate.schemas.settings import ServerSettings, tune_gc
from trackgate.workers import enrich, store
from trackgate.workers.enrich import bots, campaign, client_ip, geo, referrer, user_agent
from trackgate.workers.enrich import runner as enrich_runner

GOAL = 1.3
BATCH = 1000

_BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.{v} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S9{v}B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 16_{v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36 Edg/124.0.{v}.51",
    "Mozilla/5.0 (compatible; Googlebot/2.{v}; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/{v}.0.0.0 "
    "Safari/537.36",
]
_REFERRERS = [
    None,
    None,
    "https://www.google.com/",
    "https://www.google.co.uk/",
    "https://www.bing.com/search?q=x",
    "https://t.co/abc",
    "https://l.facebook.com/",
    "https://news.ycombinator.com/",
    "https://blog.example.org/post",
    "https://www.youtube.com/",
]
_PUBLIC = ["81.2.69.", "8.8.4.", "89.160.20.", "175.16.199.", "2.125.160.", "217.65.48."]


def user_agents(n: int) -> list[str]:
    """``n`` distinct user agents from real templates (versions varied)."""
    return [_BROWSERS[i % len(_BROWSERS)].format(v=i // len(_BROWSERS) + 1) for i in range(n)]


def make_realistic(events: list[Event], distinct_agents: int = 500, seed: int = 7) -> list[Event]:
    """Copies of ``events`` with what enrichment reads filled in realistically."""
    rng = random.Random(seed)
    agents = user_agents(distinct_agents)
    raw = msgspec.json.encode(events)
    out = msgspec.json.decode(raw, type=list[Event])
    for event in out:
        ctx = event.context
        ctx.ip = rng.choice(_PUBLIC) + str(rng.randrange(1, 255))
        ctx.user_agent = rng.choice(agents)
        page = ctx.page or Page(url="https://shop.example.com/")
        if rng.random() < 0.2:
            page.url = (page.url or "https://shop.example.com/") + "?utm_source=newsletter&utm_medium=email"
        page.referrer = rng.choice(_REFERRERS)
        ctx.page = page
        ctx.screen = Screen(width=rng.choice([375, 414, 768, 1280, 1440, 1920]))
    return out


def clear_caches() -> None:
    memo = getattr(enrich, "memo", None)  # the chain's memo; absent in commits before it
    if memo is not None:
        memo.clear()
    for fn in (
        user_agent.parse_user_agent,
        user_agent.ua_fields,
        referrer.referrer_fields,
        bots.is_bot_ua,
        bots.is_headless,
        bots.verdict,
        campaign.query_fields,
        campaign.url_fields,
        campaign._cached_fields,
        geo.database_fields,
        referrer.source_category,
        client_ip.parse_ip,
        geo.country_code,
        client_ip.normalized,
        client_ip.public_ip,
        referrer.host_of,
        referrer.default_channel,
    ):
        fn.cache_clear()


def copies(events: list[Event]) -> list[Event]:
    return msgspec.json.decode(msgspec.json.encode(events), type=list[Event])


@dataclass
class ChainTimes:
    store_s: float
    both_s: float
    chain_s: float


def timed_run(settings: ServerSettings, events: list[Event], *, with_chain: bool) -> tuple[float, float]:
    """Store ``events`` in BATCH-sized batches; returns (total seconds, of which in the chain)."""
    persist.reset_tables(settings.database_url)
    total = chain = 0.0
    with psycopg.connect(settings.database_url) as conn:
        for i in range(0, len(events), BATCH):
            batch = PersistBatch(batch_id=f"bench-e-{i}", events=events[i : i + BATCH])
            started = time.perf_counter()
            if with_chain:
                enrich.enrich_batch(conn, batch.events, settings)
                chain += time.perf_counter() - started
            store.store_batch(conn, batch)
            conn.commit()
            total += time.perf_counter() - started
    n = persist.stored_count(settings.database_url)
    if n != len(events):
        raise RuntimeError(f"phase (e) stored {n} of {len(events)} events")
    return total, chain


def run_phase(settings: ServerSettings, events: list[Event], rounds: int = 3) -> dict:
    """Both sides under the worker process's GC settings (``schemas.settings.tune_gc``), restored after."""
    thresholds = gc.get_threshold()
    tune_gc()
    try:
        return _run_phase(settings, events, rounds)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _run_phase(settings: ServerSettings, events: list[Event], rounds: int) -> dict:
    realistic = make_realistic(events)
    n = len(realistic)
    # cold: every cache cleared, a fresh Enricher (salts, source settings read again)
    clear_caches()
    enrich_runner._current = None
    cold_total, cold_chain = timed_run(settings, copies(realistic), with_chain=True)
    store_runs: list[float] = []
    both_runs: list[float] = []
    chain_runs: list[float] = []
    for _ in range(rounds):
        seconds, _ = timed_run(settings, copies(realistic), with_chain=False)
        store_runs.append(seconds)
        seconds, chain = timed_run(settings, copies(realistic), with_chain=True)
        both_runs.append(seconds)
        chain_runs.append(chain)
    persist.reset_tables(settings.database_url)
    store_s = statistics.median(store_runs)
    both_s = statistics.median(both_runs)
    chain_s = statistics.median(chain_runs)
    return {
        "events": n,
        "batch": BATCH,
        "rounds": rounds,
        "distinct_user_agents": 500,
        "store_us_per_event": 1e6 * store_s / n,
        "store_chain_us_per_event": 1e6 * both_s / n,
        "chain_us_per_event": 1e6 * chain_s / n,
        "cold_chain_us_per_event": 1e6 * cold_chain / n,
        "cold_ratio": cold_total / store_s,
        "ratio": both_s / store_s,
        "goal": GOAL,
        "pass": both_s / store_s <= GOAL,
    }
