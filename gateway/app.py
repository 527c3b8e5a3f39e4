"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import psycopg
import redis.asyncio as aioredis
from starlette.applications import Starlette

from trackgate.gateway.auth import SourceCache
from trackgate.gateway.ingest import IngestFront
from trackgate.gateway.publisher import Publisher
from trackgate.gateway.routes import build_routes, ingest_routes
from trackgate.schemas.settings import Settings

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runtime(msgspec.Struct, kw_only=True):
    """What handlers reach through ``request.app.state.runtime``."""

    settings: Settings
    sources: SourceCache
    publisher: Publisher | None = None
    redis: aioredis.Redis | None = None
    """For dialect hooks that keep state (sessions, rate limits)."""
    clock: Callable[[], datetime] = utc_now


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> IngestFront:
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_app needs database_url and redis_url (trackgate up provides them)")
    runtime = Runtime(
        settings=settings,
        sources=SourceCache(settings.database_url, settings.source_refresh_seconds, settings.key_pepper),
        clock=clock,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        client = aioredis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
        runtime.redis = client
        runtime.publisher = Publisher(
            client,
            max_batch_events=settings.max_batch_events,
            retries=settings.job_retries,
            compress_level=settings.job_compress_level,
            timeout=settings.redis_timeout_seconds,
            max_pending_events=settings.max_pending_events,
        )
        await runtime.publisher.start()
        try:
            n = await runtime.sources.load()
            log.info("sources_loaded n_sources=%d", n)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.error("sources_load_failed error=%s (answering 503 until PostgreSQL is reachable)", exc)
        refresh = asyncio.create_task(runtime.sources.run(), name="trackgate-sources")
        try:
            yield
        finally:
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresh
            await runtime.publisher.stop()
            await runtime.sources.close()
            await client.aclose()

    app = Starlette(routes=build_routes(), lifespan=lifespan)
    app.state.runtime = runtime
    return IngestFront(app, runtime, ingest_routes())
