"""TinyTrail's collect dialect: one page-analytics event per ``POST /api/v1/collect``.

Rules, as TinyTrail's API document states them (seeds/tinytrail-api.md, "Event Collection"):

- the body is one JSON object; ``website_id``, ``event_type``, ``url`` and ``path`` are required strings;
  ``referrer``, ``utm_source``, ``utm_medium``, ``utm_campaign`` optional strings, ``screen_width`` and
  ``screen_height`` optional numbers, ``properties`` an optional object; a missing or mistyped field is
  400 ``INVALID_PAYLOAD``;
- the default event types are ``page_view``, ``close_tab``, ``scroll_25``, ``scroll_50``, ``scroll_75``,
  ``outbound_link`` and ``custom``; other names are accepted as they come (TinyTrail's reports group by
  event type);
- UTM parameters the client did not send are read from ``url``'s query string.

Canonical events: ``page_view`` is a ``page`` (``context.page`` from url/path/referrer); every other type is
a ``track`` named after its event type, except ``custom``, which is named after ``properties.name`` (what
``window.analytics.track(name, props)`` sends) when there is one. ``properties`` are the client's. There is
no user or device id: TinyTrail is cookie-less.

What the gateway decided before decoding (``is_bot``, ``is_excluded``, which its 204 answer depends on)
arrives in ``meta.hints`` and goes into ``event.enrichment``. Content groups are the workers' enrichment,
for every dialect alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

from trackgate.adapters.base import InvalidPayload, Transport
from trackgate.adapters.fields import assigned_message_id, decode_json, has_nul, scrubbed, utf8
from trackgate.schemas.event import Campaign, Context, Event, EventType, Page, Screen
from trackgate.schemas.request import RequestMeta

DIALECT = dialect = "tinytrail"
VERSION = "v1"
MAX_BODY_BYTES = 64 * 1024
"""Not documented by TinyTrail; one page event with generous custom properties."""

DEFAULT_EVENT_TYPES = (
    "page_view",
    "close_tab",
    "scroll_25",
    "scroll_50",
    "scroll_75",
    "outbound_link",
    "custom",
)
REQUIRED = ("website_id", "event_type", "url", "path")
_OPTIONAL_STRINGS = ("referrer", "utm_source", "utm_medium", "utm_campaign")
_NUMBERS = ("screen_width", "screen_height")


class Collect(msgspec.Struct):
    """The collect body. Loosely typed on purpose: ``_check`` decides, and names the field."""

    website_id: Any = None
    event_type: Any = None
    url: Any = None
    path: Any = None
    referrer: Any = None
    screen_width: Any = None
    screen_height: Any = None
    properties: Any = None
    utm_source: Any = None
    utm_medium: Any = None
    utm_campaign: Any = None


BODIES: Mapping[str, type] = {"collect": Collect}


class Envelope(msgspec.Struct):
    body: bytes
    item: Collect
    website_id: str


_decode = msgspec.json.Decoder(Collect).decode


def parse(call: str, body: bytes) -> Envelope:
    """Bytes to a validated envelope: every documented rule is checked here, so a request that breaks
    one is refused before its website is looked up."""
    utf8(body)
    if not body.strip():
        raise InvalidPayload("invalid_json", "body is empty: expected a JSON object")
    item = decode_json(_decode, body)
    _check(item)
    return Envelope(body=body, item=item, website_id=item.website_id)


def _check(item: Collect) -> None:
    for field in REQUIRED:
        value = getattr(item, field)
        if value is None or value == "":
            raise InvalidPayload("missing_field", f"{field} is required", field)
        if value.__class__ is not str:
            raise InvalidPayload("invalid_field_type", f"{field} must be a string", field)
    for field in _OPTIONAL_STRINGS:
        value = getattr(item, field)
        if value is not None and value.__class__ is not str:
            raise InvalidPayload("invalid_field_type", f"{field} must be a string", field)
    for field in _NUMBERS:
        value = getattr(item, field)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise InvalidPayload("invalid_field_type", f"{field} must be a number", field)
    if item.properties is not None and item.properties.__class__ is not dict:
        raise InvalidPayload("invalid_field_type", "properties must be an object", "properties")


def credentials(headers: Mapping[str, str], envelope: Envelope | None) -> str | None:
    """The website id, from the body (there is nothing in the headers)."""
    return envelope.website_id if envelope is not None else None


def decode(meta: RequestMeta, envelope: Envelope) -> list[Event]:
    item = envelope.item
    event_type: str = item.event_type
    properties: dict = item.properties or {}
    kind: EventType
    if event_type == "page_view":
        kind, name = "page", None
    else:
        kind = "track"
        name = event_type
        custom_name = properties.get("name") if event_type == "custom" else None
        if custom_name.__class__ is str and custom_name:
            name = custom_name
    url: str = item.url
    try:
        split = urlsplit(url)
    except ValueError as exc:
        raise InvalidPayload("invalid_field", f"url is not a valid URL: {exc}", "url") from exc
    hints = meta.hints
    enrichment: dict[str, Any] = {
        "is_bot": bool(hints.get("is_bot", False)),
        "is_excluded": bool(hints.get("is_excluded", False)),
    }
    event = Event(
        id="",
        message_id=assigned_message_id(meta, 0, None),
        source_id=meta.source_id,
        dialect=DIALECT,
        dialect_version=VERSION,
        type=kind,
        name=name,
        properties=properties,
        context=Context(
            ip=meta.ip,
            user_agent=meta.user_agent,
            page=Page(
                url=url,
                path=item.path,
                referrer=item.referrer or None,
                search=f"?{split.query}" if split.query else None,
            ),
            screen=_screen(item.screen_width, item.screen_height),
            campaign=_campaign(item, split.query),
        ),
        timestamp=meta.received_at,
        received_at=meta.received_at,
        raw=envelope.body.decode(),
        enrichment=enrichment,
    )
    return scrubbed([event]) if has_nul(envelope.body) else [event]


def _screen(width: Any, height: Any) -> Screen | None:
    if width is None and height is None:
        return None
    return Screen(
        width=round(width) if width is not None else None,
        height=round(height) if height is not None else None,
    )


_UTM = (("utm_source", "source"), ("utm_medium", "medium"), ("utm_campaign", "name"))
_URL_UTM = (*_UTM, ("utm_term", "term"), ("utm_content", "content"))


def _campaign(item: Collect, query: str) -> Campaign | None:
    """The UTM fields the client sent; any it did not are read from the url's query string."""
    fields: dict[str, str] = {}
    if query and "utm_" in query:
        params = dict(parse_qsl(query))
        for key, field in _URL_UTM:
            if params.get(key):
                fields[field] = params[key]
    for key, field in _UTM:
        value = getattr(item, key)
        if value:
            fields[field] = value
    return Campaign(**fields) if fields else None


# --- encode: canonical events to the collect bodies a TinyTrail tracker would send -------------------


def encode(events: list[Event]) -> list[dict[str, Any]]:
    """Canonical events as collect bodies, without ``website_id`` (the destination's, set by whoever
    sends them). A page is a ``page_view``; a track named after a default event type keeps it; any
    other event is ``custom`` with its name in ``properties.name`` (decode reverses this)."""
    return [encode_one(event) for event in events]


def encode_one(event: Event) -> dict[str, Any]:
    page = event.context.page
    url = (page.url if page else None) or ""
    path = (page.path if page else None) or urlsplit(url).path or "/"
    properties = dict(event.properties)
    if event.type == "page":
        event_type = "page_view"
    elif event.type == "track" and event.name in DEFAULT_EVENT_TYPES and event.name != "custom":
        event_type = event.name
    else:
        event_type = "custom"
        properties["name"] = event.name or event.type
        if event.type != "track":
            properties.setdefault("trackgate_type", event.type)
    out: dict[str, Any] = {"event_type": event_type, "url": url, "path": path}
    if page is not None and page.referrer:
        out["referrer"] = page.referrer
    screen = event.context.screen
    if screen is not None:
        if screen.width is not None:
            out["screen_width"] = screen.width
        if screen.height is not None:
            out["screen_height"] = screen.height
    if properties:
        out["properties"] = properties
    campaign = event.context.campaign
    if campaign is not None:
        for key, field in _UTM:
            value = getattr(campaign, field)
            if value:
                out[key] = value
    return out


# --- forwarding and replay -------------------------------------------------------------------------


def _wrap(items: list[dict[str, Any]], creds: dict[str, str], now: float) -> Any:
    return {"website_id": creds["website_id"], **items[0]}


TRANSPORT = Transport(
    kind="tinytrail",
    dialect="tinytrail",
    default_base="http://localhost:8000",
    credentials=("website_id",),
    route=lambda item: "/api/v1/collect",
    wrap=_wrap,
    headers=lambda creds: {},
    per_event=True,
    job_events=10,  # 10 requests / 10 s per IP: a 429 with Retry-After holds the destination
    notes="POST {base}/api/v1/collect per event (no auth; website_id in the body)",
)


def replay_call(payload: Any) -> str:
    """TinyTrail has one call."""
    return "collect"
