"""Schema migrations: numbered SQL files in ``schemas/sql``, applied once each, in order.

A dozen lines of our own rather than alembic (which wants SQLAlchemy) or yoyo: the files are plain SQL,
each runs in its own transaction, and an advisory lock lets several processes call ``migrate`` at once.
"""

from __future__ import annotations

import logging
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_LOCK_ID = 0x7472_6B67  # "trkg"


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration shipped with the package, in order."""
    folder = resources.files("trackgate.schemas") / "sql"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text()) for name in names]


def migrate(database_url: str, before: str | None = None) -> list[str]:
    """Apply the migrations the database has not seen (those whose version sorts before ``before``
    only, when given: a test of a migration starts from the database the one before left); return
    their versions."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if before is not None and version >= before:
                    break
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log.info("migration_applied version=%s", version)
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied
