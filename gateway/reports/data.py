"""Reading the reports' numbers: aggregates for clean closed days, raw events for the rest.

A day of the period is read from ``report_rows``/``report_step_sequences`` when ``report_days`` marks it
clean for the website's source (aggregated after it closed, and no late event since); every other day
(today, a day never aggregated, a dirty one) is computed from ``events`` with the very same SQL the
aggregation stores (``schemas/aggregates.py``), one query per run of consecutive such days. The two are
summed in Python.

The reads run on the TinyTrail API's pool (``gateway/database.py``), never on the accept path's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from trackgate.gateway.errors import Unavailable
from trackgate.gateway.reports.params import Query
from trackgate.schemas import aggregates

REALTIME_MINUTES = 30
TOP_PAGES = 10

METRICS = aggregates.COUNTS


@dataclass(slots=True)
class Counts:
    """One row's numbers (see ``schemas.aggregates.ROWS_SQL``), summed over days and parts."""

    label: str | None = None
    pageviews: int = 0
    unique_pageviews: int = 0
    visits: int = 0
    visitors: int = 0
    bounces: int = 0
    duration: float = 0.0
    entries: int = 0
    exits: int = 0
    events: int = 0

    def add(self, row: Sequence[Any]) -> None:
        """``row``: label, then :data:`METRICS` in order."""
        if row[0] is not None and self.label is None:
            self.label = row[0]
        self.pageviews += int(row[1])
        self.unique_pageviews += int(row[2])
        self.visits += int(row[3])
        self.visitors += int(row[4])
        self.bounces += int(row[5])
        self.duration += float(row[6])
        self.entries += int(row[7])
        self.exits += int(row[8])
        self.events += int(row[9])


@dataclass(frozen=True, slots=True)
class Period:
    """The days a report covers, and which of them come from raw events."""

    source_id: str
    start: date
    end: date
    raw: tuple[tuple[date, date], ...] = ()
    """Runs of consecutive days (first, last) read from raw events."""
    raw_days: tuple[date, ...] = ()

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def months_and_days(self) -> tuple[list[date], list[date]]:
        """The clean days of the period as whole calendar months inside it with no raw day (read from
        ``report_months``, by their first day) and the other clean days (read from ``report_rows``)."""
        raw = set(self.raw_days)
        months: list[date] = []
        days: list[date] = []
        day = self.start
        while day <= self.end:
            following = aggregates.month_after(day)
            last = following - timedelta(days=1)
            whole = day.day == 1 and last <= self.end
            if whole and not any(d in raw for d in _between(day, last)):
                months.append(day)
            else:
                days.extend(d for d in _between(day, min(last, self.end)) if d not in raw)
            day = following
        return months, days


def _between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(slots=True)
class Table:
    """Rows by (dim, key[, day])."""

    rows: dict[tuple[Any, ...], Counts] = field(default_factory=dict)

    def add(self, key: tuple[Any, ...], values: Sequence[Any]) -> None:
        counts = self.rows.get(key)
        if counts is None:
            counts = self.rows[key] = Counts()
        counts.add(values)

    def dim(self, dim: str) -> dict[str, Counts]:
        return {k[1]: v for k, v in self.rows.items() if k[0] == dim}


_COLUMNS = ", ".join(("dim", "key", "label", *METRICS))
_SUMS = (
    "max(label), sum(pageviews), sum(unique_pageviews), sum(visits), sum(visitors), sum(bounces),"
    " sum(duration), sum(entries), sum(exits), sum(events)"
)


def _filters(key: str | None) -> str:
    extra = " AND key = %(key)s" if key is not None else ""
    return f"dim = ANY(%(dims)s) AND scope = %(scope)s AND (NOT bots OR %(bots)s){extra}"


async def first_day(conn: psycopg.AsyncConnection, source_id: str) -> date | None:
    """The UTC day of the source's first event (``period=all``)."""
    cur = await conn.execute(
        """SELECT (min("timestamp") AT TIME ZONE 'UTC')::date FROM events WHERE source_id = %s""",
        (source_id,),
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def period(
    conn: psycopg.AsyncConnection, source_id: str, start: date, end: date, today: date
) -> Period:
    """Which days of [start, end] are read raw: every one not marked clean (today always)."""
    cur = await conn.execute(
        "SELECT day FROM report_days WHERE source_id = %s AND day >= %s AND day <= %s AND day < %s"
        " AND NOT dirty",
        (source_id, start, end, today),
    )
    clean = {row[0] for row in await cur.fetchall()}
    raw_days = [d for d in Period(source_id, start, end).days() if d not in clean]
    runs: list[tuple[date, date]] = []
    for day in raw_days:
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return Period(source_id, start, end, tuple(runs), tuple(raw_days))


class RawCache:
    """The numbers computed from raw events, per (source, first day, last day, scope, bots), reused
    for ``ttl`` seconds (``TRACKGATE_REPORTS_RAW_CACHE_SECONDS``): the reports a dashboard asks at once,
    and the same report asked again, compute today's rows once. One computation per key at a time."""

    MAX_ENTRIES = 512

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}

    async def get(self, key: tuple[Any, ...], compute: Callable[[], Awaitable[Any]]) -> Any:
        if self.ttl <= 0:
            return await compute()
        found = self._entries.get(key)
        if found is not None and found[0] > self._clock():
            return found[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            found = self._entries.get(key)
            if found is not None and found[0] > self._clock():
                return found[1]
            value = await compute()
            if len(self._entries) >= self.MAX_ENTRIES:
                now = self._clock()
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                self._locks = {k: v for k, v in self._locks.items() if k in self._entries or v.locked()}
            self._entries[key] = (self._clock() + self.ttl, value)
        return value


def _raw_params(span: Period, query: Query, first: date, last: date) -> dict[str, Any]:
    start, _ = aggregates.day_bounds(first)
    _, end = aggregates.day_bounds(last)
    return {
        "source": span.source_id,
        "start": start,
        "end": end,
        "only": query.scope,
        "with_bots": query.include_bots,
    }


_RAW_ROWS_SQL = f"SELECT dim, key, day, {_SUMS} FROM ({aggregates.ROWS_SQL}) r GROUP BY dim, key, day"
_RAW_SEQUENCES_SQL = f"SELECT steps, sum(sessions) FROM ({aggregates.SEQUENCES_SQL}) r GROUP BY steps"


async def _raw(
    conn: psycopg.AsyncConnection,
    cache: RawCache,
    what: str,
    span: Period,
    query: Query,
    run: tuple[date, date],
) -> list[tuple[Any, ...]]:
    """Every row (``rows``) or step sequence (``sequences``) of a run of raw days, for the query's scope
    and bots, through the cache."""
    key = (what, span.source_id, run[0], run[1], query.scope, query.include_bots)

    async def compute() -> list[tuple[Any, ...]]:
        sql = _RAW_ROWS_SQL if what == "rows" else _RAW_SEQUENCES_SQL
        cur = await conn.execute(sql, _raw_params(span, query, *run))
        return [tuple(row) for row in await cur.fetchall()]

    return await cache.get(key, compute)


READ_SETTINGS_SQL = "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off; SET LOCAL statement_timeout = '60s'"
"""For one report's reads: the sorts and hash tables of sessions and sums in memory (4 MB spills a year
of page rows to disk), no JIT (compiling costs ~0.2 s, more than it saves on these queries), and a
bound on a report over years of days never aggregated."""


@contextlib.asynccontextmanager
async def reading(conn: psycopg.AsyncConnection) -> AsyncIterator[None]:
    """One report's reads, in one transaction with :data:`READ_SETTINGS_SQL`; a read cancelled by the
    statement timeout is a 503 that says what to do."""
    try:
        async with conn.transaction():
            await conn.execute(READ_SETTINGS_SQL)
            yield
    except psycopg.errors.QueryCanceled as exc:
        raise Unavailable(
            "the report took too long: aggregate its days first (trackgate reports aggregate --from --to)"
        ) from exc


async def rows(
    conn: psycopg.AsyncConnection,
    cache: RawCache,
    span: Period,
    query: Query,
    dims: Sequence[str],
    *,
    by_day: bool = False,
    key: str | None = None,
) -> Table:
    """The summed rows of ``dims`` over the period (per day too with ``by_day``; one ``key`` only)."""
    params: dict[str, Any] = {
        "source": span.source_id,
        "dims": list(dims),
        "scope": query.scope,
        "bots": query.include_bots,
        "key": key,
        "a": span.start,
        "b": span.end,
        "raw": list(span.raw_days),
    }
    table = Table()
    if by_day:
        cur = await conn.execute(
            f"SELECT dim, key, day, {_SUMS} FROM report_rows WHERE source_id = %(source)s"
            f" AND day >= %(a)s AND day <= %(b)s AND NOT (day = ANY(%(raw)s::date[])) AND {_filters(key)}"
            " GROUP BY dim, key, day",
            params,
        )
    else:
        months, days = span.months_and_days()
        cur = await conn.execute(
            f"SELECT dim, key, NULL::date, {_SUMS} FROM ("
            f" SELECT {_COLUMNS} FROM report_months WHERE source_id = %(source)s"
            f" AND month = ANY(%(months)s::date[]) AND {_filters(key)}"
            " UNION ALL"
            f" SELECT {_COLUMNS} FROM report_rows WHERE source_id = %(source)s"
            f" AND day = ANY(%(days)s::date[]) AND {_filters(key)}"
            ") r GROUP BY dim, key",
            {**params, "months": months, "days": days},
        )
    for row in await cur.fetchall():
        table.add((row[0], row[1], row[2]), row[3:])
    wanted = set(dims)
    for run in span.raw:
        for row in await _raw(conn, cache, "rows", span, query, run):
            if row[0] in wanted and (key is None or row[1] == key):
                table.add((row[0], row[1], row[2] if by_day else None), row[3:])
    return table


def _funnel_sql(source: str, n_steps: int, step_type: str) -> str:
    """Per step, the sessions whose steps hold it after the previous step's first match (the steps
    are parameters ``s0``.. of ``step_type``)."""
    counts = ", ".join(
        f"coalesce(sum(q.sessions) FILTER (WHERE a{i}.p IS NOT NULL), 0)" for i in range(n_steps)
    )
    joins = f" CROSS JOIN LATERAL (SELECT array_position(q.steps, %(s0)s::{step_type}) AS p) a0"
    for i in range(1, n_steps):
        after = f"array_position(q.steps, %(s{i})s::{step_type}, a{i - 1}.p + 1)"
        joins += f" CROSS JOIN LATERAL (SELECT CASE WHEN a{i - 1}.p IS NOT NULL THEN {after} END AS p) a{i}"
    return f"SELECT {counts} FROM ({source}) q{joins}"


def reached(sequences: Sequence[tuple[Sequence[str], int]], steps: Sequence[str]) -> list[int]:
    """The same count as :func:`_funnel_sql`, in Python, over (steps, sessions) pairs."""
    totals = [0] * len(steps)
    for sequence, sessions in sequences:
        position = -1
        for i, step in enumerate(steps):
            try:
                position = sequence.index(step, position + 1)
            except ValueError:
                break
            totals[i] += int(sessions)
    return totals


async def funnel(
    conn: psycopg.AsyncConnection, cache: RawCache, span: Period, query: Query, steps: Sequence[str]
) -> list[int]:
    """Sessions that reached each step, in order (a step after the one before it, in the same session).

    The stored days read ``report_step_sequences``, whose steps are ``report_steps`` ids: the steps
    asked are looked up first (a step the source never had is id 0, which no sequence holds), then
    only the sequences holding the first one are read (its GIN index)."""
    cur = await conn.execute(
        "SELECT step, id FROM report_steps WHERE source_id = %s AND step = ANY(%s)",
        (span.source_id, list(steps)),
    )
    ids = {step: int(id_) for step, id_ in await cur.fetchall()}
    totals = [0] * len(steps)
    if steps[0] in ids:
        params: dict[str, Any] = {
            "source": span.source_id,
            "scope": query.scope,
            "bots": query.include_bots,
            "a": span.start,
            "b": span.end,
            "raw": list(span.raw_days),
            **{f"s{i}": ids.get(step, 0) for i, step in enumerate(steps)},
        }
        stored = (
            "SELECT steps, sessions FROM report_step_sequences WHERE source_id = %(source)s"
            " AND scope = %(scope)s AND day >= %(a)s AND day <= %(b)s AND NOT (day = ANY(%(raw)s::date[]))"
            " AND (NOT bots OR %(bots)s) AND steps @> ARRAY[%(s0)s::int]"
        )
        cur = await conn.execute(_funnel_sql(stored, len(steps), "int"), params)
        row = await cur.fetchone()
        if row:
            totals = [int(v) for v in row]
    for run in span.raw:
        sequences = await _raw(conn, cache, "sequences", span, query, run)
        totals = [t + n for t, n in zip(totals, reached(sequences, steps), strict=True)]
    return totals


_REALTIME_SQL = f"""
SELECT coalesce(e.visitor_id, 'u:' || e.user_id, 'a:' || e.anonymous_id, 'e:' || e.id::text),
       {aggregates.PAGE_VIEW}, CASE WHEN {aggregates.PAGE_VIEW} THEN {aggregates.PATH} END,
       CASE WHEN {aggregates.PAGE_VIEW} THEN 'page_view' ELSE e.name END
FROM events e
WHERE e.source_id = %(source)s AND e."timestamp" >= %(since)s AND e."timestamp" <= %(now)s
  AND e.received_at >= %(since)s - interval '1 day'
  AND NOT coalesce(e.is_bot, false)
  AND NOT coalesce(e.is_excluded, false)
  AND ({aggregates.PAGE_VIEW} OR {aggregates.CUSTOM_EVENT})
"""


async def realtime(conn: psycopg.AsyncConnection, source_id: str, now: datetime) -> dict[str, Any]:
    """The last 30 minutes' raw events: visitors, top pages by visitors, events by type."""
    since = now - timedelta(minutes=REALTIME_MINUTES)
    cur = await conn.execute(
        f"""WITH r(vid, pv, path, kind) AS ({_REALTIME_SQL})
        SELECT 'active', NULL, count(DISTINCT vid) FROM r
        UNION ALL
        SELECT 'page', path, count(DISTINCT vid) FROM r WHERE pv GROUP BY path
        UNION ALL
        SELECT 'type', kind, count(*) FROM r GROUP BY kind""",
        {"source": source_id, "since": since, "now": now},
    )
    found = await cur.fetchall()
    pages = sorted(((r[1], int(r[2])) for r in found if r[0] == "page"), key=lambda p: (-p[1], p[0]))
    kinds = sorted(((r[1], int(r[2])) for r in found if r[0] == "type"), key=lambda p: (-p[1], p[0]))
    return {
        "active_visitors": next((int(r[2]) for r in found if r[0] == "active"), 0),
        "top_pages": [{"path": path, "visitors": n} for path, n in pages[:TOP_PAGES]],
        "events_by_type": [{"eventType": kind, "count": n} for kind, n in kinds],
    }
