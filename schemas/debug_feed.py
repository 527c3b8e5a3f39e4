"""The live debug feed: what the workers stored (new, duplicate, quarantined) and what the gateway
refused, as one capped Redis stream that ``/debugger`` and ``trackgate events tail`` read.

The contract between its writers (``workers/debug_feed.py`` after the store commit,
``gateway/debugger.py`` after an error answer) and its readers. Nothing is written unless someone
watches: a reader keeps the ``WATCHERS`` key alive (``SET … EX WATCH_TTL_SECONDS`` every
``WATCH_REFRESH_SECONDS``), and writers check that key at most once every ``WATCH_CHECK_SECONDS``.
When nobody watches, the feed costs a worker one ``EXISTS`` a second and the accept path nothing.
"""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Literal

import msgspec

from trackgate.schemas.event import Event

STREAM = "trackgate:debug:feed"
"""The stream (``XADD … MAXLEN ~ STREAM_MAXLEN``); one field, ``d``: a :class:`Seen` as JSON."""
STREAM_MAXLEN = 1000
WATCHERS = "trackgate:debug:watchers"
"""Exists while a reader watches."""
WATCH_TTL_SECONDS = 10
WATCH_REFRESH_SECONDS = 3.0
WATCH_CHECK_SECONDS = 1.0
RAW_CHARS = 16_384
"""A raw payload longer than this is cut in the feed (``raw_truncated``); the store keeps it whole."""

Kind = Literal["stored", "duplicate", "quarantined", "refused"]
KINDS: tuple[Kind, ...] = ("stored", "duplicate", "quarantined", "refused")


class Seen(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line of the feed: an event as it was stored (or not), or a refused request."""

    kind: Kind
    at: datetime
    """When the writer saw it (the store commit, or the error answer)."""
    source_id: str | None = None
    """None for a request refused before its source was known (a bad key)."""
    dialect: str = ""
    type: str | None = None
    name: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    event: Event | None = None
    """The canonical event with its enrichment (``raw`` moved out to :attr:`raw`)."""
    raw: str | None = None
    """The payload as the client sent it (an item, an event's message, a refused request's body)."""
    raw_truncated: bool = False
    status: int | None = None
    """A refused request's HTTP status."""
    code: str | None = None
    reason: str | None = None
    """Why it was quarantined or refused."""
    path: str | None = None
    """A refused request's path."""


def cut(raw: str | None) -> tuple[str | None, bool]:
    if raw is not None and len(raw) > RAW_CHARS:
        return raw[:RAW_CHARS], True
    return raw, False


def from_event(
    kind: Kind, event: Event, at: datetime, code: str | None = None, reason: str | None = None
) -> Seen:
    raw, truncated = cut(event.raw)
    return Seen(
        kind=kind,
        at=at,
        source_id=event.source_id,
        dialect=event.dialect,
        type=event.type,
        name=event.name,
        user_id=event.user_id,
        anonymous_id=event.anonymous_id,
        event=msgspec.structs.replace(event, raw=""),
        raw=raw,
        raw_truncated=truncated,
        code=code,
        reason=reason,
    )


encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder(Seen).decode


def entries(found: Any) -> list[tuple[str, bytes]]:
    """(stream id, the ``d`` field) of the entries of an ``XRANGE``/``XREVRANGE`` answer, or of every
    stream of an ``XREAD`` answer, as redis-py returns them (bytes); entries without ``d`` are left out."""
    if found and isinstance(found[0], list | tuple) and isinstance(found[0][1], list):  # XREAD
        found = [entry for _, stream_entries in found for entry in stream_entries]
    out = []
    for entry_id, fields in found or ():
        data = fields.get(b"d")
        if data is not None:
            out.append((entry_id.decode(), data))
    return out


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """What a reader asked to see; an unset filter lets everything through."""

    sources: frozenset[str] = frozenset()
    """Source ids."""
    type: str | None = None
    name: str | None = None
    """A glob (``sign*``) over the event's name."""
    user: str | None = None
    """A user id or an anonymous id."""

    def matches(self, seen: Seen) -> bool:
        if self.sources and seen.source_id not in self.sources:
            return False
        if self.type is not None and seen.type != self.type:
            return False
        if self.name is not None and (seen.name is None or not fnmatchcase(seen.name, self.name)):
            return False
        return self.user is None or self.user in (seen.user_id, seen.anonymous_id)
