"""The canonical event: what every dialect decodes into and every destination encodes from.

One msgspec Struct per concept. Field names are snake_case whatever the dialect called them; the
original message is kept verbatim in ``raw`` so that an event can be re-normalized or audited later.
Enrichment (workers) writes only into ``enrichment``; it never overwrites what the client sent.

What every dialect agrees on, so that profiles, enrichment and forwarding read any dialect alike:

- ``identify``: ``user_id``/``anonymous_id`` + ``traits`` (Segment's names: ``email``, ``firstName``,
  ``lastName``, ``name``, ``avatar``, ``phone``, ``company: {id, name}``). ``group``: ``group_id`` +
  traits (``name``, ``type``); with a ``user_id`` it is also a membership. ``alias``: ``user_id`` is
  the new id, ``previous_id`` the old one. ``increment``/``decrement``: ``user_id`` and properties
  ``{"property": "<dot.path>", "value": <number>}``. ``assign_group``: ``user_id`` (or
  ``anonymous_id``) and ``group_ids``. ``feedback``: ``user_id`` and properties ``feature_id``,
  ``score``, ``comment``.
- Money: ``properties.revenue`` in major currency units with ``properties.currency`` (ISO 4217); a
  dialect that sends minor units converts (the original stays in ``raw``). ``properties.mrr``/``arr``
  overwrite the customer's current value.
- Ids are strings; device ids are ``anonymous_id``. ``context.ip``/``user_agent``: what the client
  supplied where its dialect allows, else the request's. ``context.active = False``: do not move
  last-seen. Flags an adapter decides (``is_bot``, ``is_excluded``) go in ``enrichment``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

EventType = Literal[
    "track",
    "identify",
    "page",
    "screen",
    "group",
    "alias",
    "increment",
    "decrement",
    "assign_group",
    "feedback",
]
EVENT_TYPES: frozenset[str] = frozenset(EventType.__args__)  # type: ignore[attr-defined]


class Page(msgspec.Struct, omit_defaults=True):
    """The web page the event happened on (Segment ``context.page``)."""

    url: str | None = None
    path: str | None = None
    referrer: str | None = None
    title: str | None = None
    search: str | None = None


class Screen(msgspec.Struct, omit_defaults=True):
    """The device's screen, in CSS pixels."""

    width: int | None = None
    height: int | None = None
    density: float | None = None


class Campaign(msgspec.Struct, omit_defaults=True):
    """UTM campaign fields as the client sent them (``utm_`` prefix dropped)."""

    source: str | None = None
    medium: str | None = None
    name: str | None = None
    term: str | None = None
    content: str | None = None


class Library(msgspec.Struct, omit_defaults=True):
    """The SDK that sent the event."""

    name: str | None = None
    version: str | None = None


class Context(msgspec.Struct, omit_defaults=True):
    """Where and how the event was collected.

    The fields below are the ones every dialect can fill; whatever else the client put in its context
    is kept, under the client's own key names, in ``extra``.
    """

    ip: str | None = None
    """The IP the client supplied explicitly, else the address the gateway saw."""
    user_agent: str | None = None
    locale: str | None = None
    timezone: str | None = None
    page: Page | None = None
    screen: Screen | None = None
    campaign: Campaign | None = None
    library: Library | None = None
    active: bool | None = None
    """False when this call must not move last-seen times (Segment/Bucket ``context.active``)."""
    extra: dict[str, Any] = {}


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One normalized event."""

    id: str
    """Gateway-assigned UUIDv7: unique and ordered by arrival."""
    message_id: str
    """The dedupe key within a source: the vendor's id when it has one, else one the gateway assigned."""
    source_id: str
    dialect: str
    """The dialect it arrived in, e.g. ``segment``."""
    dialect_version: str = ""
    type: EventType
    name: str | None = None
    """Track: the event name. Page/screen: the page or screen name."""
    user_id: str | None = None
    anonymous_id: str | None = None
    group_id: str | None = None
    group_ids: list[str] = []
    previous_id: str | None = None
    """Alias: the id being merged into ``user_id``."""
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    context: Context = msgspec.field(default_factory=Context)
    timestamp: datetime
    """When it happened, corrected for the client's clock skew."""
    original_timestamp: datetime | None = None
    """When it happened by the client's clock."""
    sent_at: datetime | None = None
    """When the client sent it, by the client's clock."""
    received_at: datetime
    """When the gateway received it, by the gateway's clock."""
    integrations: dict[str, Any] = {}
    raw: str
    """The original message, verbatim JSON text as the client sent it."""
    enrichment: dict[str, Any] = {}
    """Fields the workers add. Never overwrites the fields above."""
