"""The gateway's PostgreSQL pool for the TinyTrail API (management and reports): not the accept path,
which never waits on PostgreSQL.

A ``psycopg_pool.AsyncConnectionPool`` (the driver's own pool: health checks, reconnects, bounded
waits) of autocommit connections, opened by the app's lifespan without waiting, so a gateway starts
while PostgreSQL is away; a request that cannot get a connection within ``pg_pool_timeout`` is answered
503 (``Unavailable``), as is one whose connection breaks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from trackgate.gateway.errors import Unavailable

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 4
"""Per gateway process: API requests are few next to the events (60 a minute per key)."""


class Database:
    def __init__(self, database_url: str, *, connect_timeout: float = 3.0, pool_timeout: float = 5.0):
        self._pool = AsyncConnectionPool(
            database_url,
            min_size=0,
            max_size=MAX_CONNECTIONS,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout))},
            timeout=pool_timeout,
            name="trackgate-api",
        )

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled autocommit connection; ``Unavailable`` (503) when none can be had in time or it
        breaks (an operational error: not a constraint the caller checks for)."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (PoolTimeout, psycopg.OperationalError, OSError) as exc:
            log.warning("api_database_unavailable error=%r", exc)
            raise Unavailable("PostgreSQL did not answer; retry") from exc
