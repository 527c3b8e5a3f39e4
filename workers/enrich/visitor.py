"""Cookie-less visitor id: HMAC-SHA256(daily salt, IP + user agent + source), hex.

Enrichment key: ``visitor_id`` (64 hex characters); events without an IP get none.

Which salt:
- An event's day is the UTC date of its ``received_at`` (the gateway's clock), so the events of one
  day share one salt however late a worker stores them. Salts exist for today and yesterday only (by the
  worker's clock, see :mod:`salts`): an event older than yesterday uses yesterday's salt, one from a
  clock ahead uses today's.
- Visits survive midnight: an event received in the first ``GRACE`` (30 minutes, the usual session
  timeout) of its day keeps the id made with the previous day's salt when that id was given to an event
  of the last ``GRACE`` of the previous day (``env.late_ids``). Otherwise it gets its own day's id, so
  a visitor is never linked across more than two consecutive days, and salts older than yesterday are
  deleted: nobody can recompute an older id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC as _UTC
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from trackgate.schemas.event import Event
from trackgate.workers.enrich.client_ip import normalized

GRACE = timedelta(minutes=30)


@lru_cache(maxsize=8)
def _pads(salt: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256's inner and outer hash states for a salt (RFC 2104), computed once per salt: an
    ``hmac`` call sets them up again each time, which costs ~10 µs with OpenSSL 3; a copy ~1 µs."""
    key = salt if len(salt) <= 64 else hashlib.sha256(salt).digest()
    key = key.ljust(64, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key))


def visitor_hash(salt: bytes, ip: str, user_agent: str, source_id: str) -> str:
    """HMAC-SHA256(salt, "ip\nuser agent\nsource id"), hex (equal to ``hmac.new(...).hexdigest()``)."""
    return _keyed(_pads(salt), ip, user_agent, source_id)


def _keyed(pads: tuple[Any, Any], ip: str, user_agent: str, source_id: str) -> str:
    """:func:`visitor_hash` with the salt's pads at hand."""
    inner, outer = pads
    h = inner.copy()
    h.update(f"{ip}\n{user_agent}\n{source_id}".encode())
    o = outer.copy()
    o.update(h.digest())
    return o.hexdigest()


def salt_day(received_at: datetime, salts: Mapping[date, bytes]) -> date:
    """The day whose salt an event uses: its own if that salt exists, else the nearest one."""
    if received_at.tzinfo is _UTC or received_at.tzinfo is None:
        day = received_at.date()
    else:
        day = received_at.astimezone(_UTC).date()
    if day in salts:
        return day
    days = sorted(salts)
    return days[0] if day < days[0] else days[-1]


_GRACE_MINUTES = GRACE.seconds // 60  # GRACE is whole minutes: in_grace/in_late compare clock fields


def in_grace(received_at: datetime) -> bool:
    """Received in the first GRACE of its UTC day (00:00 to before 00:30; checked per event of every
    batch, so by the clock fields, not by seconds: the same answer at a third of the cost)."""
    if received_at.tzinfo is not _UTC and received_at.tzinfo is not None:
        received_at = received_at.astimezone(_UTC)
    return received_at.hour == 0 and received_at.minute < _GRACE_MINUTES


def in_late(received_at: datetime) -> bool:
    """Received in the last GRACE of its UTC day (23:30 on)."""
    if received_at.tzinfo is not _UTC and received_at.tzinfo is not None:
        received_at = received_at.astimezone(_UTC)
    return received_at.hour == 23 and received_at.minute >= 60 - _GRACE_MINUTES


def at_midnight(events: Iterable[Event]) -> tuple[list[Event], list[Event]]:
    """The events received in the first GRACE of their UTC day (``in_grace``) and those received in
    its last GRACE (``in_late``), in one pass (the runner asks both of every event of every batch)."""
    first: list[Event] = []
    last: list[Event] = []
    for event in events:
        received_at = event.received_at
        tz = received_at.tzinfo
        if tz is not _UTC and tz is not None:
            received_at = received_at.astimezone(_UTC)
        hour = received_at.hour
        if hour == 0:
            if received_at.minute < _GRACE_MINUTES:
                first.append(event)
        elif hour == 23 and received_at.minute >= 60 - _GRACE_MINUTES:
            last.append(event)
    return first, last


def identity(event: Event) -> str | None:
    """The normalized IP this event's visitor id is made from, or None (no IP, no id)."""
    ip = event.context.ip
    if not ip:
        return None
    return normalized(ip) or ip.strip() or None


def previous_id(event: Event, salts: Mapping[date, bytes]) -> str | None:
    """The id this event would have with the previous day's salt, when it is in its day's grace window."""
    ip = identity(event)
    if ip is None or not in_grace(event.received_at):
        return None
    day = salt_day(event.received_at, salts)
    salt = salts.get(day - timedelta(days=1))
    if salt is None:
        return None
    return visitor_hash(salt, ip, event.context.user_agent or "", event.source_id)


def visitor_id(
    event: Event,
    salts: Mapping[date, bytes],
    late_ids: Collection[str],
    pads_by_day: dict[date, tuple[Any, Any]],
) -> str | None:
    """The id :func:`process` gives ``event`` (None: no salts, or no IP). ``pads_by_day`` keeps each
    day's HMAC pads for the next call: the chain's fast path passes one dict for a whole batch, so a
    day's salt and pads are looked up once per batch instead of once per event."""
    if not salts:
        return None
    ip = identity(event)
    if ip is None:
        return None
    if late_ids:
        carried = previous_id(event, salts)
        if carried is not None and carried in late_ids:
            return carried
    received_at = event.received_at
    tz = received_at.tzinfo
    day = received_at.date() if tz is _UTC or tz is None else received_at.astimezone(_UTC).date()
    pads = pads_by_day.get(day)
    if pads is None:
        pads = pads_by_day[day] = _pads(salts[salt_day(received_at, salts)])
    return _keyed(pads, ip, event.context.user_agent or "", event.source_id)


def process(event: Event, env) -> None:
    found = visitor_id(event, env.salts, env.late_ids, {})
    if found is not None:
        event.enrichment.setdefault("visitor_id", found)
