"""Running the chain in a worker: per-process state (source settings, salts, geo database) and one call
per batch, :func:`enrich_batch`, made by ``workers.jobs.persist_batch`` before it stores the batch."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import psycopg

from trackgate.schemas.event import Event
from trackgate.schemas.settings import Settings
from trackgate.workers.enrich import Env, enrich_events, memo, visitor
from trackgate.workers.enrich.geo import GeoDatabase
from trackgate.workers.enrich.salts import SaltCache
from trackgate.workers.enrich.sources import SourceSettings

log = logging.getLogger(__name__)

LATE_IDS_SQL = (
    "SELECT DISTINCT visitor_id FROM events"
    ' WHERE source_id = ANY(%s) AND "timestamp" >= %s AND "timestamp" < %s'
    " AND received_at >= %s AND received_at < %s AND visitor_id IS NOT NULL"
)


class Enricher:
    """What one worker process keeps between batches."""

    def __init__(self, settings: Settings):
        self.key = (settings.database_url, settings.geoip_db)
        self.sources = SourceSettings(settings.source_refresh_seconds)
        self.salts = SaltCache()
        self.geo = GeoDatabase(settings.geoip_db) if settings.geoip_db else None
        self._late: dict[date, set[str]] = {}
        """Visitor ids this process gave to events in the last 30 minutes of a day, by day."""
        self._late_loaded: set[date] = set()

    def run(self, conn: psycopg.Connection, events: list[Event], now: datetime) -> None:
        if not events:
            return
        self.sources.refresh(conn, {e.source_id for e in events})
        salts = self.salts.get(conn, now.astimezone(UTC).date())
        in_grace, in_late = visitor.at_midnight(events)
        env = Env(
            salts=salts,
            late_ids=self.late_ids(conn, in_grace, salts) if in_grace else frozenset(),
            settings=self.sources,
            geo=self.geo,
        )
        enrich_events(events, env)
        self._remember_late(in_late)

    def late_ids(self, conn: psycopg.Connection, in_grace: list[Event], salts) -> set[str]:
        """Yesterday's late ids, for a batch's events in a day's first 30 minutes (``in_grace``): those
        this process gave, plus (read once a day) those other workers stored."""
        days = {visitor.salt_day(e.received_at, salts) - timedelta(days=1) for e in in_grace}
        ids: set[str] = set()
        for day in days:
            if day not in self._late_loaded:
                self._late.setdefault(day, set()).update(self._load_late(conn, day))
                self._late_loaded.add(day)
            ids |= self._late.get(day, set())
        return ids

    def _load_late(self, conn: psycopg.Connection, day: date) -> set[str]:
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        start = midnight - visitor.GRACE
        source_ids = list(self.sources.known())
        with conn.transaction():
            rows = conn.execute(
                LATE_IDS_SQL,
                (source_ids, start - timedelta(hours=1), midnight + timedelta(hours=1), start, midnight),
            ).fetchall()
        return {row[0] for row in rows if row[0]}

    def _remember_late(self, in_late: list[Event]) -> None:
        """Keep the visitor ids given to ``in_late``, a batch's events in a day's last 30 minutes."""
        for event in in_late:
            vid = event.enrichment.get("visitor_id")
            if vid:
                self._late.setdefault(event.received_at.astimezone(UTC).date(), set()).add(vid)
        if len(self._late) > 2:
            for day in sorted(self._late)[:-2]:
                del self._late[day]
                self._late_loaded.discard(day)

    def close(self) -> None:
        if self.geo is not None:
            memo.place.cache_clear()  # its entries name the database
            memo.forget()
            self.geo.close()


_current: Enricher | None = None


def enrich_batch(
    conn: psycopg.Connection, events: list[Event], settings: Settings, now: datetime | None = None
) -> None:
    """Enrich a batch's events in place, with this process's Enricher (built on first use)."""
    global _current
    if _current is None or _current.key != (settings.database_url, settings.geoip_db):
        if _current is not None:
            _current.close()
        _current = Enricher(settings)
    _current.run(conn, events, now or datetime.now(UTC))
