"""The reports' periods, comparisons and common parameters (gateway/reports/params.py), the funnel's
Python matcher against its SQL twin's rule, and the raw-numbers cache (gateway/reports/data.py)."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from trackgate.gateway.errors import InvalidPayload
from trackgate.gateway.reports import data, params

TODAY = date(2026, 3, 19)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("today", date(2026, 3, 19), TODAY),
        ("yesterday", date(2026, 3, 18), date(2026, 3, 18)),
        ("7d", date(2026, 3, 13), TODAY),
        ("30d", date(2026, 2, 18), TODAY),
        ("90d", date(2025, 12, 20), TODAY),
        ("12m", date(2025, 3, 20), TODAY),
        ("ytd", date(2026, 1, 1), TODAY),
        ("all", date(2025, 7, 4), TODAY),
    ],
)
def test_each_period_covers_its_days(period, start, end):
    assert params.span(params.parse({"period": period}, TODAY), TODAY, date(2025, 7, 4)) == (start, end)


def test_dates_override_the_period_and_all_without_events_is_today():
    assert params.span(params.parse({"start_date": "2026-03-01"}, TODAY), TODAY, None) == (
        date(2026, 3, 1),
        TODAY,
    )
    assert params.span(params.parse({"end_date": "2026-03-10"}, TODAY), TODAY, None) == (
        date(2026, 3, 4),
        date(2026, 3, 10),
    )
    assert params.span(params.parse({"period": "all"}, TODAY), TODAY, None) == (TODAY, TODAY)


def test_comparisons():
    assert params.previous(date(2026, 3, 13), TODAY, "previous_period") == (
        date(2026, 3, 6),
        date(2026, 3, 12),
    )
    assert params.previous(date(2024, 2, 29), date(2024, 3, 1), "yoy") == (
        date(2023, 2, 28),
        date(2023, 3, 1),
    )


def test_defaults_and_pages():
    q = params.parse({}, TODAY)
    assert (q.period, q.page, q.per_page, q.csv, q.include_bots, q.scope) == ("7d", 1, 50, False, False, "")
    q = params.parse({"page": "3", "per_page": "500", "include_bots": "true", "content_group": "Blog"}, TODAY)
    assert (q.offset, q.per_page, q.include_bots, q.scope) == (1000, 500, True, "Blog")


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"period": "week"}, "period"),
        ({"start_date": "2026-02-30"}, "start_date"),
        ({"end_date": "20260301"}, "end_date"),
        ({"per_page": "0"}, "per_page"),
        ({"page": "-1"}, "page"),
        ({"compare": "mom"}, "compare"),
        ({"format": "xlsx"}, "format"),
        ({"include_bots": "1"}, "include_bots"),
        ({"start_date": "1999-12-31"}, "start_date"),
        ({"end_date": "2026-03-21"}, "end_date"),
        ({"start_date": "2026-03-20"}, "start_date"),
    ],
)
def test_a_bad_value_names_its_parameter(given, named):
    with pytest.raises(InvalidPayload) as caught:
        params.parse(given, TODAY)
    assert caught.value.path == named and named in caught.value.message


def test_every_period_and_comparison_of_the_first_and_last_days_stays_in_range():
    """The far ends a request can name, each period and comparison computed: no ValueError or
    OverflowError (the first day's year before is 1999; a website whose first event claims year 1 has
    "all" begin on 2000-01-01)."""
    first, last = date(2000, 1, 1), date(2026, 3, 20)
    assert params.parse({"start_date": "2000-01-01", "end_date": "2026-03-20"}, TODAY).end == last
    asked = [
        {"start_date": "2000-01-01", "end_date": "2000-01-01"},
        {"start_date": "2026-03-20", "end_date": "2026-03-20"},
        {"start_date": "2000-01-01", "end_date": "2026-03-20"},
        {"end_date": "2000-01-01"},
        {"start_date": "2000-01-01"},
        *({"period": period} for period in params.PERIODS),
    ]
    for given in asked:
        query = params.parse(given, TODAY)
        for first_day in (date(1, 1, 1), first, None):
            start, end = params.span(query, TODAY, first_day)
            assert start <= end, given
            for compare in params.COMPARES:
                before = params.previous(start, end, compare)
                assert before[0] <= before[1] < start or compare == "yoy", (given, compare)
    assert params.span(params.parse({"period": "all"}, TODAY), TODAY, date(1, 1, 1))[0] == first


def test_the_funnel_matcher_wants_the_steps_in_order():
    sequences = [(["/", "/pricing", "signup"], 2), (["/pricing", "/"], 5), (["/", "x", "/pricing"], 1)]
    assert data.reached(sequences, ["/", "/pricing", "signup"]) == [8, 3, 2]


def test_the_raw_cache_reuses_within_its_ttl_and_computes_once_per_key():
    now = [0.0]
    cache = data.RawCache(10, clock=lambda: now[0])
    calls: list[int] = []

    async def compute() -> int:
        calls.append(1)
        await asyncio.sleep(0.01)
        return len(calls)

    async def run() -> list[int]:
        first = await asyncio.gather(*(cache.get(("k",), compute) for _ in range(5)))
        now[0] = 9.9
        again = await cache.get(("k",), compute)
        now[0] = 10.1
        return [*first, again, await cache.get(("k",), compute)]

    assert asyncio.run(run()) == [1, 1, 1, 1, 1, 1, 2]
    off = data.RawCache(0)
    assert asyncio.run(off.get(("k",), compute)) == 3
