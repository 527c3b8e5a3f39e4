"""Managing sources in PostgreSQL (used by the CLI and by ``up``).

Keys are stored as HMAC-SHA256 digests (``gateway/auth.py``) under the installation's secret, with
``TRACKGATE_KEY_PEPPER`` mixed in when it is set: read here from the environment, as every process of
an installation (CLI, gateways) must use the same one, whichever command writes the key.
"""

from __future__ import annotations

import os
import secrets

import psycopg
from psycopg.types.json import Jsonb

from trackgate.gateway.auth import HMAC, key_digest, new_key, read_secret
from trackgate.schemas.request import Source


class SourceExists(Exception):
    pass


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
        try:
            conn.execute(
                "INSERT INTO sources (id, dialect, name, key_hash, settings, workspace, digest_kind)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (source.id, dialect, name, key_digest(key, secret), Jsonb(source.settings), workspace, HMAC),
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
    """Replace a source's key, or its key of ``kind`` (the old one stops working within the gateways'
    refresh interval)."""
    with psycopg.connect(database_url) as conn:
        digest = key_digest(key, _secret(conn))
        if kind is None:
            conn.execute(
                "UPDATE sources SET key_hash = %s, digest_kind = %s, updated_at = now() WHERE id = %s",
                (digest, HMAC, source_id),
            )
            return
        conn.execute(
            "INSERT INTO source_keys (source_id, dialect, kind, key_hash, digest_kind)"
            " SELECT id, dialect, %s, %s, %s FROM sources WHERE id = %s"
            " ON CONFLICT (source_id, kind) DO UPDATE SET key_hash = EXCLUDED.key_hash,"
            " digest_kind = EXCLUDED.digest_kind, created_at = now()",
            (kind, digest, HMAC, source_id),
        )
