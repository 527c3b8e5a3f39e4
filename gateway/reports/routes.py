"""The reports' routes, ``GET /api/v1/reports/{summary,pages,sources,devices,flow,funnel,realtime,
custom-events,timeseries}``, and ``POST /api/v1/admin/aggregate``.

Each report: the caller's key (``api_access.principal``: 401, 429), the website it may see
(``api_access.website``: 400, 404), then the common parameters (400 naming the bad one), then one
pooled connection (``api_access.database``) for its reads. "Today" and "now" are the gateway's clock
(``Runtime.clock``), in UTC.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackgate.gateway.api_access import database, endpoint, json_body, ok, principal, website
from trackgate.gateway.errors import InvalidPayload
from trackgate.gateway.reports import build, data, params
from trackgate.gateway.reports.csv import csv_response
from trackgate.schemas import aggregates, report_range
from trackgate.schemas.websites import Website

PREFIX = "/api/v1/reports"


def _now(request: Request) -> datetime:
    return request.app.state.runtime.clock().astimezone(UTC)


class Asked:
    """One report request, checked: who, which website, which parameters, when."""

    def __init__(
        self, site: Website, query: params.Query, now: datetime, raw: dict[str, str], cache: data.RawCache
    ):
        self.cache = cache
        self.site = site
        self.query = query
        self.now = now
        self.today = now.date()
        self.raw = raw


async def _asked(request: Request) -> Asked:
    who = await principal(request)
    site = await website(request, who, request.query_params.get("website_id"))
    now = _now(request)
    query = params.parse(request.query_params, now.date())
    runtime = request.app.state.runtime
    cache = runtime.reports_cache or data.RawCache(0)
    return Asked(site, query, now, dict(request.query_params), cache)


async def _span(conn: psycopg.AsyncConnection, asked: Asked) -> data.Period:
    first = await data.first_day(conn, asked.site.source_id) if asked.query.period == "all" else None
    start, end = params.span(asked.query, asked.today, first)
    return await data.period(conn, asked.site.source_id, start, end, asked.today)


def _answer(name: str, asked: Asked, report: build.Report, span: data.Period | None) -> Response:
    if asked.query.csv:
        start = (span.start if span else asked.today).isoformat()
        end = (span.end if span else asked.today).isoformat()
        return csv_response(name, report.columns, report.csv_rows, start, end)
    return ok(report.data)


Read = Callable[[psycopg.AsyncConnection, Asked], Awaitable[tuple[build.Report, data.Period | None]]]


def report(name: str, read: Read) -> Route:
    async def handler(request: Request) -> Response:
        asked = await _asked(request)
        async with database(request).connection() as conn, data.reading(conn):
            built, span = await read(conn, asked)
        return _answer(name, asked, built, span)

    return Route(f"{PREFIX}/{name}", endpoint(handler), methods=["GET"], name=f"report_{name}")


# --- the nine reads ---------------------------------------------------------------------------------


async def _summary(conn: psycopg.AsyncConnection, asked: Asked) -> tuple[build.Report, data.Period]:
    span = await _span(conn, asked)
    table = await data.rows(conn, asked.cache, span, asked.query, ["total"])
    compared = None
    if asked.query.compare:
        start, end = params.previous(span.start, span.end, asked.query.compare)
        before = await data.period(conn, span.source_id, start, end, asked.today)
        compared = (before, await data.rows(conn, asked.cache, before, asked.query, ["total"]))
    return build.summary(span, table, compared), span


async def _pages(conn: psycopg.AsyncConnection, asked: Asked) -> tuple[build.Report, data.Period]:
    span = await _span(conn, asked)
    return build.pages(
        span, asked.query, await data.rows(conn, asked.cache, span, asked.query, ["path"])
    ), span


async def _sources(conn: psycopg.AsyncConnection, asked: Asked) -> tuple[build.Report, data.Period]:
    by = build.group_by(asked.raw)
    span = await _span(conn, asked)
    table = await data.rows(conn, asked.cache, span, asked.query, [build.SOURCE_DIMS[by]])
    return build.sources(span, asked.query, table, by), span


async def _devices(conn: psycopg.AsyncConnection, asked: Asked) -> tuple[build.Report, data.Period]:
    span = await _span(conn, asked)
    dims = [dim for _, dim, _ in build.DEVICE_LISTS]
    return build.devices(span, await data.rows(conn, asked.cache, span, asked.query, dims)), span


async def _flow(conn: psycopg.AsyncConnection, asked: Asked) -> tuple[build.Report, data.Period]:
    span = await _span(conn, asked)
    return build.flow(
        span, asked.query, await data.rows(conn, asked.cache, span, asked.query, ["path"])
    ), span


def _steps(request_params: Any) -> list[str]:
    return list(request_params.getlist("steps[]")) or list(request_params.getlist("steps"))


async def _custom_events(conn: psycopg.AsyncConnection, asked: Asked) -> tuple[build.Report, data.Period]:
    span = await _span(conn, asked)
    name = asked.raw.get("event_name") or None
    table = await data.rows(conn, asked.cache, span, asked.query, ["event"], key=name)
    return build.custom_events(span, asked.query, table), span


async def _timeseries(conn: psycopg.AsyncConnection, asked: Asked) -> tuple[build.Report, data.Period]:
    metric = build.metric(asked.raw)
    path = asked.raw.get("path") or None
    span = await _span(conn, asked)
    dim = "path" if path else "total"
    table = await data.rows(conn, asked.cache, span, asked.query, [dim], by_day=True, key=path or "")
    return build.timeseries(span, metric, path, table), span


async def funnel(request: Request) -> Response:
    asked = await _asked(request)
    steps = build.funnel_steps(_steps(request.query_params))
    async with database(request).connection() as conn, data.reading(conn):
        span = await _span(conn, asked)
        counts = await data.funnel(conn, asked.cache, span, asked.query, steps)
    return _answer("funnel", asked, build.funnel(span, steps, counts), span)


async def realtime(request: Request) -> Response:
    asked = await _asked(request)
    async with database(request).connection() as conn, data.reading(conn):
        found = await data.realtime(conn, asked.site.source_id, asked.now)
    return _answer("realtime", asked, build.realtime(found), None)


# --- the admin's aggregation ------------------------------------------------------------------------


async def aggregate(request: Request) -> Response:
    """POST /api/v1/admin/aggregate ``{"date": "YYYY-MM-DD"}`` (default yesterday, UTC; from 2000-01-01
    to the day after today): rebuild that day's aggregates for every website, now, each in its own
    transaction."""
    await principal(request, admin=True)
    body = await json_body(request, empty={})
    value = body.get("date")
    today = _now(request).date()
    if value is None:
        day = today - timedelta(days=1)
    else:
        try:
            day = report_range.parse_day(value, today)
        except report_range.BadDay as bad:
            raise InvalidPayload(f"date {bad.why or 'must be a date, YYYY-MM-DD'}", path="date") from None
    async with database(request).connection() as conn:
        cur = await conn.execute(aggregates.SOURCES_SQL)
        for (source_id,) in await cur.fetchall():
            async with conn.transaction():
                for sql, statement_params in aggregates.rebuild_statements(source_id, day):
                    await conn.execute(sql, statement_params)
    return ok({"message": f"Aggregation completed for {day.isoformat()}"})


ROUTES: list[BaseRoute] = [
    report("summary", _summary),
    report("pages", _pages),
    report("sources", _sources),
    report("devices", _devices),
    report("flow", _flow),
    Route(f"{PREFIX}/funnel", endpoint(funnel), methods=["GET"], name="report_funnel"),
    Route(f"{PREFIX}/realtime", endpoint(realtime), methods=["GET"], name="report_realtime"),
    report("custom-events", _custom_events),
    report("timeseries", _timeseries),
    Route("/api/v1/admin/aggregate", endpoint(aggregate), methods=["POST"], name="admin_aggregate"),
]
"""Every route of this module, for ``gateway/routes.py``."""
