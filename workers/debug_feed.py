"""Writing the live debug feed after the store commit (``schemas/debug_feed.py`` is the contract).

``pipeline.persist`` knows what a batch stored for the first time, what was a duplicate and what was
quarantined; it hands that here. Nothing is written unless a reader watches, which is checked at
most once a second per process (one ``EXISTS``). A feed that cannot be written is skipped: it never
fails or slows a job beyond one Redis round trip.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import msgspec
import redis

from trackgate.schemas import debug_feed
from trackgate.schemas.debug_feed import Seen
from trackgate.schemas.jobs import PersistBatch
from trackgate.workers import storable
from trackgate.workers.store import RefusedEvent

log = logging.getLogger(__name__)


class Watch:
    """Whether a reader watches, asked of Redis at most once every ``WATCH_CHECK_SECONDS``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._checked = float("-inf")
        self._watched = False

    def forget(self) -> None:
        """Ask Redis again next time (a test that starts or stops watching)."""
        self._checked = float("-inf")

    def watched(self, connection: redis.Redis) -> bool:
        now = self._clock()
        if now - self._checked >= debug_feed.WATCH_CHECK_SECONDS:
            self._checked = now
            try:
                self._watched = bool(connection.exists(debug_feed.WATCHERS))
            except redis.RedisError:
                self._watched = False
        return self._watched


WATCH = Watch()


def seen_in_batch(
    batch: PersistBatch, stored: Iterable[str], refused: list[RefusedEvent], at: datetime
) -> list[Seen]:
    """The feed lines of one persisted batch: each event stored, duplicate or quarantined (in the
    batch's order), then the items the gateway could not accept (quarantined)."""
    new = set(stored)
    quarantined = {r.event.id: r for r in refused}
    lines: list[Seen] = []
    for event in batch.events:
        gone = quarantined.get(event.id)
        if gone is not None:
            lines.append(debug_feed.from_event("quarantined", event, at, gone.code, gone.reason))
        else:
            lines.append(debug_feed.from_event("stored" if event.id in new else "duplicate", event, at))
    for item in batch.refused:
        raw, truncated = debug_feed.cut(item.raw)
        lines.append(
            Seen(
                kind="quarantined",
                at=at,
                source_id=item.source_id,
                dialect=item.dialect,
                raw=raw,
                raw_truncated=truncated,
                code=item.code,
                reason=item.reason,
            )
        )
    return lines


def publish(
    connection: redis.Redis, batch: PersistBatch, stored: Iterable[str], refused: list[RefusedEvent]
) -> int:
    """Add the batch's lines to the feed when a reader watches; returns how many were added."""
    if not WATCH.watched(connection):
        return 0
    # the stream keeps about STREAM_MAXLEN lines: a larger batch's first ones would be trimmed at once
    lines = seen_in_batch(batch, stored, refused, datetime.now(UTC))[-debug_feed.STREAM_MAXLEN :]
    added = 0
    try:
        with connection.pipeline(transaction=False) as pipe:
            for line in lines:
                try:
                    data = debug_feed.encode(line)
                except UnicodeEncodeError:  # a lone surrogate (the store made it storable): shown replaced
                    data = storable.text(json.dumps(msgspec.to_builtins(line), ensure_ascii=False)).encode()
                pipe.xadd(debug_feed.STREAM, {"d": data}, maxlen=debug_feed.STREAM_MAXLEN, approximate=True)
                added += 1
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("debug_feed_skipped batch_id=%s error=%s", batch.batch_id, exc)
        return 0
    return added
