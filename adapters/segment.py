"""Segment's HTTP Tracking API dialect (also spoken by RudderStack, Hightouch and June clients).

Rules, as Segment documents them and its real SDKs rely on (see README, "Segment"):

- single calls take their ``type`` from the path; batch items must carry one;
- every message needs ``userId`` or ``anonymousId``; track needs ``event``; group needs ``groupId``;
  alias needs ``previousId`` and ``userId``; ``messageId`` is at most 100 characters;
- 32 KB an event, 500 KB a batch, 2,500 events a batch;
- a batch's top-level ``context`` and ``integrations`` are merged into every item (the item's keys win);
- ``timestamp = receivedAt - (sentAt - originalTimestamp)``, where the client's ``timestamp`` is the
  original one.

A batch is accepted or refused as a whole: one bad item refuses the request with a 400 that names the
item and the field, and nothing of it is stored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from adapters.base import InvalidPayload, PayloadTooLarge
from schemas.event import Campaign, Context, Event, Library, Page, Screen
from schemas.request import RequestMeta

DIALECT = dialect = "segment"
VERSION = "v1"
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_MESSAGE_ID = 100

CALLS = {
    "identify": "identify",
    "track": "track",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
    "batch": "batch",
    "import": "batch",
    # analytics.js posts to ${apiHost}/${type[0]}
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
    "b": "batch",
}
MESSAGE_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})


class Message(msgspec.Struct):
    """One Segment message. Fields are loosely typed on purpose: the validators below decide."""

    type: Any = None
    userId: Any = None
    anonymousId: Any = None
    messageId: Any = None
    event: Any = None
    name: Any = None
    groupId: Any = None
    previousId: Any = None
    properties: Any = None
    traits: Any = None
    context: Any = None
    integrations: Any = None
    timestamp: Any = None
    originalTimestamp: Any = None
    sentAt: Any = None
    writeKey: Any = None


class BatchEnvelope(msgspec.Struct):
    # Items stay raw: their exact bytes are the lossless original, and their size is what the
    # 32 KB limit is about. Each is decoded into a Message on its own.
    batch: list[msgspec.Raw] | None = None
    writeKey: Any = None
    context: Any = None
    integrations: Any = None
    sentAt: Any = None


class Envelope(msgspec.Struct):
    """A parsed request: its messages (raw bytes and decoded) and the batch-level fields."""

    call: str
    items: list[tuple[bytes, Message]]
    write_key: str | None = None
    context: dict | None = None
    integrations: dict | None = None
    sent_at: Any = None
    is_batch: bool = False


_decode_message = msgspec.json.Decoder(Message).decode
_decode_batch = msgspec.json.Decoder(BatchEnvelope).decode
_encode = msgspec.json.Encoder().encode


def _json_error(exc: msgspec.DecodeError, prefix: str = "") -> InvalidPayload:
    return InvalidPayload("invalid_json", f"{prefix}body is not valid JSON: {exc}")


def parse(call: str, body: bytes) -> Envelope:
    """Bytes to envelope. ``call`` is the path's last segment (``track``, ``t``, ``batch``, ...)."""
    kind = CALLS.get(call)
    if kind is None:
        raise InvalidPayload("unknown_call", f"unknown call {call!r}")
    if kind != "batch":
        if len(body) > MAX_EVENT_BYTES:
            raise PayloadTooLarge(
                "event_too_large", f"event is {len(body)} bytes, over the {MAX_EVENT_BYTES}-byte limit"
            )
        try:
            message = _decode_message(body)
        except msgspec.ValidationError as exc:
            raise InvalidPayload("invalid_body", "body must be a JSON object") from exc
        except msgspec.DecodeError as exc:
            raise _json_error(exc) from exc
        return Envelope(call=kind, items=[(body, message)], write_key=_str(message.writeKey))

    if len(body) > MAX_BATCH_BYTES:
        raise PayloadTooLarge(
            "batch_too_large", f"batch is {len(body)} bytes, over the {MAX_BATCH_BYTES}-byte limit"
        )
    try:
        envelope = _decode_batch(body)
    except msgspec.ValidationError as exc:
        raise InvalidPayload("invalid_body", f"body must be a JSON object with a batch array: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise _json_error(exc) from exc
    write_key = _str(envelope.writeKey)
    if envelope.batch is None:
        raise InvalidPayload("invalid_batch", "batch is required: an array of messages", "batch")
    if not envelope.batch:
        raise InvalidPayload("empty_batch", "batch is empty", "batch")
    if len(envelope.batch) > MAX_BATCH_EVENTS:
        raise PayloadTooLarge(
            "too_many_events",
            f"batch has {len(envelope.batch)} events, over the limit of {MAX_BATCH_EVENTS}",
            "batch",
        )
    items: list[tuple[bytes, Message]] = []
    for i, raw in enumerate(envelope.batch):
        data = bytes(raw)
        if len(data) > MAX_EVENT_BYTES:
            raise PayloadTooLarge(
                "event_too_large",
                f"batch[{i}] is {len(data)} bytes, over the {MAX_EVENT_BYTES}-byte limit",
                f"batch[{i}]",
            )
        try:
            items.append((data, _decode_message(data)))
        except msgspec.ValidationError as exc:
            raise InvalidPayload(
                "invalid_message", f"batch[{i}] must be a JSON object", f"batch[{i}]"
            ) from exc
    return Envelope(
        call="batch",
        items=items,
        write_key=write_key,
        context=_object(envelope.context, "context"),
        integrations=_object(envelope.integrations, "integrations"),
        sent_at=envelope.sentAt,
        is_batch=True,
    )


def credentials(headers: Mapping[str, str], envelope: Envelope | None) -> str | None:
    """The write key: HTTP Basic username (colon optional) first, else the body's ``writeKey``.

    Called with ``envelope=None`` before the body is parsed, so that a request whose header names a
    bad key is refused before its body is looked at.
    """
    from_header = basic_username(headers.get("authorization"))
    if from_header or envelope is None:
        return from_header
    if envelope.write_key:
        return envelope.write_key
    for _, message in envelope.items:
        key = _str(message.writeKey)
        if key:
            return key
    return None


def basic_username(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def decode(meta: RequestMeta, envelope: Envelope) -> list[Event]:
    """Validate every message, then normalize. Raises on the first broken rule; returns all or none."""
    received_at = meta.received_at
    events: list[Event] = []
    for i, (raw, message) in enumerate(envelope.items):
        at = f"batch[{i}]." if envelope.is_batch else ""
        kind = message.type if envelope.is_batch else envelope.call
        if envelope.is_batch:
            if kind is None or kind == "":
                raise InvalidPayload("missing_type", f"{at}type is required", f"{at}type")
            if kind not in MESSAGE_TYPES:
                raise InvalidPayload(
                    "invalid_type",
                    f"{at}type must be one of {', '.join(sorted(MESSAGE_TYPES))}, got {kind!r}",
                    f"{at}type",
                )
        user_id = _id(message.userId, at, "userId")
        anonymous_id = _id(message.anonymousId, at, "anonymousId")
        if user_id is None and anonymous_id is None:
            raise InvalidPayload(
                "no_user_anon_id", f"{at}userId or {at}anonymousId is required", f"{at}userId"
            )
        name = None
        group_id = None
        previous_id = None
        if kind == "track":
            name = _id(message.event, at, "event")
            if name is None:
                raise InvalidPayload("missing_event", f"{at}event is required for track", f"{at}event")
        elif kind in ("page", "screen"):
            name = _id(message.name, at, "name")
        elif kind == "group":
            group_id = _id(message.groupId, at, "groupId")
            if group_id is None:
                raise InvalidPayload("missing_group_id", f"{at}groupId is required for group", f"{at}groupId")
        elif kind == "alias":
            previous_id = _id(message.previousId, at, "previousId")
            if previous_id is None:
                raise InvalidPayload(
                    "missing_previous_id", f"{at}previousId is required for alias", f"{at}previousId"
                )
            if user_id is None:
                raise InvalidPayload("missing_user_id", f"{at}userId is required for alias", f"{at}userId")

        message_id = _id(message.messageId, at, "messageId")
        if message_id is None:
            message_id = f"{meta.request_id}-{i}"
        elif len(message_id) > MAX_MESSAGE_ID:
            raise InvalidPayload(
                "message_id_too_long",
                f"{at}messageId is {len(message_id)} characters, over the limit of {MAX_MESSAGE_ID}",
                f"{at}messageId",
            )

        original = _time(
            message.timestamp if message.timestamp is not None else message.originalTimestamp,
            at + ("timestamp" if message.timestamp is not None else "originalTimestamp"),
        )
        sent_at = _time(message.sentAt, f"{at}sentAt")
        if sent_at is None and envelope.sent_at is not None:
            sent_at = _time(envelope.sent_at, "sentAt")
        if original is None:
            timestamp = received_at
        elif sent_at is None:
            timestamp = original
        else:
            timestamp = received_at - (sent_at - original)

        context = _object(message.context, f"{at}context")
        if envelope.context:
            context = {**envelope.context, **context} if context else envelope.context
        integrations = _object(message.integrations, f"{at}integrations")
        if envelope.integrations:
            integrations = (
                {**envelope.integrations, **integrations} if integrations else envelope.integrations
            )

        events.append(
            Event(
                id="",
                message_id=message_id,
                source_id=meta.source_id,
                dialect=DIALECT,
                dialect_version=VERSION,
                type=kind,
                name=name,
                user_id=user_id,
                anonymous_id=anonymous_id,
                group_id=group_id,
                previous_id=previous_id,
                properties=_object(message.properties, f"{at}properties") or {},
                traits=_object(message.traits, f"{at}traits") or {},
                context=normalize_context(context, meta.ip),
                timestamp=timestamp,
                original_timestamp=original,
                sent_at=sent_at,
                received_at=received_at,
                integrations=integrations or {},
                raw=raw.decode(),
            )
        )
    return events


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    return None


def _id(value: Any, at: str, field: str) -> str | None:
    """An id or name: a string, or a number sent where a string is meant (real SDKs do)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidPayload(
        "invalid_field_type", f"{at}{field} must be a string, got {type(value).__name__}", f"{at}{field}"
    )


def _object(value: Any, path: str) -> dict | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    raise InvalidPayload("invalid_field_type", f"{path} must be an object, got {type(value).__name__}", path)


def _time(value: Any, path: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    raise InvalidPayload(
        "invalid_timestamp", f"{path} must be an ISO-8601 date-time, got {value!r}"[:300], path
    )


_CONTEXT_KEYS = frozenset(
    {"ip", "userAgent", "locale", "timezone", "page", "screen", "campaign", "library", "active"}
)


def normalize_context(ctx: dict | None, request_ip: str | None) -> Context:
    """Segment's camelCase context to the canonical one; unknown keys are kept in ``extra``."""
    if not ctx:
        return Context(ip=request_ip)
    get = ctx.get
    page = get("page")
    screen = get("screen")
    campaign = get("campaign")
    library = get("library")
    active = get("active")
    extra = {k: v for k, v in ctx.items() if k not in _CONTEXT_KEYS}
    out = Context(
        ip=_scalar(get("ip")) or request_ip,
        user_agent=_scalar(get("userAgent")),
        locale=_scalar(get("locale")),
        timezone=_scalar(get("timezone")),
        active=active if isinstance(active, bool) else None,
        extra=extra,
    )
    if isinstance(page, dict):
        out.page = Page(
            url=_scalar(page.get("url")),
            path=_scalar(page.get("path")),
            referrer=_scalar(page.get("referrer")),
            title=_scalar(page.get("title")),
            search=_scalar(page.get("search")),
        )
    elif page is not None:
        extra["page"] = page
    if isinstance(screen, dict):
        out.screen = Screen(
            width=_int(screen.get("width")),
            height=_int(screen.get("height")),
            density=_num(screen.get("density")),
        )
    elif screen is not None:
        extra["screen"] = screen
    if isinstance(campaign, dict):
        out.campaign = Campaign(
            source=_scalar(campaign.get("source")),
            medium=_scalar(campaign.get("medium")),
            name=_scalar(campaign.get("name")),
            term=_scalar(campaign.get("term")),
            content=_scalar(campaign.get("content")),
        )
    elif campaign is not None:
        extra["campaign"] = campaign
    if isinstance(library, dict):
        out.library = Library(name=_scalar(library.get("name")), version=_scalar(library.get("version")))
    elif library is not None:
        extra["library"] = library
    if active is not None and not isinstance(active, bool):
        extra["active"] = active
    return out


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


# --- encode: canonical events to the messages a Segment SDK would send -------------------------


def encode(events: list[Event]) -> list[dict[str, Any]]:
    """Canonical events as Segment messages, ready for ``{"batch": [...]}``.

    Types Segment has no call for (increment, decrement, assign_group, feedback) become track calls
    named after the type, with the canonical fields in ``properties``.
    """
    return [encode_one(event) for event in events]


def encode_one(event: Event) -> dict[str, Any]:
    kind = event.type
    out: dict[str, Any] = {"type": kind if kind in MESSAGE_TYPES else "track", "messageId": event.message_id}
    if event.user_id is not None:
        out["userId"] = event.user_id
    if event.anonymous_id is not None:
        out["anonymousId"] = event.anonymous_id
    if kind == "track":
        out["event"] = event.name
    elif kind in ("page", "screen"):
        if event.name is not None:
            out["name"] = event.name
    elif kind == "group":
        out["groupId"] = event.group_id
    elif kind == "alias":
        out["previousId"] = event.previous_id
    elif kind not in MESSAGE_TYPES:
        out["event"] = event.name or kind
    if out["type"] in ("track", "page", "screen"):
        properties = dict(event.properties)
        if kind not in MESSAGE_TYPES:
            properties.setdefault("trackgate_type", kind)
            if event.group_ids:
                properties.setdefault("groupIds", event.group_ids)
        out["properties"] = properties
    if event.traits and out["type"] in ("identify", "group"):
        out["traits"] = event.traits
    context = denormalize_context(event.context)
    if context:
        out["context"] = context
    if event.integrations:
        out["integrations"] = event.integrations
    out["timestamp"] = event.timestamp.isoformat()
    return out


def denormalize_context(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = dict(ctx.extra)
    for key, value in (
        ("ip", ctx.ip),
        ("userAgent", ctx.user_agent),
        ("locale", ctx.locale),
        ("timezone", ctx.timezone),
        ("active", ctx.active),
    ):
        if value is not None:
            out[key] = value
    for key, struct in (
        ("page", ctx.page),
        ("screen", ctx.screen),
        ("campaign", ctx.campaign),
        ("library", ctx.library),
    ):
        if struct is not None:
            out[key] = msgspec.to_builtins(struct)
    return out
