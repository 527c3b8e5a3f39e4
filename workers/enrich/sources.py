"""The worker's copy of ``sources.settings`` by source id, re-read every few seconds.

The enrichment rules of a source (``excluded_ips``, ``content_groups``, ``ip_policy``) live in its
settings jsonb. A batch reads them from this cache; it is refreshed when older than ``refresh_seconds``
(``TRACKGATE_SOURCE_REFRESH_SECONDS``), or at once (at most once a second) when a batch names a source it
does not know yet.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import psycopg

EMPTY: dict = {}


class SourceSettings:
    def __init__(self, refresh_seconds: float = 2.0, clock=time.monotonic):
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._settings: dict[str, dict] = {}
        self._loaded_at: float | None = None

    def load(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            rows = conn.execute("SELECT id, settings FROM sources").fetchall()
        self._settings = {
            source_id: settings if isinstance(settings, dict) else {} for source_id, settings in rows
        }
        self._loaded_at = self._clock()

    def refresh(self, conn: psycopg.Connection, source_ids: Iterable[str]) -> None:
        """Re-read if stale, or if a source is unknown and the last read is more than a second old."""
        now = self._clock()
        if (
            self._loaded_at is None
            or now - self._loaded_at >= self.refresh_seconds
            or now - self._loaded_at >= 1.0
            and any(s not in self._settings for s in source_ids)
        ):
            self.load(conn)

    def get(self, source_id: str) -> dict:
        return self._settings.get(source_id, EMPTY)

    def known(self) -> list[str]:
        return list(self._settings)
