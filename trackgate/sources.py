"""Managing sources in PostgreSQL (used by the CLI and by ``up``), and announcing each change to the
running gateways so that it takes effect at once (:func:`announce_change`).

Keys are stored as HMAC-SHA256 digests (``gateway/auth.py``) under the installation's secret, with
``TRACKGATE_KEY_PEPPER`` mixed in when it is set: read here from the environment, as every process of
an installation (CLI, gateways) must use the same one, whichever command writes the key.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg.types.json import Jsonb

from trackgate.gateway import source_changes, tinytrail
from trackgate.gateway.auth import HMAC, key_digest, new_key, read_secret
from trackgate.schemas.request import Source

MIN_KEY_LENGTH = 16
"""A key chosen by hand must be at least this long (generated ones are 24+ random characters)."""
ANNOUNCE_TIMEOUT_SECONDS = 3.0


class SourceExists(Exception):
    pass


class SourceNotFound(ValueError):
    pass


def check_key_length(key: str) -> None:
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(
            f"a key must be at least {MIN_KEY_LENGTH} characters (it authenticates every request):"
            " leave --key out to get a generated one"
        )


def announce_change(redis_url: str | None) -> tuple[int, int]:
    """Tell every running gateway that the sources changed, and wait (``ANNOUNCE_TIMEOUT_SECONDS`` at
    most) until each has reloaded them: the gateway's own :func:`source_changes.announce`, run here
    on a client of its own. Returns (gateways that heard, gateways that confirmed); (0, 0) without
    Redis: the gateways' periodic refresh catches up."""
    if not redis_url:
        return 0, 0

    async def run() -> tuple[int, int]:
        timeout = ANNOUNCE_TIMEOUT_SECONDS
        client = aioredis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return await source_changes.announce(client, ANNOUNCE_TIMEOUT_SECONDS)
        finally:
            await client.aclose()

    return asyncio.run(run())


def resolve_source(conn: psycopg.Connection, ref: str) -> tuple[str, str, str]:
    """(id, dialect, name) of the source whose id, name or website id (the TinyTrail API's UUID, in
    any case) is ``ref``."""
    try:
        website_id: str | None = str(uuid.UUID(ref))
    except ValueError:
        website_id = None
    rows = conn.execute(
        "SELECT id, dialect, name FROM sources WHERE id = %s OR name = %s OR website_id = %s::uuid"
        " ORDER BY id",
        (ref, ref, website_id),
    ).fetchall()
    if not rows:
        raise SourceNotFound(f"no source {ref!r} (see `trackgate sources list`)")
    if len(rows) > 1:
        raise SourceNotFound(
            f"{len(rows)} sources are named {ref!r}: use the id ({', '.join(r[0] for r in rows)})"
        )
    return rows[0][0], rows[0][1], rows[0][2]


def set_enabled(database_url: str, ref: str, enabled: bool) -> str:
    with psycopg.connect(database_url) as conn:
        source_id, _, _ = resolve_source(conn, ref)
        conn.execute(
            "UPDATE sources SET enabled = %s, updated_at = now() WHERE id = %s", (enabled, source_id)
        )
    return source_id


def remove_source(database_url: str, ref: str) -> str:
    """Delete a source and its keys; its stored events stay (they keep its id)."""
    with psycopg.connect(database_url) as conn:
        source_id, _, _ = resolve_source(conn, ref)
        conn.execute("DELETE FROM sources WHERE id = %s", (source_id,))  # source_keys cascade
    return source_id


def show_source(database_url: str, ref: str) -> dict[str, Any]:
    """A source's row (never its keys: only digests are stored; ``website_id`` is what the TinyTrail
    API and its reports call it), the kinds of its further keys and how many events it has stored."""
    with psycopg.connect(database_url) as conn:
        source_id, _, _ = resolve_source(conn, ref)
        row = conn.execute(
            "SELECT id, dialect, name, enabled, workspace, settings, created_at, updated_at, website_id::text"
            " FROM sources WHERE id = %s",
            (source_id,),
        ).fetchone()
        assert row is not None
        kinds = [
            r[0]
            for r in conn.execute(
                "SELECT kind FROM source_keys WHERE source_id = %s ORDER BY kind", (source_id,)
            ).fetchall()
        ]
        n_events, last = conn.execute(
            "SELECT count(*), max(received_at) FROM events WHERE source_id = %s", (source_id,)
        ).fetchone() or (0, None)
    names = (
        "id",
        "dialect",
        "name",
        "enabled",
        "workspace",
        "settings",
        "created_at",
        "updated_at",
        "website_id",
    )
    shown: dict[str, Any] = dict(zip(names, row, strict=True))
    shown["created_at"] = row[6].isoformat()
    shown["updated_at"] = row[7].isoformat() if row[7] else None
    shown["other_keys"] = kinds
    shown["events"] = n_events
    shown["last_event_at"] = last.isoformat() if last else None
    return shown


def _secret(conn: psycopg.Connection) -> bytes:
    return read_secret(conn, os.environ.get("TRACKGATE_KEY_PEPPER") or None)


def stored_digest(database_url: str, key: str) -> bytes:
    """What this installation stores of ``key``."""
    with psycopg.connect(database_url) as conn:
        return key_digest(key, _secret(conn))


def add_source(
    database_url: str,
    dialect: str,
    name: str,
    key: str | None = None,
    settings: dict | None = None,
    extra_keys: dict[str, str] | None = None,
    workspace: str = "default",
) -> tuple[Source, str]:
    """Create a source; returns it with its key (the only time the key is seen in clear).
    ``extra_keys`` (kind -> key) are further keys the dialect authenticates with (``source_keys``).
    ``workspace``: the sources whose users share profiles (a user id means one person across them)."""
    key = key or new_key()
    source = Source(id="src_" + secrets.token_hex(8), dialect=dialect, name=name, settings=settings or {})
    with psycopg.connect(database_url) as conn:
        secret = _secret(conn)
        ensure_account(conn, workspace)
        try:
            conn.execute(
                "INSERT INTO sources"
                " (id, dialect, name, key_hash, settings, workspace, digest_kind, website_id)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, coalesce(%s::uuid, gen_random_uuid()))",
                (
                    source.id,
                    dialect,
                    name,
                    key_digest(key, secret),
                    Jsonb(source.settings),
                    workspace,
                    HMAC,
                    _website_id(dialect, key),
                ),
            )
            for kind, extra in (extra_keys or {}).items():
                conn.execute(
                    "INSERT INTO source_keys (source_id, dialect, kind, key_hash, digest_kind)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (source.id, dialect, kind, key_digest(extra, secret), HMAC),
                )
        except psycopg.errors.UniqueViolation as exc:
            raise SourceExists(f"a {dialect} source with that name or key exists already") from exc
    return source, key


def _website_id(dialect: str, key: str) -> str | None:
    """A TinyTrail source's website id is its key (the UUID tracker.js sends); other dialects get a
    random one (``schemas/websites.py``)."""
    return tinytrail.website_id(key) if dialect == tinytrail.DIALECT else None


def ensure_account(conn: psycopg.Connection, workspace: str) -> None:
    """The account of ``workspace`` (an account is a workspace: ``schemas/websites.py``): a workspace
    named on the command line becomes an account named after it the first time."""
    conn.execute(
        "INSERT INTO accounts (id, name, workspace) VALUES (gen_random_uuid()::text, %s, %s)"
        " ON CONFLICT (workspace) DO NOTHING",
        (workspace, workspace),
    )


def list_sources(database_url: str) -> list[dict]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, dialect, name, enabled, created_at, workspace FROM sources ORDER BY created_at"
        ).fetchall()
    return [
        {
            "id": r[0],
            "dialect": r[1],
            "name": r[2],
            "enabled": r[3],
            "created_at": r[4].isoformat(),
            "workspace": r[5],
        }
        for r in rows
    ]


def find_source(database_url: str, dialect: str, name: str) -> Source | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT id, dialect, name, settings FROM sources WHERE dialect = %s AND name = %s",
            (dialect, name),
        ).fetchone()
    return Source(id=row[0], dialect=row[1], name=row[2], settings=row[3]) if row else None


def set_key(database_url: str, source_id: str, key: str, kind: str | None = None) -> None:
    """Replace a source's key, or its key of ``kind`` (the old one stops working once the gateways
    reload: at once after :func:`announce_change`, else within their refresh interval)."""
    with psycopg.connect(database_url) as conn:
        digest = key_digest(key, _secret(conn))
        if kind is None:
            row = conn.execute("SELECT dialect FROM sources WHERE id = %s", (source_id,)).fetchone()
            website_id = _website_id(row[0], key) if row else None
            conn.execute(
                "UPDATE sources SET key_hash = %s, digest_kind = %s, updated_at = now(),"
                " website_id = coalesce(%s::uuid, website_id) WHERE id = %s",
                (digest, HMAC, website_id, source_id),
            )
            return
        conn.execute(
            "INSERT INTO source_keys (source_id, dialect, kind, key_hash, digest_kind)"
            " SELECT id, dialect, %s, %s, %s FROM sources WHERE id = %s"
            " ON CONFLICT (source_id, kind) DO UPDATE SET key_hash = EXCLUDED.key_hash,"
            " digest_kind = EXCLUDED.digest_kind, created_at = now()",
            (kind, digest, HMAC, source_id),
        )
