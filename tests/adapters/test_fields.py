"""The shared field coercions (``adapters/fields.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from trackgate.adapters.base import InvalidPayload
from trackgate.adapters.fields import iso_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0001-01-01T01:00:00+01:00", datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T22:00:00-01:00", datetime(9999, 12, 31, 22, tzinfo=timezone(timedelta(hours=-1)))),
        ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("0002-01-01T00:00:00+23:59", datetime(2, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=59)))),
        (
            "9998-12-31T23:00:00-23:59",
            datetime(9998, 12, 31, 23, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
        ),
    ],
)
def test_times_in_utc_years_1_to_9999_are_read(text, expected):
    assert iso_time(text, "timestamp") == expected


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:59:59+01:00", "9999-12-31T23:00:00-01:00"]
)
def test_times_outside_utc_years_1_to_9999_are_refused(text):
    # they parse, but PostgreSQL would store a year 0 or 10000 that Python cannot read back
    with pytest.raises(InvalidPayload) as info:
        iso_time(text, "timestamp")
    assert info.value.code == "invalid_timestamp"
