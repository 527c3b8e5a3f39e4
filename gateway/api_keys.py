"""Checking API keys (``X-API-KEY``) on the gateway's operator endpoints (``/debugger`` now, issue 12's
reports and admin API later).

A key is looked up by its keyed digest in ``api_keys`` (migration 0013; created by
``trackgate admin create-key``, see ``trackgate/api_keys.py``). Not the hot path: an answer is kept
for ``CACHE_SECONDS`` per digest, and a lookup is one query on the checker's own connection. A key
revoked or deleted through the API or the CLI fails at once on every gateway: the change is announced
(``source_changes``) and each gateway's listener calls :meth:`ApiKeys.forget`; a row changed by hand
stops working within ``CACHE_SECONDS``. Keys are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

import msgspec
import psycopg

from trackgate.gateway.auth import LOAD_TIMEOUT_SECONDS, key_digest, read_secret_async
from trackgate.gateway.errors import Forbidden, Unauthorized, Unavailable

PREFIX = "tt_"
ADMIN = "admin"
USER = "user"
HEADER = "x-api-key"
CACHE_SECONDS = 5.0
CACHE_ENTRIES = 1024


def new_api_key() -> str:
    """``tt_`` + 43 URL-safe characters (256 random bits)."""
    return PREFIX + secrets.token_urlsafe(32)


INSERT_KEY = (
    "INSERT INTO api_keys (id, role, account_id, email, key_hash, key_encrypted, label)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING created_at"
)
"""One key row: by ``trackgate admin create-key`` and by ``POST /api/v1/users``."""


class Principal(msgspec.Struct, frozen=True):
    """Who a key belongs to: its id, role, and (for ``user`` keys, issue 12) account."""

    key_id: str
    role: str
    account_id: str | None = None


class ApiKeys:
    def __init__(self, database_url: str, pepper: str | None = None) -> None:
        self._database_url = database_url
        self._pepper = pepper
        self._secret: bytes | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    async def lookup(self, key: str) -> Principal | None:
        """The key's owner, or None for an unknown or revoked key; ``Unavailable`` (503) when
        PostgreSQL does not answer."""
        if not key.startswith(PREFIX):
            return None
        async with self._session() as conn:
            if self._secret is None:
                self._secret = await read_secret_async(conn, self._pepper)
            digest = key_digest(key, self._secret)
            now = time.monotonic()
            cached = self._cache.get(digest)
            if cached is not None and cached[0] > now:
                return cached[1]
            cur = await conn.execute(
                "SELECT id, role, account_id FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
                (digest,),
            )
            found = await cur.fetchone()
            principal = Principal(found[0], found[1], found[2]) if found else None
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[digest] = (now + CACHE_SECONDS, principal)
            return principal

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """The checker's connection, one caller at a time, within ``LOAD_TIMEOUT_SECONDS``; a failure
        drops it (the next call connects again) and is ``Unavailable``."""
        try:
            async with self._lock, asyncio.timeout(LOAD_TIMEOUT_SECONDS):
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._database_url, autocommit=True, connect_timeout=LOAD_TIMEOUT_SECONDS
                    )
                yield self._conn
        except (psycopg.Error, OSError, TimeoutError) as exc:
            if self._conn is not None:
                await self._conn.close()
            self._conn = None
            raise Unavailable("PostgreSQL did not answer; retry") from exc

    def forget(self) -> None:
        """Drop every cached answer (keys were revoked or deleted: here, or announced by another process)."""
        self._cache.clear()

    async def active(self, key_id: str) -> bool:
        """Whether the key ``key_id`` still works (not revoked, not deleted): an open debugger stream
        asks every few seconds. ``Unavailable`` when PostgreSQL does not answer."""
        async with self._session() as conn:
            cur = await conn.execute("SELECT 1 FROM api_keys WHERE id = %s AND revoked_at IS NULL", (key_id,))
            return await cur.fetchone() is not None

    async def require(self, key: str | None, role: str = ADMIN) -> Principal:
        """The owner of ``key`` if it has ``role``; else ``Unauthorized`` (no key, unknown key) or
        ``Forbidden`` (a valid key without the role)."""
        if not key:
            raise Unauthorized("send an API key in the X-API-KEY header", code="missing_api_key")
        principal = await self.lookup(key)
        if principal is None:
            raise Unauthorized("the X-API-KEY is not a valid key", code="invalid_api_key")
        if role == ADMIN and principal.role != ADMIN:
            raise Forbidden("this needs an admin API key", code="admin_only")
        return principal

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
