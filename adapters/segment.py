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
import functools
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

import msgspec

from trackgate.adapters.base import InvalidPayload, PayloadTooLarge, Transport, iso_millis
from trackgate.adapters.fields import (
    assigned_message_id,
    call_by_shape,
    decode_json,
    has_nul,
    iso_time,
    obj,
    scrubbed,
    string_id,
    utf8,
)
from trackgate.schemas.event import Campaign, Context, Event, EventType, Library, Page, Screen
from trackgate.schemas.request import RequestMeta

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
    category: Any = None
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


class _LeanMessage(Message):
    """A message with its ``context`` left as its span of the body, for a context the typed reading
    (:class:`_TypedMessage`) could not take: :func:`_read_message` then reads the span as JSON."""

    context: msgspec.Raw = msgspec.Raw()  # type: ignore[assignment]  # read apart, see _read_message


class BatchEnvelope(msgspec.Struct):
    # Items stay raw: their exact bytes are the lossless original, and their size is what the
    # 32 KB limit is about. Each is decoded into a Message on its own.
    batch: list[msgspec.Raw] | None = None
    writeKey: Any = None
    context: Any = None
    integrations: Any = None
    sentAt: Any = None


BODIES: Mapping[str, type] = {
    call: BatchEnvelope if kind == "batch" else Message for call, kind in CALLS.items()
}


class Envelope(msgspec.Struct):
    """A parsed request: its messages (raw bytes and decoded) and the batch-level fields."""

    call: str
    items: list[tuple[str, Message]]
    """Each message's text as it arrived (the lossless ``raw``) and the message decoded from it."""
    write_key: str | None = None
    context: dict | None = None
    integrations: dict | None = None
    sent_at: Any = None
    is_batch: bool = False
    has_nul: bool = False


_decode_message = msgspec.json.Decoder(Message).decode
_decode_lean = msgspec.json.Decoder(_LeanMessage).decode
_decode_any = msgspec.json.Decoder().decode
_decode_batch = msgspec.json.Decoder(BatchEnvelope).decode
_encode = msgspec.json.Encoder().encode


def _not_a_batch(exc: msgspec.ValidationError) -> InvalidPayload:
    if "$.batch" in str(exc):
        return InvalidPayload("invalid_batch", "batch must be an array of messages", "batch")
    return InvalidPayload("invalid_body", f"body must be a JSON object with a batch array: {exc}")


def parse(call: str, body: bytes) -> Envelope:
    """Bytes to envelope. ``call`` is the path's last segment (``track``, ``t``, ``batch``, ...)."""
    kind = CALLS.get(call)
    if kind is None:
        raise InvalidPayload("unknown_call", f"unknown call {call!r}")
    text = utf8(body)
    if kind != "batch":
        if len(body) > MAX_EVENT_BYTES:
            raise PayloadTooLarge(
                "event_too_large", f"event is {len(body)} bytes, over the {MAX_EVENT_BYTES}-byte limit"
            )
        message = _read_message(body)
        if message is None:  # not a JSON object of messages: decode_json says why, as for any body
            message = decode_json(_decode_message, body)
        return Envelope(
            call=kind, items=[(text, message)], write_key=_str(message.writeKey), has_nul=has_nul(body)
        )

    if len(body) > MAX_BATCH_BYTES:
        raise PayloadTooLarge(
            "batch_too_large", f"batch is {len(body)} bytes, over the {MAX_BATCH_BYTES}-byte limit"
        )
    envelope = decode_json(_decode_batch, body, invalid=_not_a_batch)
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
    items: list[tuple[str, Message]] = []
    # a batch-level context is merged into each item's as a dict: then the items' are read as JSON
    read_message = _decode_message if envelope.context else _read_message
    for i, raw in enumerate(envelope.batch):
        # each item is read from its span of the body (no copy); its text is the lossless original
        if len(raw) > MAX_EVENT_BYTES:
            raise PayloadTooLarge(
                "event_too_large",
                f"batch[{i}] is {len(raw)} bytes, over the {MAX_EVENT_BYTES}-byte limit",
                f"batch[{i}]",
            )
        try:
            message = read_message(raw)
        except (msgspec.DecodeError, RecursionError):
            message = None
        else:
            context = None if message is None else message.context
            if context is not None and context.__class__ is not _Strict:
                # a context the typed reading could not take: a batch comes from one SDK, and its
                # other items' contexts have the same keys, so they are read as JSON at once
                read_message = _decode_message
        if message is None:  # decode_json says why, as for any body
            path = f"batch[{i}]"
            message = decode_json(
                _decode_message,
                bytes(raw),
                code="invalid_message",
                invalid=f"{path} must be a JSON object",
                path=path,
                item=True,  # a number out of range, or nested too deep: named with the item's path
            )
        items.append((str(raw, "utf-8"), message))
    return Envelope(
        call="batch",
        items=items,
        write_key=write_key,
        context=obj(envelope.context, "context"),
        integrations=obj(envelope.integrations, "integrations"),
        sent_at=envelope.sentAt,
        is_batch=True,
        has_nul=has_nul(body),
    )


def _read_message(data: bytes | msgspec.Raw) -> Message | None:
    """One message read once: its context typed straight from its bytes when it holds canonical keys
    of the right types (and analytics.js's two others: what most SDKs send), in the same decode as
    the message (:class:`_TypedMessage`); else as JSON, which :func:`normalize_context` reads as
    before. The same message, field for field, as ``_decode_message``; None where that would raise
    (not JSON, nested too deep, not an object), so the caller makes the same error."""
    try:
        return _decode_typed(data)
    except (msgspec.DecodeError, RecursionError):
        pass  # a context the typed reading cannot take, or no message at all: read as below
    try:
        message: Message = _decode_lean(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    # The typed reading failed on the context alone (the rest is typed alike): a key outside the
    # canonical set, or a value of another type. Read it as JSON: the lean decode checked that it is
    # JSON, not that its numbers fit (``1e400`` is out of a float's range), which ``_decode_message``
    # refuses.
    span = message.context
    try:
        message.context = _decode_any(span) if span else None
    except (msgspec.DecodeError, RecursionError):
        return None
    return message


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
    """The username of an ``Authorization: Basic`` header (the write key), else None.

    Remembered per header (LRU, :data:`BASIC_HEADERS_KEPT`): an SDK sends the same header with every
    request, and decoding it (partition, base64, UTF-8) cost ~7k instructions, 3% of a ``/v1/track``
    request. The gateway already keeps its keys in memory (``Sources``' digest cache)."""
    if not header:
        return None
    return _basic_username(header)


BASIC_HEADERS_KEPT = 4096
"""Most distinct ``Authorization`` headers whose username a process remembers."""


@functools.lru_cache(maxsize=BASIC_HEADERS_KEPT)
def _basic_username(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):  # ValueError: a header byte past ASCII
        return None
    return decoded.partition(":")[0] or None


def decode(meta: RequestMeta, envelope: Envelope) -> list[Event]:
    """Validate every message, then normalize. Raises on the first broken rule; returns all or none.

    Errors name the field relative to the message; for batches they are prefixed with ``batch[i].``.
    """
    batch_sent_at = _time(envelope.sent_at, "sentAt") if envelope.is_batch else None
    events: list[Event] = []
    for i, (raw, message) in enumerate(envelope.items):
        try:
            events.append(_decode_one(meta, envelope, i, raw, message, batch_sent_at))
        except InvalidPayload as exc:
            if envelope.is_batch:
                exc.message = f"batch[{i}].{exc.message}"
                exc.path = f"batch[{i}].{exc.path}" if exc.path else f"batch[{i}]"
                exc.args = (exc.message,)
            raise
    return scrubbed(events) if envelope.has_nul else events


def _check_track(message: Message, user_id: str | None) -> tuple[str | None, str | None, str | None]:
    name = string_id(message.event, "event")
    if name is None:
        raise InvalidPayload("missing_event", "event is required for track", "event")
    return name, None, None


def _check_page(message: Message, user_id: str | None) -> tuple[str | None, str | None, str | None]:
    return string_id(message.name, "name"), None, None


def _check_identify(message: Message, user_id: str | None) -> tuple[str | None, str | None, str | None]:
    return None, None, None


def _check_group(message: Message, user_id: str | None) -> tuple[str | None, str | None, str | None]:
    group_id = string_id(message.groupId, "groupId")
    if group_id is None:
        raise InvalidPayload("missing_group_id", "groupId is required for group", "groupId")
    return None, group_id, None


def _check_alias(message: Message, user_id: str | None) -> tuple[str | None, str | None, str | None]:
    previous_id = string_id(message.previousId, "previousId")
    if previous_id is None:
        raise InvalidPayload("missing_previous_id", "previousId is required for alias", "previousId")
    if user_id is None:
        raise InvalidPayload("missing_user_id", "userId is required for alias", "userId")
    return None, None, previous_id


# One small validator per call type: (name, group_id, previous_id), or InvalidPayload.
_CHECKS = {
    "track": _check_track,
    "page": _check_page,
    "screen": _check_page,
    "identify": _check_identify,
    "group": _check_group,
    "alias": _check_alias,
}


def _decode_one(
    meta: RequestMeta,
    envelope: Envelope,
    index: int,
    raw: str,
    message: Message,
    batch_sent_at: datetime | None,
) -> Event:
    kind: EventType
    if envelope.is_batch:
        kind = message.type
        if kind is None or kind == "":
            raise InvalidPayload("missing_type", "type is required", "type")
        if kind.__class__ is not str or kind not in MESSAGE_TYPES:
            raise InvalidPayload(
                "invalid_type",
                f"type must be one of {', '.join(sorted(MESSAGE_TYPES))}, got {kind!r}",
                "type",
            )
    else:
        kind = cast(EventType, envelope.call)  # a CALLS value: one of MESSAGE_TYPES
    user_id = message.userId
    if user_id.__class__ is not str or not user_id:
        user_id = string_id(user_id, "userId")
    anonymous_id = message.anonymousId
    if anonymous_id.__class__ is not str or not anonymous_id:
        anonymous_id = string_id(anonymous_id, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise InvalidPayload("no_user_anon_id", "userId or anonymousId is required", "userId")
    name, group_id, previous_id = _CHECKS[kind](message, user_id)

    message_id = message.messageId
    if message_id.__class__ is not str or not message_id:
        message_id = string_id(message_id, "messageId")
    if message_id is None:
        message_id = assigned_message_id(meta, index, message.timestamp or message.originalTimestamp)
    elif len(message_id) > MAX_MESSAGE_ID:
        raise InvalidPayload(
            "message_id_too_long",
            f"messageId is {len(message_id)} characters, over the limit of {MAX_MESSAGE_ID}",
            "messageId",
        )

    received_at = meta.received_at
    sent_at = message.sentAt
    sent_at = (_time(sent_at, "sentAt") if sent_at is not None else None) or batch_sent_at
    if message.originalTimestamp is not None and message.timestamp is not None:
        # Both set: the message was normalized before (an export, a replay); its timestamp stands.
        original = _time(message.originalTimestamp, "originalTimestamp")
        timestamp = _time(message.timestamp, "timestamp") or received_at
    else:
        if message.timestamp is not None:
            original = _time(message.timestamp, "timestamp")
        else:
            original = _time(message.originalTimestamp, "originalTimestamp")
        if original is None:
            timestamp = received_at
        elif sent_at is None:
            timestamp = original
        else:
            try:
                timestamp = received_at - (sent_at - original)
            except OverflowError as exc:
                raise InvalidPayload(
                    "invalid_timestamp", "timestamp and sentAt are too far apart to correct", "timestamp"
                ) from exc

    context = message.context
    if context.__class__ is _Strict:  # read typed by _read_message: canonical keys only
        known_context = _context_of(context, meta.ip)
        context = None
    else:
        known_context = None
    if context is not None and context.__class__ is not dict:
        context = obj(context, "context")
    if envelope.context:
        context = {**envelope.context, **context} if context else envelope.context
    integrations = message.integrations
    if integrations is not None and integrations.__class__ is not dict:
        integrations = obj(integrations, "integrations")
    if envelope.integrations:
        integrations = {**envelope.integrations, **integrations} if integrations else envelope.integrations
    properties = message.properties
    if properties.__class__ is not dict:
        properties = obj(properties, "properties") or {}
    traits = message.traits
    if traits.__class__ is not dict:
        traits = obj(traits, "traits") or {}
    if not traits and kind == "identify" and context:
        # RudderStack's SDKs (and older analytics.js) send identify traits only in context.traits
        context_traits = context.get("traits")
        if context_traits.__class__ is dict:
            traits = context_traits
    category = message.category
    if category.__class__ is str and category and kind in ("page", "screen") and "category" not in properties:
        # as analytics.js does: the page's category travels in its properties
        properties = {**properties, "category": category}

    return Event(
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
        properties=properties,
        traits=traits,
        context=normalize_context(context, meta.ip) if known_context is None else known_context,
        timestamp=timestamp,
        original_timestamp=original,
        sent_at=sent_at,
        received_at=received_at,
        integrations=integrations or {},
        raw=raw,
    )


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    return None


_UNPADDED_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?=$|[T ])")


def _time(value: Any, path: str) -> datetime | None:
    """An ISO 8601 date-time; Segment's own docs write "2015-2-02T...", so an unpadded date is padded
    (only after the plain parse failed: the regex costs more than the parse on the hot path)."""
    try:
        return iso_time(value, path)
    except InvalidPayload:
        if not isinstance(value, str):
            raise
        padded = _UNPADDED_DATE.sub(lambda m: f"{m[1]}-{int(m[2]):02d}-{int(m[3]):02d}", value, count=1)
        if padded == value:
            raise
        return iso_time(padded, path)


_CONTEXT_KEYS = frozenset(
    {"ip", "userAgent", "locale", "timezone", "page", "screen", "campaign", "library", "active"}
)
_NESTED = (("page", Page), ("screen", Screen), ("campaign", Campaign), ("library", Library))
_NESTED_FIELDS = tuple((key, frozenset(struct.__struct_fields__)) for key, struct in _NESTED)


class _Known(msgspec.Struct):
    """The canonical fields of a Segment context, typed: what one ``msgspec.convert`` makes of a
    well-typed context (unknown keys are skipped; they go to ``extra``)."""

    ip: str | None = None
    userAgent: str | None = None
    locale: str | None = None
    timezone: str | None = None
    active: bool | None = None
    page: Page | None = None
    screen: Screen | None = None
    campaign: Campaign | None = None
    library: Library | None = None


class _StrictPage(Page, forbid_unknown_fields=True):
    pass


class _StrictScreen(Screen, forbid_unknown_fields=True):
    pass


class _StrictCampaign(Campaign, forbid_unknown_fields=True):
    id: Any = msgspec.UNSET
    """analytics.js's ``utm_id``: not canonical, kept in ``extra["campaign"]`` as ``normalize_context``
    keeps it."""


class _StrictLibrary(Library, forbid_unknown_fields=True):
    pass


class _Strict(msgspec.Struct, forbid_unknown_fields=True):
    """A context of canonical keys, each of the right type, and of analytics.js's other two (the
    top-level ``userAgentData``, ``campaign.id``): decoded straight from the message's bytes (no dicts
    made for the canonical keys), it is what :func:`normalize_context` reads. Any other context fails
    to decode and is read as JSON."""

    ip: str | None = None
    userAgent: str | None = None
    locale: str | None = None
    timezone: str | None = None
    active: bool | None = None
    page: _StrictPage | None = None
    screen: _StrictScreen | None = None
    campaign: _StrictCampaign | None = None
    library: _StrictLibrary | None = None
    userAgentData: Any = msgspec.UNSET
    """analytics.js's client hints: not canonical, kept in ``extra``."""


_astuple = msgspec.structs.astuple


class _TypedMessage(Message):
    """A message whose ``context`` holds only what :class:`_Strict` takes: read in one decode, without
    the context's span being skipped first and decoded after (:func:`_read_message`)."""

    context: _Strict | None = None


_decode_typed = msgspec.json.Decoder(_TypedMessage).decode


def _context_of(known: _Strict, request_ip: str | None) -> Context:
    """The canonical context of a :class:`_Strict` one (the canonical structs, not the strict ones)."""
    page, screen, campaign, library = known.page, known.screen, known.campaign, known.library
    extra = {}
    if known.userAgentData is not msgspec.UNSET:
        extra["userAgentData"] = known.userAgentData
    found: Campaign | None = None
    if campaign is not None:
        if campaign.id is not msgspec.UNSET:  # a nested leftover: after the top-level keys, as there
            extra["campaign"] = {"id": campaign.id}
        found = Campaign(campaign.source, campaign.medium, campaign.name, campaign.term, campaign.content)
    return Context(
        ip=known.ip or request_ip,
        user_agent=known.userAgent,
        locale=known.locale,
        timezone=known.timezone,
        page=None if page is None else Page(*_astuple(page)),
        screen=None if screen is None else Screen(*_astuple(screen)),
        campaign=found,
        library=None if library is None else Library(*_astuple(library)),
        active=known.active,
        extra=extra,
    )


def normalize_context(ctx: dict | None, request_ip: str | None) -> Context:
    """Segment's camelCase context to the canonical one; unknown keys are kept in ``extra``.

    Values of the wrong type for a canonical field are not dropped: they stay in ``extra`` under the
    client's key. A context whose canonical fields are all well typed (real SDKs' contexts) is read
    by one ``msgspec.convert``; one that is not is read field by field (:func:`_context_by_field`).
    """
    if not ctx:
        return Context(ip=request_ip)
    try:
        known = msgspec.convert(ctx, _Known)
    except msgspec.ValidationError:
        return _context_by_field(ctx, request_ip)
    extra = {k: v for k, v in ctx.items() if k not in _CONTEXT_KEYS}
    out = Context(
        ip=known.ip or request_ip,
        user_agent=known.userAgent,
        locale=known.locale,
        timezone=known.timezone,
        page=known.page,
        screen=known.screen,
        campaign=known.campaign,
        library=known.library,
        active=known.active,
        extra=extra,
    )
    for key, fields in _NESTED_FIELDS:
        if getattr(known, key) is not None:
            value = ctx[key]
            if not value.keys() <= fields:  # e.g. analytics.js's campaign.id: kept beside the others
                extra[key] = {k: value[k] for k in value.keys() - fields}
    return out


def _context_by_field(ctx: dict, request_ip: str | None) -> Context:
    extra = {k: v for k, v in ctx.items() if k not in _CONTEXT_KEYS}
    get = ctx.get
    out = Context(extra=extra)
    for key, field in (
        ("ip", "ip"),
        ("userAgent", "user_agent"),
        ("locale", "locale"),
        ("timezone", "timezone"),
    ):
        value = get(key)
        if value is None:
            continue
        if value.__class__ is str:
            setattr(out, field, value)
        else:
            extra[key] = value
    if not out.ip:
        out.ip = request_ip
    active = get("active")
    if active is not None:
        if active.__class__ is bool:
            out.active = active
        else:
            extra["active"] = active
    for key, struct in _NESTED:
        value = get(key)
        if value is None:
            continue
        try:
            setattr(out, key, msgspec.convert(value, struct))
        except msgspec.ValidationError:
            extra[key] = value
            continue
        leftover = value.keys() - struct.__struct_fields__
        if leftover:  # e.g. analytics.js's campaign.id: kept beside the canonical fields
            extra[key] = {k: value[k] for k in leftover}
    return out


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
        if kind.__class__ is not str or kind not in MESSAGE_TYPES:
            properties.setdefault("trackgate_type", kind)
            if event.group_ids:
                properties.setdefault("groupIds", event.group_ids)
        out["properties"] = properties
    if event.traits and out["type"] in ("identify", "group"):
        out["traits"] = event.traits
    context = denormalize_context(event.context)
    if event.group_id is not None and out["type"] != "group":
        # Segment's spec carries the account of a non-group call in context.groupId (Bucket's companyId)
        context.setdefault("groupId", event.group_id)
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
            leftover = out.get(key)
            known = msgspec.to_builtins(struct)
            out[key] = {**leftover, **known} if isinstance(leftover, dict) else known
    return out


# --- forwarding and replay -------------------------------------------------------------------------


def _basic(creds: dict[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{creds['write_key']}:".encode()).decode()
    return {"authorization": f"Basic {token}"}


TRANSPORT = Transport(
    kind="segment",
    dialect="segment",
    default_base="https://api.segment.io",
    credentials=("write_key",),
    route=lambda item: "/v1/batch",
    wrap=lambda items, creds, now: {"batch": items, "sentAt": iso_millis(now)},
    headers=_basic,
    # Segment: 32 KB an event, 500 KB and 2,500 events a batch; analytics-python stays at 475 KB
    max_items=500,
    max_bytes=475_000,
    job_events=500,
    notes="POST {base}/v1/batch, Basic base64(write_key:) (Segment, RudderStack, Hightouch)",
)


def replay_call(payload: Any) -> str:
    """A stored message is posted to its ``type``'s call, a ``{"batch": [...]}`` to ``batch``."""
    return call_by_shape(CALLS, payload)
