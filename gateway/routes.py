"""The route table. Each dialect is reachable at its vendor's own paths (so only the base URL
changes) and under its own prefix (``/segment/v1/...``, ``/openpanel/...``), which is never ambiguous.

A dialect's gateway module (``gateway/<dialect>.py``) provides:

- ``ingest_routes() -> dict[path, IngestRoute]``: its accepting POST paths, served by ``IngestFront``;
- ``shared_routes() -> dict[path, IngestRoute]`` (optional): unprefixed paths that another dialect may
  use too; when two dialects claim one, ``_shared`` decides per request (see ``choose_shared``);
- ``routes() -> list[BaseRoute]``: everything else (GET endpoints, preflights), served by Starlette;
- ``demo_source() -> dict`` and ``demo_lines(base, demo) -> list[str]``: what ``trackgate up`` creates
  and prints for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

import psycopg
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackgate.gateway import bucket, commandersact, openpanel, segment, spectacle, tinytrail
from trackgate.gateway.ingest import IngestRoute, SharedRoute
from trackgate.gateway.responses import JSONResponse

DIALECTS = (segment, spectacle, openpanel, bucket, commandersact, tinytrail)
"""The gateway module of every dialect, in the order ``up`` lists them."""

HEALTH_TIMEOUT_SECONDS = 1.0
HEALTH_CACHE_SECONDS = 1.0
"""A load balancer polling every gateway process costs PostgreSQL and Redis one round trip a second."""

try:
    VERSION = version("trackgate")
except PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "unknown"


async def _db_ok(runtime) -> bool:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            conn = await psycopg.AsyncConnection.connect(
                runtime.settings.database_url, autocommit=True, connect_timeout=1
            )
            async with conn:
                await conn.execute("SELECT 1")
        return True
    except (psycopg.Error, OSError, TimeoutError):
        return False


async def _redis_ok(runtime) -> bool:
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


def choose_shared(routes: Mapping[str, IngestRoute]) -> SharedRoute:
    """A path both OpenPanel and Reflag use (``/event``; Reflag alone has ``/user``, ``/company`` and
    ``/feedback``). The credentials decide: ``Authorization: Bearer`` or ``?publishableKey=`` is
    Reflag's (its SDKs always send one of them); anything else (``openpanel-client-id`` or
    ``mixan-client-id`` headers, or ``clientId`` in the body) is OpenPanel's, whose 401 then names what
    is missing."""
    bucket, openpanel = routes.get("bucket"), routes.get("openpanel")

    def choose(headers: Mapping[str, str], query: Mapping[str, str]) -> IngestRoute:
        if bucket is not None and (
            headers.get("authorization", "")[:7].lower() == "bearer " or "publishableKey" in query
        ):
            return bucket
        return openpanel if openpanel is not None else bucket  # type: ignore[return-value]

    return SharedRoute(choose=choose)


def _shared() -> dict[str, IngestRoute | SharedRoute]:
    claims: dict[str, dict[str, IngestRoute]] = {}
    for module in DIALECTS:
        for path, route in getattr(module, "shared_routes", dict)().items():
            claims.setdefault(path, {})[route.adapter.dialect] = route
    return {
        path: next(iter(by_dialect.values())) if len(by_dialect) == 1 else choose_shared(by_dialect)
        for path, by_dialect in claims.items()
    }


def ingest_routes() -> dict[str, IngestRoute | SharedRoute]:
    """Every dialect's accepting POST paths (exact or ``{param}`` patterns), for ``IngestFront``."""
    table: dict[str, IngestRoute | SharedRoute] = {}
    for module in DIALECTS:
        for path, route in module.ingest_routes().items():
            if path in table:
                raise RuntimeError(f"two dialects claim POST {path}; use shared_routes()")
            table[path] = route
    for path, route in _shared().items():
        if path in table:
            raise RuntimeError(f"POST {path} is both a dialect's own path and a shared one")
        table[path] = route
    return table


def build_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [Route("/health", health, methods=["GET"])]
    for module in DIALECTS:
        routes.extend(module.routes())
    return routes
