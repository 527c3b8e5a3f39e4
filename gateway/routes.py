"""The route table. Each dialect is reachable at its vendor's own paths (so only the base URL
changes) and under its own prefix (``/segment/v1/...``, ``/openpanel/...``), which is never ambiguous.

A dialect is one ``gateway.dialect.Dialect`` value, declared at the end of its HTTP module
(``gateway/<dialect>.py``) as ``SPEC`` and listed once in ``DIALECTS`` below:

- ``ingest``: its accepting POST paths -> ``IngestRoute`` (adapter, call, body cap, typed hooks
  ``authenticate(AuthContext) -> Auth | None``, ``prepare(PrepareContext) -> Hints``, ``respond``,
  ``partial``, ``cors``; see ``gateway.ingest``), served by ``IngestFront`` as raw ASGI;
- ``shared`` and ``claims``: unprefixed POST paths another dialect may use too; on a path claimed by
  several, each ``claims(headers, query)`` is asked in ``DIALECTS`` order and the dialect without a
  claim takes the rest (``shared_route``);
- ``routes``: everything else (GET endpoints, preflights), served by Starlette;
- ``render_error``: its error shape (``responses.error_response`` applies it);
- ``new_source`` and ``demo_lines``: what ``trackgate sources add`` and ``trackgate up`` create and print.

Its pure side, ``adapter`` (``adapters/<dialect>.py``), is listed in ``adapters.registry.CODECS`` in
the same order (a test checks it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psycopg
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackgate.gateway import (
    accounts,
    api_fallback,
    bucket,
    commandersact,
    dashboard,
    debugger,
    openpanel,
    segment,
    spectacle,
    tinytrail,
    users,
    websites,
)
from trackgate.gateway.dialect import Claim, Dialect
from trackgate.gateway.ingest import AnyRoute, IngestRoute, SharedRoute
from trackgate.gateway.reports import routes as reports
from trackgate.gateway.responses import JSONResponse
from trackgate.gateway.runtime import Runtime

DIALECTS: tuple[Dialect, ...] = (
    segment.SPEC,
    spectacle.SPEC,
    openpanel.SPEC,
    bucket.SPEC,
    commandersact.SPEC,
    tinytrail.SPEC,
)
"""Every dialect, in the order ``up`` lists them."""

HEALTH_TIMEOUT_SECONDS = 1.0
HEALTH_CACHE_SECONDS = 1.0
"""A load balancer polling every gateway process costs PostgreSQL and Redis one round trip a second."""

try:
    VERSION = version("trackgate")
except PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "unknown"


async def _db_ok(runtime: Runtime) -> bool:
    database_url = runtime.settings.database_url
    if not database_url:  # create_app refuses to start without one
        return False
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True, connect_timeout=1)
            async with conn:
                await conn.execute("SELECT 1")
        return True
    except (psycopg.Error, OSError, TimeoutError):
        return False


async def _redis_ok(runtime: Runtime) -> bool:
    if runtime.redis is None:
        return False
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            await runtime.redis.ping()
        return True
    except (RedisError, OSError, TimeoutError):
        return False


async def health(request: Request) -> Response:
    """GET /health: ``{"status":"ok","db":"connected","redis":"connected","version":...}``, or 503
    ``{"status":"degraded",...}`` while PostgreSQL or Redis is unreachable or the sources are not loaded
    yet (TinyTrail's shape, which every dialect's load balancer can read). Checked at most once a second."""
    state = request.app.state
    runtime = state.runtime
    cached = getattr(state, "health_cache", None)
    now = time.monotonic()
    if cached is None or now - cached[0] > HEALTH_CACHE_SECONDS:
        db_up, redis_up = await asyncio.gather(_db_ok(runtime), _redis_ok(runtime))
        cached = state.health_cache = (now, db_up, redis_up)
    _, db_up, redis_up = cached
    ready = runtime.sources.loaded
    body = {
        "db": "connected" if db_up else "disconnected",
        "redis": "connected" if redis_up else "disconnected",
    }
    if db_up and redis_up and ready:
        return JSONResponse({"status": "ok", **body, "version": VERSION})
    if not ready:
        body["sources"] = "loading"
    return JSONResponse({"status": "degraded", **body}, status_code=503)


def shared_route(claimants: list[tuple[Claim | None, IngestRoute[Any]]]) -> SharedRoute:
    """One path, several dialects' routes: the first whose claim takes the request, else the one that
    makes no claim (there is at most one)."""
    claimed = [(claim, route) for claim, route in claimants if claim is not None]
    rest = [route for claim, route in claimants if claim is None]
    if len(rest) > 1:
        raise RuntimeError("two dialects share a path and neither claims its requests")
    fallback = rest[0] if rest else claimed[-1][1]

    def choose(headers: Mapping[str, str], query: Mapping[str, str]) -> IngestRoute[Any]:
        for claim, route in claimed:
            if claim(headers, query):
                return route
        return fallback

    return SharedRoute(choose=choose)


def _shared() -> dict[str, AnyRoute]:
    claims: dict[str, list[tuple[Claim | None, IngestRoute[Any]]]] = {}
    for dialect in DIALECTS:
        for path, route in dialect.shared.items():
            claims.setdefault(path, []).append((dialect.claims, route))
    return {
        path: claimants[0][1] if len(claimants) == 1 else shared_route(claimants)
        for path, claimants in claims.items()
    }


def ingest_routes() -> dict[str, AnyRoute]:
    """Every dialect's accepting POST paths (exact or ``{param}`` patterns), for ``IngestFront``."""
    table: dict[str, AnyRoute] = {}
    for dialect in DIALECTS:
        for path, route in dialect.ingest.items():
            if path in table:
                raise RuntimeError(f"two dialects claim POST {path}; declare it in Dialect.shared")
            table[path] = route
    for path, shared in _shared().items():
        if path in table:
            raise RuntimeError(f"POST {path} is both a dialect's own path and a shared one")
        table[path] = shared
    return table


def served_paths() -> list[str]:
    """Every path (or pattern) the gateway serves: the accepting POST paths, then Starlette's routes
    and mounts."""
    paths = list(ingest_routes())
    for route in build_routes():
        path = getattr(route, "path", None)
        if isinstance(path, str):
            paths.append(path)
    return paths


def prefix_conflict(prefix: str | None) -> str | None:
    """Why ``prefix`` cannot be the first-party prefix (a path the gateway serves lies below it, so
    its requests would be taken for prefixed ones), or None when it can."""
    if prefix is None:
        return None
    for path in served_paths():
        if path.startswith(prefix + "/"):
            return (
                f"TRACKGATE_FIRST_PARTY_PREFIX={prefix} would hide {path}, which trackgate serves: "
                "choose a path of its own, e.g. /t"
            )
    return None


API_ROUTES: list[BaseRoute] = [*accounts.ROUTES, *users.ROUTES, *websites.ROUTES, *reports.ROUTES]
"""TinyTrail's management and report API (issue 12; access and envelope: ``gateway/api_access.py``)."""


def build_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        *debugger.ROUTES,
        *dashboard.ROUTES,
        *API_ROUTES,
    ]
    for dialect in DIALECTS:
        routes.extend(dialect.routes)
    # last: what no route above takes under /api/v1 is answered in TinyTrail's envelope
    posted = [path for path in ingest_routes() if "{" not in path]
    routes.extend(api_fallback.routes(posted))
    return routes
