"""``schemas/enrichment_columns.py``: an enrichment split into the ``events`` columns and what
``enrichment`` keeps, and joined back into the very dict it was."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackgate.schemas import enrichment_columns as ec

CHAIN = {
    "browser": "Chrome",
    "browser_version": "124.0",
    "os": "Windows",
    "device_type": "desktop",
    "traffic_source": "google",
    "traffic_medium": "organic",
    "channel": "Organic Search",
    "country": "GB",
    "visitor_id": "ab" * 32,
    "screen_bucket": "1280+",
    "is_bot": False,
}


def test_the_chains_enrichment_goes_whole_into_columns():
    rest, values = ec.split(CHAIN)
    assert rest is None
    assert len(values) == len(ec.COLUMNS)
    by_column = dict(zip(ec.COLUMNS, values, strict=True))
    assert by_column["browser"] == "Chrome" and by_column["is_bot"] is False
    assert by_column["utm_source"] is None and by_column["is_excluded"] is None
    assert ec.joined(rest, values) == CHAIN


def test_nothing_splits_into_nothing():
    assert ec.split({}) == (None, (None,) * len(ec.COLUMNS))
    assert ec.joined(None, (None,) * len(ec.COLUMNS)) == {}
    assert ec.joined({}, (None,) * len(ec.COLUMNS)) == {}


@pytest.mark.parametrize(
    ("extra", "kept"),
    [
        ({"session_id": "s-1"}, {"session_id": "s-1"}),  # a key without a column (OpenPanel's)
        ({"enrich_errors": ["geo"]}, {"enrich_errors": ["geo"]}),
        ({"os": 5}, {"os": 5}),  # a text column's key holding a number
        ({"is_bot": "true"}, {"is_bot": "true"}),  # a flag that is not a boolean
        ({"is_excluded": 1}, {"is_excluded": 1}),  # 1 is not True here: bool only
        ({"country": None}, {"country": None}),  # a null is kept as the JSON said
        ({"city": {"en": "Paris"}}, {"city": {"en": "Paris"}}),
    ],
)
def test_what_has_no_column_of_its_type_stays_in_enrichment(extra: dict[str, Any], kept: dict[str, Any]):
    enrichment = {**CHAIN, **extra}
    rest, values = ec.split(enrichment)
    assert rest == kept
    by_column = dict(zip(ec.COLUMNS, values, strict=True))
    for key in kept:
        assert by_column.get(key) is None  # not in both places
    assert by_column["browser"] == "Chrome"  # the rest of the event still goes into columns
    assert ec.joined(rest, values) == enrichment


_KEYS = st.sampled_from([*ec.COLUMNS, "session_id", "enrich_errors", "ip_policy", "unknown_type"])
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.lists(st.text(max_size=3), max_size=2)
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # st.text's first draw is slow
@given(st.dictionaries(_KEYS, _VALUES, max_size=12))
def test_any_enrichment_reads_back_as_it_was(enrichment: dict[str, Any]):
    rest, values = ec.split(enrichment)
    for column, value in zip(ec.COLUMNS, values, strict=True):
        expected = bool if column in ec.FLAGS else str
        assert value is None or isinstance(value, expected)
    assert ec.joined(rest, values) == enrichment


class Label(str):
    """A str subclass (a StrEnum member is one)."""


def test_a_str_subclass_goes_to_its_column_whatever_else_the_enrichment_holds():
    for enrichment in ({"browser": Label("Chrome")}, {"browser": Label("Chrome"), "session_id": "s-1"}):
        rest, values = ec.split(enrichment)
        assert dict(zip(ec.COLUMNS, values, strict=True))["browser"] == "Chrome"
        assert ec.joined(rest, values) == enrichment
