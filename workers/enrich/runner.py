"""Running the chain in a worker: per-process state (source settings, salts, geo database). The
pipeline (``workers/pipeline.py``) prepares a batch before its store transaction (:func:`prepare_batch`:
the reads) and enriches each new event as the store writes its row (:class:`Prepared`);
:func:`enrich_batch` does it all at once (the bench's (e), tests)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg

from trackgate.schemas.event import Event
from trackgate.schemas.settings import Settings
from trackgate.workers.enrich import BatchEnricher, Env, memo, visitor
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
        self.prepare(conn, events, now).finish()  # finish enriches every event no row reached: all

    def prepare(self, conn: psycopg.Connection, events: list[Event], now: datetime) -> Prepared:
        """What the chain reads once for ``events`` (their sources' settings, the salts, the midnight
        carry), read now; the events are enriched later, one by one (:meth:`Prepared.rows`)."""
        self.sources.refresh(conn, {e.source_id for e in events})
        salts = self.salts.get(conn, now.astimezone(UTC).date())
        in_grace, in_late = visitor.at_midnight(events)
        env = Env(
            salts=salts,
            late_ids=self.late_ids(conn, in_grace, salts) if in_grace else frozenset(),
            settings=self.sources,
            geo=self.geo,
        )
        return Prepared(self, events, in_late, BatchEnricher(env))

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


class Prepared:
    """A batch's enrichment, its reads done (:meth:`Enricher.prepare`): each event is enriched once,
    when :meth:`rows` reaches it (the store's COPY loop, so that the chain's Python runs while
    PostgreSQL parses the rows already sent), and :meth:`finish` enriches what no row reached (events
    stored before, not written) and keeps the late visitor ids."""

    __slots__ = ("done", "enricher", "events", "in_late", "one")

    def __init__(self, enricher: Enricher, events: list[Event], in_late: list[Event], one: BatchEnricher):
        self.enricher = enricher
        self.events = events
        self.in_late = in_late
        self.one = one
        self.done: set[int] = set()  # id() of the events enriched (the batch holds them all meanwhile)

    def rows(self, events: Iterable[Event]) -> Iterator[Event]:
        """``events`` (of this batch), each enriched first unless it was already (a transaction run
        again after a conflict or a refused value passes its events through here again)."""
        done, one = self.done, self.one
        for event in events:
            key = id(event)
            if key not in done:
                one(event)
                done.add(key)  # after: an event whose enrichment raised is tried again, not skipped
            yield event

    def finish(self) -> None:
        for _ in self.rows(self.events):
            pass
        self.enricher._remember_late(self.in_late)


_current: Enricher | None = None


def enrich_batch(
    conn: psycopg.Connection, events: list[Event], settings: Settings, now: datetime | None = None
) -> None:
    """Enrich a batch's events in place, with this process's Enricher (built on first use)."""
    _enricher(settings).run(conn, events, now or datetime.now(UTC))


def prepare_batch(
    conn: psycopg.Connection, events: list[Event], settings: Settings, now: datetime | None = None
) -> Prepared:
    """:func:`enrich_batch` in parts: the reads now, each event as :meth:`Prepared.rows` reaches it
    (``workers/pipeline.py``: in the store's COPY), the rest at :meth:`Prepared.finish` (after the
    store returns)."""
    return _enricher(settings).prepare(conn, events, now or datetime.now(UTC))


def _enricher(settings: Settings) -> Enricher:
    """This process's Enricher (built on first use, again when the settings it reads change)."""
    global _current
    if _current is None or _current.key != (settings.database_url, settings.geoip_db):
        if _current is not None:
            _current.close()
        _current = Enricher(settings)
    return _current
