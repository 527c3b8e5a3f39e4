"""The days a report or an aggregation may name: from :data:`FIRST_DAY` (2000-01-01) to the day after
"today" (UTC; a client ahead of UTC may already be in it). A date outside is refused with a clear error
(the API's 400 ``INVALID_PAYLOAD``, the CLI's one line) before anything is computed: every period and
comparison of a day in range (a year before, the same number of days before, the month after) stays
within ``datetime.date``'s years 1..9999, and a period is at most ~27 years of days."""

from __future__ import annotations

from datetime import date, timedelta

FIRST_DAY = date(2000, 1, 1)


def last_day(today: date) -> date:
    """The latest day a report or an aggregation may name."""
    return today + timedelta(days=1)


class BadDay(ValueError):
    """A day that cannot be named: ``why`` says what range it is out of, None when it is no
    ``YYYY-MM-DD`` date at all."""

    def __init__(self, why: str | None = None) -> None:
        super().__init__(why or "not a date, YYYY-MM-DD")
        self.why = why


def parse_day(value: object, today: date) -> date:
    """``value`` (exactly ``YYYY-MM-DD``) as a day in range, or :class:`BadDay`: the one reading of a
    day for the API's parameters and body and the CLI's options."""
    if not isinstance(value, str) or len(value) != 10:
        raise BadDay()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadDay() from None
    why = out_of_range(day, today)
    if why:
        raise BadDay(why)
    return day


def out_of_range(day: date, today: date) -> str | None:
    """Why ``day`` cannot be named (``"must be from 2000-01-01 to <today + 1>"``), or None."""
    if FIRST_DAY <= day <= last_day(today):
        return None
    return f"must be from {FIRST_DAY.isoformat()} to {last_day(today).isoformat()}"
