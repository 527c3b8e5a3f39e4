"""What the gateway's handlers and dialect hooks reach at run time: one value per app."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import redis.asyncio as aioredis

from trackgate.gateway.api_keys import ApiKeys
from trackgate.gateway.auth import SourceCache
from trackgate.gateway.database import Database
from trackgate.gateway.publisher import Publisher
from trackgate.gateway.reports.data import RawCache
from trackgate.schemas.settings import Settings

utc_now: Callable[[], datetime] = functools.partial(datetime.now, UTC)
"""The time now, in UTC (the default ``Runtime.clock``): a partial, not a function, so that reading
the clock on the accept path costs no Python frame."""


class Runtime(msgspec.Struct, kw_only=True):
    """Handlers reach it through ``request.app.state.runtime``; ingest hooks through their context."""

    settings: Settings
    sources: SourceCache
    publisher: Publisher | None = None
    """Set by the app's lifespan (None before it starts)."""
    redis: aioredis.Redis | None = None
    """For dialect hooks that keep state (sessions, rate limits); set by the app's lifespan."""
    clock: Callable[[], datetime] = utc_now
    api_keys: ApiKeys | None = None
    """Checks ``X-API-KEY`` on the operator endpoints (``/debugger``) and the TinyTrail API."""
    database: Database | None = None
    """The TinyTrail API's PostgreSQL pool (``gateway/database.py``); set by the app's lifespan."""
    reports_cache: RawCache | None = None
    """The reports' numbers from raw events, reused a few seconds (``gateway/reports/data.py``)."""
    watched: bool = False
    """Whether someone watches the live debug feed (``gateway/debugger.py`` polls it once a second):
    only then does a refused request cost anything more."""
