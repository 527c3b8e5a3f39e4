"""Bucket's tracking API and Reflag's runtime API (Bucket was renamed Reflag; same wire format).

Two ways in, one item format:

- ``tracking`` (``dialect_version``): one call per request, ``POST /{tracking_key}/{user,company,event,
  feedback}`` (the old ``tracking.bucket.co``) or ``POST /{user,company,event,feedback}`` with
  ``Authorization: Bearer <key>`` (``front.reflag.com``); the body is one JSON object;
- ``bulk``: ``POST /bulk``, a JSON array of items, each with a ``type`` (``user``, ``company``, ``event``,
  ``feature-flag-event``, ``prompt-event``; ``feedback`` too), as @reflag/node-sdk and
  @reflag/browser-sdk send them.

Rules (the vendor's tables, see README "Bucket / Reflag"):

- user needs ``userId``; company needs ``companyId`` (``userId`` optional: a membership); event needs
  ``event`` and ``userId``; feedback needs ``featureId`` (or Reflag's ``key``, the flag key), ``userId``,
  and a ``score`` from 1 to 5 and/or a non-empty ``comment``; prompt-event needs ``userId``, ``action``
  and ``promptId``; feature-flag-event needs ``action`` and ``key``;
- ids may be strings or numbers (numbers are stored as strings); ``attributes`` and ``context`` are
  objects; ``context.active`` is a boolean; ``timestamp`` is ISO 8601;
- a bulk item of a type this adapter does not know is kept, not refused: a ``track`` named after its
  type, every field in ``properties``, ``enrichment.unknown_type = true`` (a newer SDK's batch is not
  dropped, and nothing of it is lost);
- a request is accepted or refused as a whole: one bad item refuses the bulk with a 400 that names the
  item and the field, and nothing of it is stored.

Bucket has no message ids: each event's ``message_id`` is ``<request id>-<index>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from trackgate.adapters.base import InvalidPayload, PayloadTooLarge, Transport
from trackgate.adapters.fields import (
    assigned_message_id,
    decode_json,
    has_nul,
    iso_time,
    json_kind,
    json_value,
    obj,
    scrubbed,
    utf8,
)
from trackgate.schemas.event import Context, Event, EventType, Library
from trackgate.schemas.request import RequestMeta

DIALECT = dialect = "bucket"
MAX_CALL_BYTES = 64 * 1024
MAX_BULK_BYTES = 1024 * 1024
MAX_BULK_ITEMS = 1000

CALLS = frozenset({"user", "company", "event", "feedback", "feature-flag-event", "prompt-event", "bulk"})
BODIES: Mapping[str, type] = {}
"""Every call takes JSON read field by field (``bulk``: an array of the others' bodies with a ``type``)."""
"""What a path can name: the four tracking calls, Reflag's single-item event paths, and bulk."""
ITEM_TYPES = frozenset({"user", "company", "event", "feedback", "feature-flag-event", "prompt-event"})
FLAG_EVENT = "feature-flag-event"
PROMPT_EVENT = "prompt-event"
"""The names of the ``track`` events a feature-flag-event or a prompt-event becomes."""

_decode_any = msgspec.json.Decoder().decode
_decode_bulk = msgspec.json.Decoder(list[msgspec.Raw]).decode


class Envelope(msgspec.Struct):
    """A parsed request: each item's exact bytes and its decoded object."""

    call: str
    items: list[tuple[bytes, dict[str, Any]]]
    is_bulk: bool = False
    has_nul: bool = False


# --- parse -----------------------------------------------------------------------------------------


def parse(call: str, body: bytes) -> Envelope:
    """Bytes to envelope. ``call`` is what the path names: ``user``, ``company``, ``event``,
    ``feedback``, ``feature-flag-event``, ``prompt-event`` or ``bulk``."""
    if call not in CALLS:
        raise InvalidPayload("unknown_call", f"unknown call {call!r}")
    utf8(body)
    found_nul = has_nul(body)
    if call != "bulk":
        if len(body) > MAX_CALL_BYTES:
            raise PayloadTooLarge(
                "request_too_large", f"body is {len(body)} bytes, over the {MAX_CALL_BYTES}-byte limit"
            )
        item = json_value(body)
        if item.__class__ is not dict:
            raise InvalidPayload("invalid_body", f"body must be a JSON object, got {json_kind(item)}")
        return Envelope(call=call, items=[(body, item)], has_nul=found_nul)

    if len(body) > MAX_BULK_BYTES:
        raise PayloadTooLarge(
            "request_too_large", f"body is {len(body)} bytes, over the {MAX_BULK_BYTES}-byte limit"
        )
    raws = decode_json(_decode_bulk, body, invalid="body must be a JSON array of items")
    if not raws:
        raise InvalidPayload("empty_bulk", "body is an empty array: nothing to track")
    if len(raws) > MAX_BULK_ITEMS:
        raise PayloadTooLarge(
            "too_many_items", f"body has {len(raws)} items, over the limit of {MAX_BULK_ITEMS}"
        )
    items: list[tuple[bytes, dict[str, Any]]] = []
    for i, raw in enumerate(raws):
        data = bytes(raw)
        item = decode_json(_decode_any, data, path=f"[{i}]", item=True)  # a number out of range fails here
        if item.__class__ is not dict:
            raise InvalidPayload(
                "invalid_item", f"[{i}] must be a JSON object, got {json_kind(item)}", f"[{i}]"
            )
        items.append((data, item))
    return Envelope(call="bulk", items=items, is_bulk=True, has_nul=found_nul)


def credentials(headers: Mapping[str, str], envelope: Envelope | None) -> str | None:
    """The key in ``Authorization: Bearer <key>`` (a secret or a publishable key), or None.

    The other places a key can be (the old API's path, Reflag's ``?publishableKey=``) are not in the
    headers: ``gateway.bucket`` reads them."""
    return bearer(headers.get("authorization"))


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


# --- decode ----------------------------------------------------------------------------------------


def decode(meta: RequestMeta, envelope: Envelope) -> list[Event]:
    """Validate every item, then normalize. Raises on the first broken rule; returns all or none.

    Errors name the field; in a bulk they are prefixed with the item's index (``[2].userId``)."""
    library = sdk_library(meta.headers)
    version = "bulk" if envelope.is_bulk else "tracking"
    events: list[Event] = []
    for i, (raw, item) in enumerate(envelope.items):
        try:
            if envelope.is_bulk:
                kind = item.get("type")
                if kind is None or kind == "":
                    raise InvalidPayload("missing_type", "type is required", "type")
                if kind.__class__ is not str:
                    raise InvalidPayload(
                        "invalid_type", f"type must be a string, got {json_kind(kind)}", "type"
                    )
            else:
                kind = envelope.call
            events.append(_decode_one(meta, kind, version, i, raw, item, library))
        except InvalidPayload as exc:
            if envelope.is_bulk:
                exc.message = f"[{i}].{exc.message}"
                exc.path = f"[{i}].{exc.path}" if exc.path else f"[{i}]"
                exc.args = (exc.message,)
            raise
    return scrubbed(events) if envelope.has_nul else events


def _decode_one(
    meta: RequestMeta,
    kind: str,
    version: str,
    index: int,
    raw: bytes,
    item: dict[str, Any],
    library: Library | None,
) -> Event:
    get = item.get
    name = user_id = group_id = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    enrichment: dict[str, Any] = {}
    etype: EventType
    if kind == "user":
        etype = "identify"
        user_id = _required_id(item, "userId", kind)
        traits = obj(get("attributes"), "attributes") or {}
    elif kind == "company":
        etype = "group"
        group_id = _required_id(item, "companyId", kind)
        user_id = _id(get("userId"), "userId")
        traits = obj(get("attributes"), "attributes") or {}
    elif kind == "event":
        etype = "track"
        name = get("event")
        if name is None or name == "":
            raise InvalidPayload("missing_event", "event is required for event", "event")
        if name.__class__ is not str:
            raise InvalidPayload(
                "invalid_field_type", f"event must be a string, got {json_kind(name)}", "event"
            )
        user_id = _required_id(item, "userId", kind)
        group_id = _id(get("companyId"), "companyId")
        properties = obj(get("attributes"), "attributes") or {}
    elif kind == "feedback":
        etype = "feedback"
        user_id, group_id, properties = _feedback(item)
    elif kind == FLAG_EVENT:
        etype, name = "track", FLAG_EVENT
        _required_str(item, "action", kind)
        _required_str(item, "key", kind)
        eval_context = obj(get("evalContext"), "evalContext") or {}
        user_id = _nested_id(eval_context, "user")
        group_id = _nested_id(eval_context, "company")
        properties = {k: v for k, v in item.items() if k != "type"}
    elif kind == PROMPT_EVENT:
        etype, name = "track", PROMPT_EVENT
        user_id = _required_id(item, "userId", kind)
        _required_str(item, "action", kind)
        _required_id(item, "promptId", kind)
        properties = {k: v for k, v in item.items() if k not in ("type", "userId")}
    else:  # a bulk item type we do not know: kept whole, flagged
        etype, name = "track", kind
        user_id = _loose_id(get("userId"))
        group_id = _loose_id(get("companyId"))
        properties = {k: v for k, v in item.items() if k != "type"}
        enrichment = {"unknown_type": True}

    original = (
        iso_time(get("timestamp"), "timestamp") if kind in ITEM_TYPES else _loose_time(get("timestamp"))
    )
    return Event(
        id="",
        message_id=assigned_message_id(meta, index, original),
        source_id=meta.source_id,
        dialect=DIALECT,
        dialect_version=version,
        type=etype,
        name=name,
        user_id=user_id,
        group_id=group_id,
        properties=properties,
        traits=traits,
        context=_context(get("context") if kind in ITEM_TYPES else None, meta, library),
        timestamp=original or meta.received_at,
        original_timestamp=original,
        received_at=meta.received_at,
        raw=raw.decode(),
        enrichment=enrichment,
    )


_FEEDBACK_MAPPED = frozenset({"type", "userId", "companyId", "featureId", "key", "score", "comment"})


def _feedback(item: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """user id, company id, properties (``feature_id``, ``flag_key``, ``score``, ``comment``; the
    rest of the item as sent: ``question``, ``promptId``, ``source``, ``feedbackId``, ...)."""
    get = item.get
    feature_id = _id(get("featureId"), "featureId")
    flag_key = _id(get("key"), "key")
    if feature_id is None and flag_key is None:
        raise InvalidPayload(
            "missing_feature_id", "featureId (or the flag's key) is required for feedback", "featureId"
        )
    user_id = _required_id(item, "userId", "feedback")
    group_id = _id(get("companyId"), "companyId")
    score = get("score")
    if score is not None and (score.__class__ not in (int, float) or not 1 <= score <= 5):
        raise InvalidPayload("invalid_score", f"score must be a number from 1 to 5, got {score!r}", "score")
    comment = get("comment")
    if comment is not None and comment.__class__ is not str:
        raise InvalidPayload(
            "invalid_field_type", f"comment must be a string, got {json_kind(comment)}", "comment"
        )
    if score is None and not comment:
        raise InvalidPayload(
            "missing_score_or_comment", "feedback needs a score (1-5), a comment, or both", "score"
        )
    properties: dict[str, Any] = {}
    if feature_id is not None:
        properties["feature_id"] = feature_id
    if flag_key is not None:
        properties["flag_key"] = flag_key
    if score is not None:
        properties["score"] = score
    if comment:
        properties["comment"] = comment
    for key, value in item.items():
        if key not in _FEEDBACK_MAPPED and key not in ("timestamp", "context"):
            properties[key] = value
    return user_id, group_id, properties


# --- field helpers ---------------------------------------------------------------------------------


# Not fields.string_id: Bucket's ids are numbers too, so an integral float is its integer (1e3 is "1000")
def _id(value: Any, field: str) -> str | None:
    """An id: a string, or a number (stored as its decimal text, ``1234567890``)."""
    if value is None or value == "":
        return None
    if value.__class__ is str:
        return value
    if value.__class__ is int:
        return str(value)
    if value.__class__ is float:
        return str(int(value)) if value.is_integer() else repr(value)
    raise InvalidPayload(
        "invalid_field_type", f"{field} must be a string or a number, got {json_kind(value)}", field
    )


def _required_id(item: dict[str, Any], field: str, kind: str) -> str:
    value = _id(item.get(field), field)
    if value is None:
        raise InvalidPayload(f"missing_{_snake(field)}", f"{field} is required for {kind}", field)
    return value


def _required_str(item: dict[str, Any], field: str, kind: str) -> str:
    value = item.get(field)
    if value is None or value == "":
        raise InvalidPayload(f"missing_{_snake(field)}", f"{field} is required for {kind}", field)
    if value.__class__ is not str:
        raise InvalidPayload("invalid_field_type", f"{field} must be a string, got {json_kind(value)}", field)
    return value


def _snake(field: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in field)


def _loose_id(value: Any) -> str | None:
    try:
        return _id(value, "")
    except InvalidPayload:
        return None


def _nested_id(context: dict[str, Any], entity: str) -> str | None:
    """``evalContext.user.id`` / ``evalContext.company.id``, if it is an id."""
    inner = context.get(entity)
    return _loose_id(inner.get("id")) if inner.__class__ is dict else None


def _loose_time(value: Any) -> datetime | None:
    try:
        return iso_time(value, "timestamp")
    except InvalidPayload:
        return None


def _context(value: Any, meta: RequestMeta, library: Library | None) -> Context:
    """Bucket's ``context`` (only ``active`` is documented; other keys are kept in ``extra``), the
    request's IP and User-Agent, and the SDK named by its version header."""
    ctx = obj(value, "context") or {}
    active = ctx.get("active")
    if active is not None and active.__class__ is not bool:
        raise InvalidPayload(
            "invalid_field_type",
            f"context.active must be a boolean, got {json_kind(active)}",
            "context.active",
        )
    extra = {k: v for k, v in ctx.items() if k != "active"}
    return Context(ip=meta.ip, user_agent=meta.user_agent, library=library, active=active, extra=extra)


_SCOPES = (("reflag-sdk-version", "@reflag"), ("bucket-sdk-version", "@bucketco"))


def sdk_library(headers: Mapping[str, str]) -> Library | None:
    """``reflag-sdk-version: node-sdk/1.7.1`` -> ``@reflag/node-sdk`` 1.7.1; the old tracking SDK sends
    ``bucket-sdk-version: 2.4.0`` (no name) -> ``@bucketco/tracking-sdk`` 2.4.0."""
    for header, scope in _SCOPES:
        value = headers.get(header)
        if not value:
            continue
        name, _, version = value.strip().rpartition("/")
        return Library(name=f"{scope}/{name or 'tracking-sdk'}", version=version or None)
    return None


# --- encode: canonical events to the items @reflag/node-sdk posts to /bulk ------------------------


def encode(events: list[Event]) -> list[dict[str, Any]]:
    """Canonical events as Reflag ``/bulk`` items, the way @reflag/node-sdk builds them.

    - identify -> ``user``; group -> ``company`` (``userId`` when it is a membership); track ->
      ``event`` (``companyId`` from ``group_id``); a Bucket feature-flag-event / prompt-event comes back
      as the item it was;
    - feedback -> an item typed ``feedback`` whose other fields are Reflag's ``POST /feedback`` body
      (Reflag's SDKs post feedback there, not in a bulk; trackgate accepts it in both);
    - types Reflag has no item for (page, screen, alias, increment, decrement, assign_group) ->
      ``event`` items named after the page/screen name or the type, with ``trackgate_type`` and the
      canonical fields in ``attributes``;
    - Reflag has no anonymous users: an event with only an ``anonymous_id`` is sent with it as
      ``userId``.

    Every item carries ``timestamp``; ``context.active`` is sent when the event has it.
    """
    return [encode_one(event) for event in events]


def encode_one(event: Event) -> dict[str, Any]:
    kind = event.type
    user_id = event.user_id or event.anonymous_id
    out: dict[str, Any]
    if event.dialect == DIALECT and kind == "track" and event.name in (FLAG_EVENT, PROMPT_EVENT):
        out = {"type": event.name, **event.properties}
        if event.name == PROMPT_EVENT and user_id is not None:
            out["userId"] = user_id
    elif kind == "identify":
        out = {"type": "user", "userId": user_id, "attributes": event.traits}
    elif kind == "group":
        out = {"type": "company", "companyId": event.group_id}
        if user_id is not None:
            out["userId"] = user_id
        out["attributes"] = event.traits
    elif kind == "feedback":
        props = dict(event.properties)
        out = {"type": "feedback"}
        for canonical, field in (("feature_id", "featureId"), ("flag_key", "key")):
            if canonical in props:
                out[field] = props.pop(canonical)
        out["userId"] = user_id
        if event.group_id is not None:
            out["companyId"] = event.group_id
        out.update(props)
    else:
        attributes = dict(event.properties)
        if kind == "track":
            name = event.name
        else:
            name = event.name if kind in ("page", "screen") and event.name else kind
            attributes.setdefault("trackgate_type", kind)
            if event.previous_id is not None:
                attributes.setdefault("previousId", event.previous_id)
            if event.group_ids:
                attributes.setdefault("groupIds", event.group_ids)
        out = {"type": "event", "event": name, "userId": user_id}
        if event.group_id is not None:
            out["companyId"] = event.group_id
        out["attributes"] = attributes
    if event.context.active is not None and out["type"] in ("user", "company", "event"):
        out["context"] = {"active": event.context.active}
    out["timestamp"] = event.timestamp.isoformat()
    return out


# --- forwarding and replay -------------------------------------------------------------------------


def _reflag_ok(status: int, body: bytes) -> bool:
    """Reflag's SDKs count a reply as delivered only when it is 2xx AND its JSON has success: true."""
    if not 200 <= status < 300:
        return False
    try:
        reply = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return isinstance(reply, dict) and reply.get("success") is True


def _wrap(items: list[dict[str, Any]], creds: dict[str, str], now: float) -> Any:
    if items[0].get("type") == "feedback":  # Reflag's POST /feedback body: the item without its type
        return {k: v for k, v in items[0].items() if k != "type"}
    return items


TRANSPORT = Transport(
    kind="bucket",
    dialect="bucket",
    default_base="https://front.reflag.com",
    credentials=("secret_key",),
    # feedback has its own call; user, company and event items go to /bulk
    route=lambda item: "/feedback" if item.get("type") == "feedback" else "/bulk",
    wrap=_wrap,
    single_routes=frozenset({"/feedback"}),
    headers=lambda creds: {"authorization": f"Bearer {creds['secret_key']}"},
    success=_reflag_ok,
    max_items=100,  # the node SDK's batch
    max_bytes=500 * 1024,
    job_events=100,
    notes="POST {base}/bulk [items], Bearer secret key; a reply counts only with success:true",
)


def replay_call(payload: Any) -> str:
    """An array is a ``bulk`` body; an object one of the old tracking API's calls, told by its
    required fields."""
    if isinstance(payload, dict):
        if "featureId" in payload:
            return "feedback"
        if "event" in payload:
            return "event"
        return "company" if "companyId" in payload else "user"
    return "bulk"
