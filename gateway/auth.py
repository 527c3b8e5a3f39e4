"""Credentials to sources.

Keys are stored as SHA-256 digests. A running gateway keeps every enabled source in memory, keyed by
(dialect, digest), and re-reads the table every ``source_refresh_seconds``, so a new source works within
a few seconds and a request never waits on PostgreSQL. A lookup by digest reveals nothing useful about
a key through its timing (the attacker does not control the digest); a key's digest is all that is ever
held, and keys are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets

import psycopg

from trackgate.gateway.errors import Unauthorized, Unavailable
from trackgate.schemas.request import Source

log = logging.getLogger(__name__)

LOAD_TIMEOUT_SECONDS = 5


def new_key() -> str:
    """A generated key: 24 random bytes, URL-safe."""
    return secrets.token_urlsafe(24)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class SourceCache:
    def __init__(self, database_url: str, refresh_seconds: float):
        self._database_url = database_url
        self._refresh_seconds = refresh_seconds
        self._by_key: dict[tuple[str, bytes], Source] = {}
        self._by_extra: dict[tuple[str, str, bytes], Source] = {}
        self._loaded = False
        self._conn: psycopg.AsyncConnection | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def load(self) -> int:
        """Read every enabled source; returns how many."""
        async with asyncio.timeout(LOAD_TIMEOUT_SECONDS):
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._database_url, autocommit=True, connect_timeout=LOAD_TIMEOUT_SECONDS
                )
            cur = await self._conn.execute(
                "SELECT id, dialect, name, key_hash, settings FROM sources WHERE enabled"
            )
            rows = await cur.fetchall()
            cur = await self._conn.execute(
                "SELECT k.dialect, k.kind, k.key_hash, s.id FROM source_keys k"
                " JOIN sources s ON s.id = k.source_id WHERE s.enabled"
            )
            extra_rows = await cur.fetchall()
        table: dict[tuple[str, bytes], Source] = {}
        for source_id, dialect, name, key_hash, settings in rows:
            table[(dialect, bytes(key_hash))] = Source(
                id=source_id, dialect=dialect, name=name, settings=settings or {}
            )
        by_id = {s.id: s for s in table.values()}
        self._by_extra = {
            (dialect, kind, bytes(key_hash)): by_id[source_id]
            for dialect, kind, key_hash, source_id in extra_rows
            if source_id in by_id
        }
        self._by_key = table
        self._loaded = True
        return len(table)

    async def run(self) -> None:
        """Refresh forever (a lifespan task). A failed refresh keeps the last table."""
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.load()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("sources_refresh_failed error=%r", exc)
                if self._conn is not None:
                    await self._conn.close()
                    self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    def _ready(self) -> None:
        """Every lookup refuses with a retryable 503 until the first load: an unknown key before then
        may be a key that exists."""
        if not self._loaded:
            raise Unavailable("sources are not loaded yet; retry")

    def authenticate(self, dialect: str, key: str | None) -> Source:
        self._ready()
        if not key:
            raise Unauthorized("no credentials", code="missing_credentials")
        found = self._by_key.get((dialect, key_digest(key)))
        if found is None:
            raise Unauthorized("invalid credentials", code="invalid_credentials")
        return found

    def by_key(self, dialect: str, key: str) -> Source | None:
        self._ready()
        return self._by_key.get((dialect, key_digest(key)))

    def by_extra_key(self, dialect: str, kind: str, key: str) -> Source | None:
        """The source that has ``key`` as its key of ``kind`` (``source_keys``)."""
        self._ready()
        return self._by_extra.get((dialect, kind, key_digest(key)))

    def replace(
        self,
        sources: dict[tuple[str, str], Source],
        extra: dict[tuple[str, str, str], Source] | None = None,
    ) -> None:
        """Set the tables directly from (dialect, key) and (dialect, kind, key) (for embedding and tests)."""
        self._by_key = {(d, key_digest(k)): s for (d, k), s in sources.items()}
        self._by_extra = {(d, kind, key_digest(k)): s for (d, kind, k), s in (extra or {}).items()}
        self._loaded = True
