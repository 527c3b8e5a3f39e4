"""The application factory. ``Runtime`` and ``utc_now`` live in ``gateway.runtime`` (re-exported here)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import psycopg
import redis.asyncio as aioredis
from starlette.applications import Starlette

from trackgate.gateway.auth import SourceCache
from trackgate.gateway.ingest import IngestFront
from trackgate.gateway.publisher import Publisher
from trackgate.gateway.routes import DIALECTS, build_routes, ingest_routes
from trackgate.gateway.runtime import Runtime, utc_now
from trackgate.gateway.source_changes import listen
from trackgate.schemas.settings import ServerSettings

__all__ = ["Runtime", "create_app", "utc_now"]

log = logging.getLogger(__name__)

STOP_TASKS_SECONDS = 2.0


def create_app(settings: ServerSettings, *, clock: Callable[[], datetime] = utc_now) -> IngestFront:
    redis_url = settings.redis_url
    runtime = Runtime(
        settings=settings,
        sources=SourceCache(settings.database_url, settings.source_refresh_seconds, settings.key_pepper),
        clock=clock,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = aioredis.from_url(
            redis_url,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
        runtime.redis = client
        runtime.publisher = publisher = Publisher(
            client,
            max_batch_events=settings.max_batch_events,
            retries=settings.job_retries,
            compress_level=settings.job_compress_level,
            timeout=settings.redis_timeout_seconds,
            max_pending_events=settings.max_pending_events,
        )
        await publisher.start()
        try:
            n = await runtime.sources.load()
            log.info("sources_loaded n_sources=%d", n)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.error("sources_load_failed error=%s (answering 503 until PostgreSQL is reachable)", exc)
        refresh = asyncio.create_task(runtime.sources.run(), name="trackgate-sources")
        changes = asyncio.create_task(listen(redis_url, runtime.sources), name="trackgate-source-changes")
        try:
            yield
        finally:
            for task in (refresh, changes):
                task.cancel()
            # bounded: a task that swallowed its cancellation must not hold the shutdown for ever
            _, stuck = await asyncio.wait({refresh, changes}, timeout=STOP_TASKS_SECONDS)
            for task in stuck:
                log.warning("task_not_stopped name=%s", task.get_name())
            await publisher.stop()
            await runtime.sources.close()
            await client.aclose()

    app = Starlette(routes=build_routes(), lifespan=lifespan)
    app.state.runtime = runtime
    errors = {dialect.name: dialect.render_error for dialect in DIALECTS}
    return IngestFront(app, runtime, ingest_routes(), errors=errors)
