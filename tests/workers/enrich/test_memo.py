"""The memoized head of the chain (``workers/enrich/memo.py``) against the processors run one by one:
the same enrichment, key for key and in the same order, for varied events, cold and warm."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trackgate.workers.enrich as chain
from bench import enrich as bench_enrich
from bench import payloads
from tests.workers.enrich.helpers import CHROME, event
from trackgate.adapters.traffic import CLASSIFIED_UA_CHARS, OVERLONG_UA_CHARS
from trackgate.schemas.event import Campaign, Event
from trackgate.workers.enrich import Env, enrich_event, memo
from trackgate.workers.enrich.geo import GeoDatabase

SALTS = {date(2026, 11, 23): b"s" * 32, date(2026, 11, 22): b"y" * 32}
DATABASE = Path(__file__).parent / "data" / "GeoIP2-City-Test.mmdb"


def one_by_one(e: Event, env: Env) -> None:
    """The chain as it ran before the memo: every processor, in order."""
    if not isinstance(e.enrichment, dict):
        e.enrichment = {}
    chain._run(e, env, chain.CHAIN)


def assert_same(events: list[Event], env: Env) -> None:
    data = msgspec.json.encode(events)
    plain = msgspec.json.decode(data, type=list[Event])
    memoized = msgspec.json.decode(data, type=list[Event])
    for e in plain:
        one_by_one(e, env)
    for _ in range(2):  # cold, then warm
        memoized = msgspec.json.decode(data, type=list[Event])
        for e in memoized:
            enrich_event(e, env)
        for a, b in zip(plain, memoized, strict=True):
            assert list(b.enrichment.items()) == list(a.enrichment.items())
            assert b.context.ip == a.context.ip and b.raw == a.raw


AGENTS = [
    None,
    "",
    CHROME,
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",  # a bot, unless the event names its SDK
    "python-requests/2.31",
    "okhttp/4.9",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 " + "x" * (CLASSIFIED_UA_CHARS + 10),
    "Mozilla/5.0 " + "y" * OVERLONG_UA_CHARS,
]
PAGES: list[dict[str, str]] = [
    {},
    {"url": "https://shop.example/?utm_source=News&utm_medium=email&gclid=1"},
    {"url": "https://shop.example/a", "referrer": "https://www.google.co.uk/search?q=x"},
    {"url": "https://shop.example/a", "referrer": "https://shop.example/b"},
    {"url": "https://shop.example/?msclkid=7", "referrer": "https://t.co/x"},
    {"search": "?utm_campaign=spring&fbclid=2", "referrer": "not a url"},
    {"path": "/only-a-path"},
]
CAMPAIGNS = [None, {"source": "newsletter", "medium": "cpc"}, {"name": "spring_shop", "term": " "}]
IPS = [None, "", "81.2.69.142", "2a02:c7f:7e26::1", "10.0.0.1", "not an ip", "8.8.4.4"]


@pytest.mark.parametrize("with_database", [False, True])
def test_the_memo_adds_what_the_processors_add(with_database):
    database = GeoDatabase(str(DATABASE)) if with_database else None
    memo.clear()
    events = [
        event(
            ip=ip,
            ua=ua,
            campaign=campaign,
            library=library,
            width=390,
            url=page.get("url"),
            referrer=page.get("referrer"),
            search=page.get("search"),
            path=page.get("path"),
        )
        for ua, page, campaign, ip, library in itertools.product(
            AGENTS, PAGES, CAMPAIGNS, IPS[:4], [None, "analytics-node"]
        )
    ]
    events += [event(ip=ip, ua=CHROME) for ip in IPS]
    try:
        assert_same(events, Env(salts=SALTS, geo=database))
    finally:
        if database is not None:
            memo.place.cache_clear()
            database.close()


def test_the_bench_events_get_the_same_enrichment():
    events = bench_enrich.make_realistic(payloads.canonical_events(600, "src"))
    assert_same(events, Env(salts=SALTS))


@pytest.mark.parametrize(
    "source",
    [
        {"excluded_ips": ["81.2.69.0/24"]},
        {"content_groups": [{"name": "Shop", "pattern": "/*"}]},
        {"ip_policy": "truncate"},
        {"ip_policy": "drop"},
        {"something": "else"},
    ],
)
def test_source_settings_still_apply(source):
    events = [event(ip="81.2.69.142", ua=CHROME, url="https://shop.example/a", raw='{"ip":"81.2.69.142"}')]
    assert_same(events, Env(salts=SALTS, settings={"src": source}))


def test_what_an_adapter_set_takes_the_chain_one_by_one():
    events = [
        event(ua=CHROME, url="https://x.example/?utm_source=a", enrichment={"is_bot": True, "country": "FR"})
    ]
    assert_same(events, Env(salts=SALTS))


def test_a_value_that_cannot_be_a_key_takes_the_chain_one_by_one():
    e = event(ua=CHROME, url="https://x.example/")
    e.context.campaign = Campaign(source=["a list"])  # type: ignore[arg-type]  # built by hand, not decoded
    assert memo.head(e, None) is None
    enrich_event(e, Env(salts=SALTS))
    plain = event(ua=CHROME, url="https://x.example/")
    plain.context.campaign = Campaign(source=["a list"])  # type: ignore[arg-type]
    one_by_one(plain, Env(salts=SALTS))
    assert e.enrichment == plain.enrichment


_text = st.one_of(
    st.none(), st.sampled_from(["", "google", "email", "cpc", "spring shop"]), st.text(max_size=6)
)


@settings(max_examples=300, deadline=None)
@given(
    ua=st.one_of(st.sampled_from(AGENTS), st.text(max_size=20)),
    url=st.one_of(st.none(), st.sampled_from([p.get("url") for p in PAGES]), st.text(max_size=12)),
    referrer=st.one_of(st.none(), st.sampled_from([p.get("referrer") for p in PAGES]), st.text(max_size=12)),
    search=st.one_of(st.none(), st.just("?utm_source=x"), st.text(max_size=8)),
    campaign=st.one_of(
        st.none(), st.fixed_dictionaries({}, optional={"source": _text, "medium": _text, "name": _text})
    ),
    ip=st.sampled_from(IPS),
)
def test_any_event_gets_the_same_enrichment(ua, url, referrer, search, campaign, ip):
    e = event(ip=ip, ua=ua, url=url, referrer=referrer, search=search, campaign=campaign)
    assert_same([e], Env(salts=SALTS))


def test_an_event_without_a_context_takes_the_chain_one_by_one():
    # not from a job (the job's decode gives every event a context): built by hand, as tests do
    e = event(ua=CHROME)
    e.context = None  # type: ignore[assignment]
    plain = event(ua=CHROME)
    plain.context = None  # type: ignore[assignment]
    enrich_event(e, Env(salts=SALTS))
    one_by_one(plain, Env(salts=SALTS))
    assert e.enrichment == plain.enrichment
    assert "bots" in e.enrichment["enrich_errors"]


def test_the_front_dicts_emptied_when_full_give_the_same_answers(monkeypatch):
    """``head`` looks answers up in bounded dicts first: emptied whole when full, each answer is
    worked out again (from the LRU) and stays the processors' own."""
    for bound in ("AGENTS_MAX", "TRAFFIC_MAX", "PLACES_MAX"):
        monkeypatch.setattr(memo, bound, 2)
    memo.clear()
    events = [
        event(ip=ip, ua=ua, url=page.get("url"), referrer=page.get("referrer"), search=page.get("search"))
        for ua, page, ip in itertools.product(AGENTS[:6], PAGES[:5], IPS[2:])
    ]
    assert_same(events, Env(salts=SALTS))
    assert all(len(found) <= 2 for found in (*memo._by_agent, memo._by_traffic, memo._by_ip))


def test_a_place_is_looked_up_again_for_another_database():
    database = GeoDatabase(str(DATABASE))
    memo.clear()
    try:
        without = event(ip="81.2.69.142", ua=CHROME)
        enrich_event(without, Env(salts=SALTS))
        assert "city" not in without.enrichment
        events = [event(ip="81.2.69.142", ua=CHROME)]
        assert_same(events, Env(salts=SALTS, geo=database))  # the database's region and city
        enrich_event(with_db := event(ip="81.2.69.142", ua=CHROME), Env(salts=SALTS, geo=database))
        assert "city" in with_db.enrichment
        enrich_event(again := event(ip="81.2.69.142", ua=CHROME), Env(salts=SALTS))
        assert again.enrichment == without.enrichment
    finally:
        memo.clear()
        database.close()
