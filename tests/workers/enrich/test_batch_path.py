"""The chain over a batch (``enrich_events``: the memoized head, then ``visitor`` and ``screen`` inline
for a source without settings) against the processors run one by one on each event: the same
enrichment, key for key and in order, the same ``context.ip`` and ``raw``, across user agents (bots,
headless, SDK-named, overlong), IPs (public, private, IPv6, mapped, unparsable), referrers, campaign
fields, screen widths, sources with and without settings (excluded IPs, content groups, IP policy),
times at a day's edges with and without yesterday's late ids, and events an adapter already enriched."""

from __future__ import annotations

import copy
import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trackgate.workers.enrich as chain
from tests.workers.enrich.helpers import CHROME, event
from trackgate.schemas.event import Event, Screen
from trackgate.workers.enrich import Env, enrich_events, memo, screen, visitor

TODAY = date(2026, 11, 23)
SALTS = {TODAY - timedelta(days=1): b"y" * 32, TODAY: b"t" * 32}
SOURCES: dict[str, dict[str, Any]] = {
    "excluding": {"excluded_ips": ["81.2.69.0/24", "2a02:c7f::/32"]},
    "grouping": {"content_groups": [{"name": "Shop", "pattern": "/shop*"}, {"name": "All", "pattern": "*"}]},
    "truncating": {"ip_policy": "truncate"},
    "dropping": {"ip_policy": "drop"},
    "odd": {"something": "else"},
}
AGENTS = [
    None,
    "",
    CHROME,
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0",
    "python-requests/2.31",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 " + "y" * 1100,  # overlong: not memoized
]
IPS = [None, "", "81.2.69.142", " 81.2.69.7 ", "::ffff:81.2.69.142", "2a02:c7f:7e26::1", "10.0.0.1", "bad ip"]
REFERRERS = [None, "https://www.google.co.uk/search?q=x", "https://t.co/x", "https://shop.example/b", "nope"]
URLS = [
    None,
    "https://shop.example/shop/a",
    "https://shop.example/?utm_source=News&utm_medium=email&gclid=1",
    "https://shop.example/?msclkid=7",
]
CAMPAIGNS = [None, {"source": "newsletter", "medium": "cpc"}, {"name": "spring", "term": " "}]
WIDTHS = [None, 0, -5, 319, 375, 375.5, 376, 768, 1024, 1440, 1441, 3840, math.nan, math.inf]
TIMES = [
    datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
    datetime(2026, 11, 23, 0, 10, tzinfo=UTC),  # in the grace window: late ids may apply
    datetime(2026, 11, 22, 23, 45, tzinfo=UTC),  # yesterday's last half hour
    datetime(2026, 11, 20, 8, 0, tzinfo=UTC),  # older than yesterday: yesterday's salt
    datetime(2026, 11, 24, 1, 0, tzinfo=timezone(timedelta(hours=2))),  # not UTC: 23:00 the day before
    datetime(2026, 11, 23, 9, 0),  # naive
]


def one_by_one(e: Event, env: Env) -> None:
    """The chain as it ran before the memo and the batch path: every processor, in order."""
    if not isinstance(e.enrichment, dict):
        e.enrichment = {}
    chain._run(e, env, chain.CHAIN)


def late_ids() -> set[str]:
    """Yesterday's id of the visitor at 81.2.69.142 with Chrome on source ``src``."""
    return {visitor.visitor_hash(SALTS[TODAY - timedelta(days=1)], "81.2.69.142", CHROME, "src")}


def copies(events: list[Event]) -> list[Event]:
    return copy.deepcopy(events)


def with_width(e: Event, width: object) -> Event:
    """An int width in ``context.screen``; any other value where a dialect's property carries it."""
    if type(width) is int:
        e.context.screen = Screen(width=width)
    elif width is not None:
        e.properties = {"screen_width": width}
    return e


def assert_batch_same(events: list[Event], env: Env) -> None:
    plain = copies(events)
    for e in plain:
        one_by_one(e, env)
    for _ in range(2):  # cold caches, then warm
        batch = copies(events)
        enrich_events(batch, env)
        for a, b in zip(plain, batch, strict=True):
            assert list(b.enrichment.items()) == list(a.enrichment.items())
            assert b.context.ip == a.context.ip
            assert b.raw == a.raw
        ids = [id(e.enrichment) for e in batch]
        assert len(set(ids)) == len(ids)  # no event's dict is another's


def varied(n: int = 0) -> list[Event]:
    out = []
    for i, ua in enumerate(AGENTS):
        for j, ip in enumerate(IPS):
            k = i * len(IPS) + j + n
            e = event(
                ua=ua,
                ip=ip,
                url=URLS[k % len(URLS)],
                referrer=REFERRERS[k % len(REFERRERS)],
                campaign=CAMPAIGNS[k % len(CAMPAIGNS)],
                library="analytics-node" if k % 4 == 0 else None,
                received_at=TIMES[k % len(TIMES)],
                source_id=["src", "other", *SOURCES][k % (2 + len(SOURCES))],
                raw=f'{{"ip":"{ip}"}}' if ip else "{}",
            )
            out.append(with_width(e, WIDTHS[k % len(WIDTHS)]))
    return out


@pytest.mark.parametrize("late", [frozenset(), "yesterday's"])
@pytest.mark.parametrize("salts", [SALTS, {}])
def test_a_varied_batch_gets_what_the_processors_give(late, salts):
    memo.clear()
    env = Env(salts=salts, late_ids=late_ids() if late else late, settings=SOURCES)
    events = varied() + varied(3)
    events += [event(ip="81.2.69.142", ua=CHROME, received_at=at) for at in TIMES]  # the late visitor
    events += [event(ua=CHROME, enrichment={"is_bot": True, "country": "FR"}), event(enrichment={"x": 1})]
    assert_batch_same(events, env)


def test_a_source_without_settings_takes_the_inline_tail(monkeypatch):
    """The batch path does not run the tail's processors one by one for the usual event (and the
    comparison above therefore covers the inline ``visitor`` and ``screen``)."""
    events = [event(ip="81.2.69.142", ua=CHROME, url="https://shop.example/", width=800) for _ in range(3)]
    ran = []
    real = chain._run

    def counting(e, env, steps):
        ran.append([name for name, _ in steps])
        real(e, env, steps)

    monkeypatch.setattr(chain, "_run", counting)
    enrich_events(events, Env(salts=SALTS))
    assert ran == []
    assert all(len(e.enrichment["visitor_id"]) == 64 for e in events)
    assert {e.enrichment["screen_bucket"] for e in events} == {"769-1024"}


def test_an_inline_step_that_raises_is_noted_as_the_processor_would(caplog):
    def odd() -> Event:
        e = event(ip="81.2.69.142", ua=CHROME)
        e.properties = ["not", "an", "object"]  # type: ignore[assignment]  # by hand: a job's decode refuses it
        return e

    plain, batch = odd(), odd()
    one_by_one(plain, Env(salts=SALTS))
    enrich_events([batch], Env(salts=SALTS))
    assert list(batch.enrichment.items()) == list(plain.enrichment.items())
    assert batch.enrichment["enrich_errors"] == ["screen"]
    assert "visitor_id" in batch.enrichment and "browser" in batch.enrichment
    assert "enrich_failed processor=screen" in caplog.text


@pytest.mark.parametrize("width", [*WIDTHS, True, False, "800", 10**30, -math.inf, 1440.0001])
def test_screen_bucket_is_the_table(width):
    expected = "unknown"
    if type(width) in (int, float) and width == width and width > 0:
        expected = next((name for upper, name in screen.BUCKETS if width <= upper), "1441+")
    assert screen.bucket(width) == expected


_text = st.one_of(st.none(), st.sampled_from(["", "google", "email", "cpc"]), st.text(max_size=6))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(AGENTS), st.text(max_size=20)),
            st.one_of(st.sampled_from(IPS), st.ip_addresses().map(str)),
            st.one_of(st.sampled_from(URLS), st.text(max_size=12)),
            st.one_of(st.sampled_from(REFERRERS), st.text(max_size=12)),
            st.one_of(st.none(), st.fixed_dictionaries({}, optional={"source": _text, "medium": _text})),
            st.one_of(st.sampled_from(WIDTHS), st.integers(-10, 5000), st.floats()),
            st.sampled_from(TIMES),
            st.sampled_from(["src", "other", *SOURCES]),
        ),
        min_size=1,
        max_size=8,
    ),
    late=st.booleans(),
)
def test_any_batch_gets_what_the_processors_give(rows, late):
    events = [
        with_width(
            event(
                ua=ua,
                ip=ip,
                url=url,
                referrer=referrer,
                campaign=campaign,
                received_at=at,
                source_id=source_id,
                raw=f'{{"ip":"{ip}"}}' if ip else "{}",
            ),
            width,
        )
        for ua, ip, url, referrer, campaign, width, at, source_id in rows
    ]
    late_set: set[str] = late_ids() if late else set()
    assert_batch_same(events, Env(salts=SALTS, late_ids=late_set, settings=SOURCES))


def test_at_midnight_is_in_grace_and_in_late_in_one_pass():
    times = [
        datetime(2026, 11, 23, hour, minute, second, tzinfo=tz)
        for hour in (0, 1, 12, 22, 23)
        for minute in (0, 29, 30, 59)
        for second in (0, 59)
        for tz in (UTC, timezone(timedelta(hours=-5)), timezone(timedelta(minutes=30)), None)
    ]
    events = [event(received_at=at) for at in times]
    first, last = visitor.at_midnight(events)
    assert first == [e for e in events if visitor.in_grace(e.received_at)]
    assert last == [e for e in events if visitor.in_late(e.received_at)]
    assert first and last
