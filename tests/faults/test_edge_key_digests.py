"""Stored source keys (issue 11 item 11). Before: plain SHA-256, so a user-chosen key could be found
from a database dump by hashing guesses. Now HMAC-SHA256 under the installation's secret; rows
written before still authenticate and are rewritten as HMAC after their first use."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest

from tests.helpers import id_of
from trackgate.gateway.auth import HMAC, SHA256, SourceCache, digest_secret, key_digest, legacy_digest
from trackgate.sources import add_source, set_key, stored_digest


def installation_secret(db) -> bytes:
    (secret,) = db.execute("SELECT key_secret FROM installation").fetchone()
    return bytes(secret)


def test_migrate_makes_one_random_installation_secret(db):
    rows = db.execute("SELECT key_secret FROM installation").fetchall()
    assert len(rows) == 1 and len(bytes(rows[0][0])) == 32


def test_a_dump_holds_hmac_digests_not_sha256(settings, db):
    add_source(settings.database_url, "segment", "web", "guessable-key", extra_keys={"secret": "s3cret"})
    set_key(settings.database_url, db.execute("SELECT id FROM sources").fetchone()[0], "other", kind="extra")
    dump = db.execute("SELECT key_hash, digest_kind FROM sources").fetchall()
    dump += db.execute("SELECT key_hash, digest_kind FROM source_keys").fetchall()
    keys = ["guessable-key", "s3cret", "other"]
    assert {bytes(h) for h, _ in dump}.isdisjoint(hashlib.sha256(k.encode()).digest() for k in keys)
    secret = installation_secret(db)
    assert sorted(bytes(h) for h, _ in dump) == sorted(
        hmac.new(secret, k.encode(), hashlib.sha256).digest() for k in keys
    )
    assert {kind for _, kind in dump} == {HMAC}


LEGACY_SOURCE = (
    "INSERT INTO sources (id, dialect, name, key_hash, settings) VALUES ('src_old', %s, 'old', %s, '{}')"
)
LEGACY_KEY = "INSERT INTO source_keys (source_id, dialect, kind, key_hash) VALUES ('src_old', %s, %s, %s)"
"""How rows written before migration 0011 look (it gives them ``digest_kind = 'sha256'``)."""


def _cache(settings, pepper: str | None = None) -> SourceCache:
    return SourceCache(settings.database_url, 60, pepper)


def test_legacy_sha256_rows_still_authenticate_and_are_upgraded(settings, db):
    db.execute(LEGACY_SOURCE, ("openpanel", legacy_digest("old-client-id")))
    db.execute(LEGACY_KEY, ("openpanel", "secret", legacy_digest("old-secret")))
    assert (
        db.execute("SELECT digest_kind FROM sources").fetchone()[0] == SHA256
    )  # as migration 0011 leaves them

    async def scenario() -> None:
        cache = _cache(settings)
        try:
            await cache.load()
            assert cache.authenticate("openpanel", "old-client-id").id == "src_old"
            assert id_of(cache.by_extra_key("openpanel", "secret", "old-secret")) == "src_old"
            assert cache.by_key("openpanel", "not-the-key") is None
            await cache.load()  # the next refresh rewrites what was used
            assert cache.authenticate("openpanel", "old-client-id").id == "src_old"
            assert id_of(cache.by_extra_key("openpanel", "secret", "old-secret")) == "src_old"
        finally:
            await cache.close()

    asyncio.run(scenario())
    secret = installation_secret(db)
    assert db.execute("SELECT key_hash, digest_kind FROM sources").fetchone() == (
        key_digest("old-client-id", secret),
        HMAC,
    )
    assert db.execute("SELECT key_hash, digest_kind FROM source_keys").fetchone() == (
        key_digest("old-secret", secret),
        HMAC,
    )


def test_a_key_set_meanwhile_is_not_overwritten_by_the_upgrade(settings, db):
    db.execute(LEGACY_SOURCE, ("segment", legacy_digest("old-key")))

    async def scenario() -> None:
        cache = _cache(settings)
        try:
            await cache.load()
            cache.authenticate("segment", "old-key")
            set_key(settings.database_url, "src_old", "new-key")
            await cache.load()
            assert cache.by_key("segment", "old-key") is None
            assert cache.authenticate("segment", "new-key").id == "src_old"
        finally:
            await cache.close()

    asyncio.run(scenario())
    assert bytes(db.execute("SELECT key_hash FROM sources").fetchone()[0]) == stored_digest(
        settings.database_url, "new-key"
    )


def test_a_pepper_outside_the_database_changes_every_digest(settings, db, monkeypatch):
    monkeypatch.setenv("TRACKGATE_KEY_PEPPER", "kept-in-the-vault")
    add_source(settings.database_url, "segment", "web", "peppered-key")
    (stored,) = db.execute("SELECT key_hash FROM sources").fetchone()
    secret = installation_secret(db)
    assert bytes(stored) != key_digest("peppered-key", secret)  # the dump and its secret are not enough
    assert bytes(stored) == key_digest("peppered-key", digest_secret(secret, "kept-in-the-vault"))

    async def scenario() -> None:
        with_pepper, without = _cache(settings, "kept-in-the-vault"), _cache(settings)
        try:
            await with_pepper.load()
            await without.load()
            assert with_pepper.by_key("segment", "peppered-key") is not None
            assert without.by_key("segment", "peppered-key") is None
        finally:
            await with_pepper.close()
            await without.close()

    asyncio.run(scenario())


def test_before_the_first_load_every_lookup_is_503(settings):
    from trackgate.gateway.errors import Unavailable

    with pytest.raises(Unavailable):
        _cache(settings).by_key("segment", "k")
