"""The reports' query parameters, read once into a frozen :class:`Query`; a bad value is a 400 that
names its parameter (``InvalidPayload``).

Periods (UTC days, both ends included; "today" is the gateway clock's UTC date):

========== ===============================================================
today      today
yesterday  yesterday
7d         the last 7 days, today included (today - 6 .. today)
30d        the last 30 days, today included
90d        the last 90 days, today included
12m        the last 365 days, today included
ytd        1 January of this year .. today
all        the day of the website's first event .. today
========== ===============================================================

``start_date``/``end_date`` (``YYYY-MM-DD``) override the period; given alone, ``start_date`` runs to
today and ``end_date`` ends a 7-day period. Each must lie from 2000-01-01 to the day after today
(``schemas/report_range.py``), and the start must not be after the end (today when no ``end_date``);
``all`` begins on 2000-01-01 at the earliest. ``compare=previous_period`` is the same number of days just
before; ``compare=yoy`` the same dates a year earlier (29 February: the 28th).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import msgspec

from trackgate.gateway.errors import InvalidPayload
from trackgate.schemas.report_range import FIRST_DAY, BadDay, parse_day

PERIODS = ("yesterday", "today", "7d", "30d", "90d", "12m", "ytd", "all")
DAYS = {"7d": 7, "30d": 30, "90d": 90, "12m": 365}
COMPARES = ("previous_period", "yoy")
MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 50


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """One report request's common parameters, checked."""

    period: str = "7d"
    start: date | None = None
    """Set by ``start_date`` (else by the period, :func:`span`)."""
    end: date | None = None
    compare: str | None = None
    include_bots: bool = False
    content_group: str | None = None
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    csv: bool = False

    @property
    def scope(self) -> str:
        """The aggregate rows' scope: '' (every event) or the content group's."""
        return self.content_group or ""

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def _date(params: Mapping[str, str], name: str, today: date) -> date | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_day(value, today)
    except BadDay as bad:
        raise InvalidPayload(f"{name} {bad.why or 'must be a date, YYYY-MM-DD'}", path=name) from None


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidPayload(f"{name} must be a whole number", path=name) from None
    if n < low or (high is not None and n > high):
        bound = f"{low} to {high}" if high is not None else f"at least {low}"
        raise InvalidPayload(f"{name} must be {bound}", path=name)
    return n


def _choice(
    params: Mapping[str, str], name: str, choices: tuple[str, ...], default: str | None
) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        raise InvalidPayload(f"{name} must be one of {', '.join(choices)}", path=name)
    return value


def parse(params: Mapping[str, str], today: date) -> Query:
    """The common parameters of every report (TinyTrail's table), checked; ``today``: the gateway
    clock's UTC date."""
    bots = params.get("include_bots", "false").lower()
    if bots not in ("true", "false", ""):
        raise InvalidPayload("include_bots must be true or false", path="include_bots")
    fmt = params.get("format", "json") or "json"
    if fmt not in ("json", "csv"):
        raise InvalidPayload("format must be json or csv", path="format")
    start, end = _date(params, "start_date", today), _date(params, "end_date", today)
    if start and end and start > end:
        raise InvalidPayload("start_date must not be after end_date", path="start_date")
    if start and not end and start > today:
        raise InvalidPayload(
            f"start_date must not be after today ({today.isoformat()}) without an end_date",
            path="start_date",
        )
    return Query(
        period=_choice(params, "period", PERIODS, "7d") or "7d",
        start=start,
        end=end,
        compare=_choice(params, "compare", COMPARES, None),
        include_bots=bots == "true",
        content_group=params.get("content_group") or None,
        page=_int(params, "page", 1, 1, None),
        per_page=_int(params, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE),
        csv=fmt == "csv",
    )


def span(query: Query, today: date, first_day: date | None) -> tuple[date, date]:
    """The period's first and last day. ``first_day``: the website's first event's day (for ``all``)."""
    if query.start or query.end:
        end = query.end or today
        return query.start or end - timedelta(days=6), end
    period = query.period
    if period == "today":
        return today, today
    if period == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if period == "ytd":
        return date(today.year, 1, 1), today
    if period == "all":
        return max(min(first_day or today, today), FIRST_DAY), today
    return today - timedelta(days=DAYS[period] - 1), today


def previous(start: date, end: date, compare: str) -> tuple[date, date]:
    """The comparison period of [start, end]."""
    if compare == "yoy":
        return _year_before(start), _year_before(end)
    length = (end - start).days + 1
    return start - timedelta(days=length), start - timedelta(days=1)


def _year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)
