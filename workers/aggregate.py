"""The daily report aggregates: rebuild a closed day (and every day a late event made dirty), and mark
late events' days dirty from the store path.

- :func:`aggregate` is the RQ job (``trackgate.workers.aggregate.aggregate``, by dotted path): it
  rebuilds ``day`` (default yesterday, UTC) for one source or all, then every dirty closed day. Each
  (source, day) is one transaction (``schemas.aggregates.rebuild_statements``: DELETE + INSERT ...
  SELECT), so a re-run gives the same rows.
- :func:`schedule_daily` is called after each persist job: the first one after midnight UTC in any
  worker (one atomic script in Redis per process per day decides which) enqueues :func:`aggregate`
  for the day that just closed.
- :func:`mark_late` runs inside the store's transaction: events whose day is already closed mark
  their (source, day) dirty, with one small INSERT, only when there are such events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import msgspec
import psycopg
from psycopg.types.json import Json
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from trackgate.schemas import aggregates
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PERSIST_QUEUE, MsgspecJSONSerializer

log = logging.getLogger(__name__)

AGGREGATE_FUNC = "trackgate.workers.aggregate.aggregate"
LAST_SCHEDULED_KEY = "trackgate:aggregate:last-day"
CATCH_UP_DAYS = 7
JOB_TIMEOUT_SECONDS = 3600

_encode = msgspec.json.encode
_checked_day: date | None = None
"""The UTC day this process last checked the schedule for (one Redis round trip per day)."""


def utc_today() -> date:
    return datetime.now(UTC).date()


def rebuild_day(conn: psycopg.Connection, source_id: str, day: date) -> None:
    """Rebuild one source's aggregates of ``day`` in one transaction."""
    with conn.transaction():
        for sql, params in aggregates.rebuild_statements(source_id, day):
            conn.execute(sql, params)


def aggregate_day(conn: psycopg.Connection, day: date, source_id: str | None = None) -> int:
    """Rebuild ``day`` for ``source_id`` (or every source); returns how many sources it rebuilt."""
    if source_id is None:
        with conn.transaction():
            ids = [row[0] for row in conn.execute(aggregates.SOURCES_SQL).fetchall()]
    else:
        ids = [source_id]
    for sid in ids:
        rebuild_day(conn, sid, day)
    return len(ids)


def aggregate_dirty(conn: psycopg.Connection) -> int:
    """Rebuild every (source, closed day) a late event marked dirty; returns how many."""
    with conn.transaction():
        dirty = conn.execute(aggregates.DIRTY_SQL).fetchall()
    for source_id, day in dirty:
        rebuild_day(conn, source_id, day)
    return len(dirty)


def aggregate(day: str | None = None, source_id: str | None = None, database_url: str | None = None) -> dict:
    """The RQ job: rebuild ``day`` (``YYYY-MM-DD``, default yesterday UTC) for one source or all, then
    the dirty days. ``database_url`` defaults to the worker's (``TRACKGATE_DATABASE_URL``)."""
    target = date.fromisoformat(day) if day else utc_today() - timedelta(days=1)
    if database_url is None:
        from trackgate.workers import runtime

        with runtime.current().pool.connection() as conn:
            return _run(conn, target, source_id)
    with psycopg.connect(database_url, autocommit=True) as conn:
        return _run(conn, target, source_id)


def _run(conn: psycopg.Connection, day: date, source_id: str | None) -> dict:
    n_sources = aggregate_day(conn, day, source_id)
    n_dirty = aggregate_dirty(conn)
    log.info("aggregated day=%s n_sources=%d n_dirty=%d", day, n_sources, n_dirty)
    return {"day": day.isoformat(), "n_sources": n_sources, "n_dirty": n_dirty}


def mark_late(conn: psycopg.Connection, events: Iterable[Event], today: date | None = None) -> int:
    """Inside the store's transaction: mark the (source, day) of every event whose UTC day is before
    ``today`` dirty. No statement when there is none (the common case)."""
    today = today or utc_today()
    late: set[tuple[str, str]] = set()
    for event in events:
        ts = event.timestamp
        day = (ts if ts.tzinfo is UTC else ts.astimezone(UTC)).date()
        if day < today:
            late.add((event.source_id, day.isoformat()))
    if not late:
        return 0
    pairs = sorted(late)
    conn.execute(
        aggregates.LATE_SQL, (Json([p[0] for p in pairs], _encode), Json([p[1] for p in pairs], _encode))
    )
    return len(pairs)


_ADVANCE = """
local last = redis.call('GET', KEYS[1])
if last and last >= ARGV[1] then return false end
redis.call('SET', KEYS[1], ARGV[1])
return last or ''
"""
"""Move the last closed day scheduled (ISO text, which sorts as dates do) on to ARGV[1]: returns the
previous one when this call moved it ('' when there was none), nil when some worker already had."""


def schedule_daily(redis: Redis, today: date | None = None) -> list[str]:
    """Once per UTC day per process: when the day that just closed is later than the last one any worker
    scheduled (``LAST_SCHEDULED_KEY`` in Redis, moved on atomically), enqueue :func:`aggregate` for it and
    for each day skipped since (at most ``CATCH_UP_DAYS``). The first worker of an installation (no key
    yet) only records the day: there is nothing to catch up, and reports read unaggregated days raw.
    Returns the days this call enqueued."""
    global _checked_day
    today = today or utc_today()
    if _checked_day == today:
        return []
    yesterday = today - timedelta(days=1)
    try:
        previous = redis.eval(_ADVANCE, 1, LAST_SCHEDULED_KEY, yesterday.isoformat())
        days: list[str] = []
        if previous:
            last = date.fromisoformat(previous.decode() if isinstance(previous, bytes) else previous)
            first = max(last + timedelta(days=1), yesterday - timedelta(days=CATCH_UP_DAYS - 1))
            days = [(first + timedelta(days=i)).isoformat() for i in range((yesterday - first).days + 1)]
        queue = Queue(PERSIST_QUEUE, connection=redis, serializer=MsgspecJSONSerializer)
        for day in days:
            queue.enqueue(AGGREGATE_FUNC, day, job_timeout=JOB_TIMEOUT_SECONDS, result_ttl=86400)
    except (RedisError, OSError) as exc:  # the events are stored; the next job tries again
        log.warning("aggregate_schedule_failed day=%s error=%s", yesterday, exc)
        return []
    _checked_day = today
    if days:
        log.info("aggregate_scheduled days=%s", ",".join(days))
    return days
