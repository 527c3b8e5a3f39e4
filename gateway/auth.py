"""Credentials to sources.

Keys are stored as keyed digests: HMAC-SHA256 under the installation's secret (``installation``
table, generated at migrate time), or under a secret derived from it and ``TRACKGATE_KEY_PEPPER``
when that is set, so a dump of the sources tables alone, or of the whole database when the pepper is
kept outside it, does not let anyone test guesses of a user-chosen key. Rows written before keep a
plain SHA-256 digest (``digest_kind = 'sha256'``): they still authenticate, and are rewritten as HMAC
after their first successful lookup.

A running gateway keeps every enabled source in memory, keyed by (dialect, digest), one table per
digest kind (a lookup is one or two dict lookups), and re-reads the tables when a change is announced
(``gateway/source_changes.py``: a new, disabled or re-keyed source takes effect at once) and every
``source_refresh_seconds`` as the fallback, so a request never waits on PostgreSQL. A lookup by digest
reveals nothing useful about a key through its timing (the attacker does not control the digest); a
key's digest is all that is ever held, and keys are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from typing import Any

import psycopg

from trackgate.gateway.errors import Unauthorized, Unavailable
from trackgate.schemas.request import Source

log = logging.getLogger(__name__)

LOAD_TIMEOUT_SECONDS = 5
HMAC = "hmac-sha256"
SHA256 = "sha256"
SECRET_QUERY = "SELECT key_secret FROM installation"


def new_key() -> str:
    """A generated key: 24 random bytes, URL-safe."""
    return secrets.token_urlsafe(24)


def digest_secret(installation_secret: bytes, pepper: str | None = None) -> bytes:
    """The HMAC key of key digests: the installation's secret, combined with ``pepper``
    (``TRACKGATE_KEY_PEPPER``) when there is one. Changing the pepper invalidates every HMAC digest:
    set it before the first source, or set every key again."""
    if not pepper:
        return bytes(installation_secret)
    return hmac.new(bytes(installation_secret), pepper.encode(), hashlib.sha256).digest()


def key_digest(key: str, secret: bytes) -> bytes:
    """What is stored of a key: HMAC-SHA256 of it under ``secret`` (:func:`digest_secret`)."""
    return hmac.new(secret, key.encode(), hashlib.sha256).digest()


def legacy_digest(key: str) -> bytes:
    """The plain SHA-256 digest rows written before migration 0011 hold."""
    return hashlib.sha256(key.encode()).digest()


def read_secret(conn: psycopg.Connection, pepper: str | None = None) -> bytes:
    """The digest secret, from the ``installation`` row migrations create."""
    row = conn.execute(SECRET_QUERY).fetchone()
    if row is None:
        raise RuntimeError("no installation secret: run `trackgate migrate`")
    return digest_secret(row[0], pepper)


async def read_secret_async(conn: psycopg.AsyncConnection, pepper: str | None = None) -> bytes:
    """``read_secret`` on the gateway's async connections (its source cache, its API key check)."""
    cur = await conn.execute(SECRET_QUERY)
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("no installation secret: run `trackgate migrate`")
    return digest_secret(row[0], pepper)


DIGESTS_KEPT = 10_000
"""Most key digests a gateway process remembers (keys that matched a source)."""


class SourceCache:
    def __init__(self, database_url: str, refresh_seconds: float, pepper: str | None = None):
        self._database_url = database_url
        self._refresh_seconds = refresh_seconds
        self._pepper = pepper
        self._secret: bytes | None = None
        self._by_key: dict[tuple[str, bytes], Source] = {}
        self._by_extra: dict[tuple[str, str, bytes], Source] = {}
        # rows still holding a plain SHA-256 digest, by that digest
        self._legacy_key: dict[tuple[str, bytes], Source] = {}
        self._legacy_extra: dict[tuple[str, str, bytes], Source] = {}
        # (source id, kind or None, legacy digest, HMAC digest) to rewrite at the next refresh
        self._upgrades: dict[tuple[str, str | None], tuple[bytes, bytes]] = {}
        self._digests: dict[str, tuple[bytes, bytes]] = {}
        """key -> (secret, its digest), for keys that matched a source: an HMAC per request was ~2% of
        the accept path (py-spy, issue 14). Bounded, and never holding a key that matched nothing."""
        self._loaded = False
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()  # the periodic refresh and an announced change may overlap

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def load(self) -> int:
        """Read every enabled source (and rewrite the legacy digests used since the last load);
        returns how many sources."""
        async with self._lock:
            return await self._load()

    async def _load(self) -> int:
        async with asyncio.timeout(LOAD_TIMEOUT_SECONDS):
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._database_url, autocommit=True, connect_timeout=LOAD_TIMEOUT_SECONDS
                )
            if self._secret is None:
                self._secret = await read_secret_async(self._conn, self._pepper)
            await self._upgrade(self._conn)
            cur = await self._conn.execute(
                "SELECT id, dialect, name, key_hash, settings, digest_kind FROM sources WHERE enabled"
            )
            rows = await cur.fetchall()
            cur = await self._conn.execute(
                "SELECT k.dialect, k.kind, k.key_hash, s.id, k.digest_kind FROM source_keys k"
                " JOIN sources s ON s.id = k.source_id WHERE s.enabled"
            )
            extra_rows = await cur.fetchall()
        table: dict[tuple[str, bytes], Source] = {}
        legacy: dict[tuple[str, bytes], Source] = {}
        by_id: dict[str, Source] = {}
        for source_id, dialect, name, key_hash, settings, kind in rows:
            source = Source(id=source_id, dialect=dialect, name=name, settings=settings or {})
            (legacy if kind == SHA256 else table)[(dialect, bytes(key_hash))] = source
            by_id[source_id] = source
        extra: dict[tuple[str, str, bytes], Source] = {}
        legacy_extra: dict[tuple[str, str, bytes], Source] = {}
        for dialect, kind, key_hash, source_id, digest_kind in extra_rows:
            if source_id in by_id:
                target = legacy_extra if digest_kind == SHA256 else extra
                target[(dialect, kind, bytes(key_hash))] = by_id[source_id]
        self._by_key, self._legacy_key = table, legacy
        self._by_extra, self._legacy_extra = extra, legacy_extra
        self._loaded = True
        return len(by_id)

    async def _upgrade(self, conn: psycopg.AsyncConnection) -> None:
        """Rewrite as HMAC the legacy digests that authenticated a request since the last load (only
        if the row still holds that digest: a key set meanwhile wins)."""
        upgrades, self._upgrades = self._upgrades, {}
        for (source_id, kind), (old, new) in upgrades.items():
            if kind is None:
                await conn.execute(
                    "UPDATE sources SET key_hash = %s, digest_kind = %s"
                    " WHERE id = %s AND key_hash = %s AND digest_kind = %s",
                    (new, HMAC, source_id, old, SHA256),
                )
            else:
                await conn.execute(
                    "UPDATE source_keys SET key_hash = %s, digest_kind = %s"
                    " WHERE source_id = %s AND kind = %s AND key_hash = %s AND digest_kind = %s",
                    (new, HMAC, source_id, kind, old, SHA256),
                )
        if upgrades:
            log.info("key_digests_upgraded n=%d", len(upgrades))

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

    def _ready(self) -> bytes:
        """Every lookup refuses with a retryable 503 until the first load: an unknown key before then
        may be a key that exists."""
        if not self._loaded or self._secret is None:
            raise Unavailable("sources are not loaded yet; retry")
        return self._secret

    def _find(
        self, table: dict[Any, Source], legacy: dict[Any, Source], prefix: tuple, key: str
    ) -> Source | None:
        secret = self._ready()
        hit = self._digests.get(key)
        digest = hit[1] if hit is not None and hit[0] is secret else key_digest(key, secret)
        found = table.get((*prefix, digest))
        if found is not None and hit is None and len(self._digests) < DIGESTS_KEPT:
            self._digests[key] = (secret, digest)
        if found is None and legacy:
            old = legacy_digest(key)
            found = legacy.get((*prefix, old))
            if found is not None:
                kind = prefix[1] if len(prefix) > 1 else None
                self._upgrades[(found.id, kind)] = (old, digest)
        return found

    def authenticate(self, dialect: str, key: str | None) -> Source:
        self._ready()
        if not key:
            raise Unauthorized("no credentials", code="missing_credentials")
        found = self._find(self._by_key, self._legacy_key, (dialect,), key)
        if found is None:
            raise Unauthorized("invalid credentials", code="invalid_credentials")
        return found

    def known(self) -> list[Source]:
        """Every enabled source loaded, by dialect and name (the debugger's source filter)."""
        unique = {source.id: source for source in (*self._by_key.values(), *self._legacy_key.values())}
        return sorted(unique.values(), key=lambda source: (source.dialect, source.name))

    def by_key(self, dialect: str, key: str) -> Source | None:
        return self._find(self._by_key, self._legacy_key, (dialect,), key)

    def by_extra_key(self, dialect: str, kind: str, key: str) -> Source | None:
        """The source that has ``key`` as its key of ``kind`` (``source_keys``)."""
        return self._find(self._by_extra, self._legacy_extra, (dialect, kind), key)

    def replace(
        self,
        sources: dict[tuple[str, str], Source],
        extra: dict[tuple[str, str, str], Source] | None = None,
    ) -> None:
        """Set the tables directly from (dialect, key) and (dialect, kind, key) (for embedding and tests)."""
        if self._secret is None:
            self._secret = secrets.token_bytes(32)
        secret = self._secret
        self._by_key = {(d, key_digest(k, secret)): s for (d, k), s in sources.items()}
        self._by_extra = {(d, kind, key_digest(k, secret)): s for (d, kind, k), s in (extra or {}).items()}
        self._legacy_key, self._legacy_extra = {}, {}
        self._loaded = True
