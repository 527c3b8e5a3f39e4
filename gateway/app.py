"""The application factory. ``Runtime`` and ``utc_now`` live in ``gateway.runtime`` (re-exported here)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import msgspec
import psycopg
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from trackgate.gateway import debugger, docs, openapi, scripts
from trackgate.gateway.api_keys import ApiKeys
from trackgate.gateway.auth import SourceCache
from trackgate.gateway.counting import AcceptCounts
from trackgate.gateway.cpu_share import CpuShare
from trackgate.gateway.database import Database
from trackgate.gateway.ingest import IngestFront
from trackgate.gateway.metrics import metrics_endpoint
from trackgate.gateway.publisher import Publisher
from trackgate.gateway.reports.data import RawCache
from trackgate.gateway.routes import (
    API_ROUTES,
    DIALECTS,
    VERSION,
    build_routes,
    ingest_routes,
    prefix_conflict,
)
from trackgate.gateway.runtime import Runtime, utc_now
from trackgate.gateway.script_connection import ScriptConnection
from trackgate.gateway.source_changes import listen
from trackgate.schemas import metrics
from trackgate.schemas.settings import ServerSettings

__all__ = ["Runtime", "create_app", "utc_now"]

log = logging.getLogger(__name__)

STOP_TASKS_SECONDS = 2.0


def create_app(settings: ServerSettings, *, clock: Callable[[], datetime] = utc_now) -> IngestFront:
    conflict = prefix_conflict(settings.first_party_prefix)
    if conflict:
        raise ValueError(conflict)
    redis_url = settings.redis_url
    runtime = Runtime(
        settings=settings,
        sources=SourceCache(settings.database_url, settings.source_refresh_seconds, settings.key_pepper),
        clock=clock,
        api_keys=ApiKeys(settings.database_url, settings.key_pepper),
        reports_cache=RawCache(settings.reports_raw_cache_seconds),
    )

    counts = AcceptCounts(metrics.gateway())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = aioredis.from_url(
            redis_url,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
        runtime.redis = client
        # the publisher's own connection (gateway/script_connection.py): one script per flush without
        # redis-py's per-command machinery, and no socket timeout (the publisher bounds each write)
        writer = ScriptConnection(redis_url, connect_timeout=settings.redis_timeout_seconds)
        runtime.publisher = publisher = Publisher(
            writer,
            max_batch_events=settings.max_batch_events,
            retries=settings.job_retries,
            compress_level=settings.job_compress_level,
            timeout=settings.redis_timeout_seconds,
            max_pending_events=settings.max_pending_events,
            linger=settings.publish_linger_ms / 1000,
            busy=(
                CpuShare(settings.publish_linger_above_cpu_pct / 100).busy
                if settings.publish_linger_above_cpu_pct
                else None
            ),
        )
        await publisher.start()
        counts.publisher = publisher
        runtime.database = database = Database(
            settings.database_url,
            connect_timeout=settings.pg_connect_timeout,
            pool_timeout=settings.pg_pool_timeout,
        )
        await database.open()
        try:
            n = await runtime.sources.load()
            log.info("sources_loaded n_sources=%d", n)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.error("sources_load_failed error=%s (answering 503 until PostgreSQL is reachable)", exc)
        refresh = asyncio.create_task(runtime.sources.run(), name="trackgate-sources")
        stop_watch = asyncio.Event()
        watch = asyncio.create_task(debugger.watch_flag(runtime, stop_watch), name="trackgate-debug-watch")
        flush = asyncio.create_task(counts.run(), name="trackgate-metrics")
        forget = runtime.api_keys.forget if runtime.api_keys is not None else None
        changes = asyncio.create_task(
            listen(redis_url, runtime.sources, forget), name="trackgate-source-changes"
        )
        # compressing the served scripts (analytics.js at brotli's best) would stall the first request
        warm = asyncio.create_task(asyncio.to_thread(scripts.warm), name="trackgate-scripts")
        try:
            yield
        finally:
            stop_watch.set()
            tasks = {refresh, changes, watch, flush}
            for task in tasks:
                task.cancel()
            # bounded: a task that swallowed its cancellation must not hold the shutdown for ever
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TASKS_SECONDS)
            for task in stuck:
                log.warning("task_not_stopped name=%s", task.get_name())
            await warm
            await publisher.stop()
            counts.flush()  # the requests answered by the publisher's last writes, and those writes
            await runtime.sources.close()
            await database.close()
            if runtime.api_keys is not None:
                await runtime.api_keys.close()
            await client.aclose()
            await writer.aclose()
            metrics.mark_process_dead()

    routes, operator = build_routes(), operator_routes(settings)
    app = Starlette(routes=[*routes, *operator], lifespan=lifespan)
    app.state.runtime = runtime
    app.state.accept_counts = counts
    spec = openapi.build(DIALECTS, [routes[0], *API_ROUTES, *operator], VERSION)  # routes[0]: /health
    app.state.openapi_json = msgspec.json.encode(spec)
    app.state.docs_html = docs.render(spec)
    errors = {dialect.name: dialect.render_error for dialect in DIALECTS}
    return IngestFront(app, runtime, ingest_routes(), errors=errors, counts=counts)


def operator_routes(settings: ServerSettings) -> list[BaseRoute]:
    """The operator's view, beside the dialects' paths (none of them ``/metrics``, ``/openapi.json``
    or ``/docs``: ``tests/gateway/test_openapi.py`` checks)."""
    routes: list[BaseRoute] = [
        Route("/openapi.json", openapi.openapi_endpoint, methods=["GET"]),
        Route("/docs", docs.docs_endpoint, methods=["GET"]),
    ]
    if settings.metrics == "on":
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    return routes
