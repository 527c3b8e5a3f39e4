"""Commanders Act's HTTP Tracking API dialect: v2, and the deprecated v1 (see README, "Commanders Act").

Paths: ``POST /events`` (one event) and ``POST /events/batch`` (``{"batch": [...]}``), keyed by
``?token=<source key>`` or ``Authorization: Bearer <source key>`` (the header wins), ``?tc_s=<site id>``.

Rules, as the vendor documents them (vendors.md §3):

- 32 KB a request or event, 500 KB a batch; the vendor answers 200 to everything except a body that
  is too large or not JSON (400). So an event it cannot take is *refused*, not the request: the
  gateway answers 200 saying which items were refused and why, and keeps them in quarantine;
- required: ``event_name``, ``context.event_id`` and ``context.event_timestamp`` (milliseconds, an
  integer or a numeric string; also read at the item's root, where the vendor's batch example puts it);
- v1 (deprecated): the event data in ``properties`` (with ``properties.user``), and ``event_id``,
  ``event_timestamp``, ``page`` (``location`` for the URL), ``device``, ``app`` at the root. The
  version is recognized per item from its shape and recorded as ``dialect_version`` ``v1``/``v2``.

Mapping: ``page_view`` is a page event (named after ``page_name``), anything else a track event
named ``event_name``; the event data (everything at the root but ``event_name``, ``user``,
``context``, ``event_timestamp``) are the properties, as sent (``revenue`` is already in major units,
``currency`` ISO 4217); ``user.id`` -> ``user_id``, ``user.consistent_anonymous_id`` ->
``anonymous_id``, the rest of ``user`` -> traits (``firstname``/``lastname`` as ``firstName``/
``lastName``); ``context.event_id`` -> ``message_id``; ``context.page`` -> ``context.page`` (``lang``,
``viewport`` kept beside it in ``extra``), ``context.device`` ``ip``/``user_agent``/``lang``/``timezone``
-> ``context.ip``/``user_agent``/``locale``/``timezone`` (the request's IP and User-Agent when absent),
``cookie`` and the rest in ``extra.device``; ``context.app`` and any other context key in ``extra``;
the ``tc_s`` site id in ``extra.tc_s``.

``encode`` emits v2; ``v1_to_v2`` is the field-by-field migration ``trackgate convert`` uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from trackgate.adapters.base import Decoded, InvalidPayload, PayloadTooLarge, Refused, Transport
from trackgate.adapters.fields import (
    call_by_shape,
    decode_json,
    has_nul,
    json_value,
    scrubbed,
    string_id,
    too_deep,
    utf8,
)
from trackgate.schemas.event import Context, Event, EventType, Page
from trackgate.schemas.request import RequestMeta

DIALECT = dialect = "commandersact"
VERSIONS = ("v1", "v2")
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_EVENT_ID = 255
"""Not documented by the vendor: the event id is the dedupe key, so a bound keeps it indexable."""

CALLS = {"event": "event", "batch": "batch"}
PAGE_EVENT = "page_view"
V2_RESERVED = ("event_name", "user", "context", "event_timestamp")
"""Root keys of a v2 event that are not event data."""
V1_META = ("event_id", "event_timestamp", "page", "device", "app")
"""Root keys of a v1 event that v2 moved into ``context``."""

_decode_json = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MS = int((datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).total_seconds() * 1000)


class Item(msgspec.Struct):
    """One event as it arrived: its exact bytes, and its JSON value (None when it is not JSON)."""

    raw: bytes
    value: Any


class Envelope(msgspec.Struct):
    call: str
    items: list[Item]
    refused: list[Refused] = []
    """Items refused while parsing (over 32 KB, not an object): answered 200 and quarantined."""


class BatchBody(msgspec.Struct):
    """A v2 batch: its events as they arrived, each read on its own (a bad one is refused alone)."""

    batch: list[msgspec.Raw] | None = None


BODIES: Mapping[str, type] = {"batch": BatchBody}


_decode_batch = msgspec.json.Decoder(BatchBody).decode


def _too_large(what: str, size: int, limit: int, code: str, path: str | None = None) -> PayloadTooLarge:
    return PayloadTooLarge(code, f"{what} is {size} bytes, over the {limit}-byte limit", path)


def parse(call: str, body: bytes) -> Envelope:
    """Bytes to envelope; raises only for what the vendor answers 400 to: too large, or not JSON."""
    kind = CALLS.get(call)
    if kind is None:
        raise InvalidPayload("unknown_call", f"unknown call {call!r}")
    limit = MAX_BATCH_BYTES if kind == "batch" else MAX_EVENT_BYTES
    if len(body) > limit:
        raise _too_large(kind, len(body), limit, "request_too_large")
    utf8(body)
    if kind == "event":
        return Envelope(call=kind, items=[Item(body, json_value(body))])
    shape = 'batch: the body must be {"batch": [...]}'
    try:
        raws = decode_json(_decode_batch, body, code="invalid_batch", invalid=shape).batch
    except InvalidPayload as exc:
        if exc.code != "invalid_batch":  # not JSON: the vendor's 400
            raise
        raws = None  # JSON, but not {"batch": [...]}: refused below, like any event it cannot take
    if raws is None:
        refused = Refused(index=0, code="invalid_batch", reason=shape, raw=body.decode())
        return Envelope(call=kind, items=[], refused=[refused])
    items: list[Item] = []
    refused_items: list[Refused] = []
    for i, raw in enumerate(raws):
        data = bytes(raw)
        if len(data) > MAX_EVENT_BYTES:
            refused_items.append(
                Refused(
                    index=i,
                    code="event_too_large",
                    reason=f"batch[{i}] is {len(data)} bytes, over the {MAX_EVENT_BYTES}-byte limit",
                    raw=data.decode(),
                )
            )
            items.append(Item(data, None))
            continue
        try:
            items.append(Item(data, _decode_json(data)))
        except msgspec.DecodeError as exc:  # a number out of range: this event is refused, not the batch
            refused_items.append(
                Refused(index=i, code="invalid_json", reason=f"batch[{i}]: {exc}", raw=data.decode())
            )
            items.append(Item(data, None))
        except RecursionError as exc:
            raise too_deep(f"batch[{i}]") from exc
    return Envelope(call=kind, items=items, refused=refused_items)


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def credentials(headers: Mapping[str, str], envelope: Envelope | None) -> str | None:
    """The source key from ``Authorization: Bearer``. The ``token`` query parameter (used when the
    header is absent) is read by the gateway's authenticate hook, which sees the query string."""
    return bearer(headers.get("authorization"))


# --- decode ---------------------------------------------------------------------------------------


def decode_partial(meta: RequestMeta, envelope: Envelope) -> Decoded:
    """The events the request's items make, and each refused item with its index and reason."""
    refused = list(envelope.refused)
    taken = {r.index for r in refused}
    events: list[Event] = []
    prefix = "batch[{}]." if envelope.call == "batch" else ""
    for i, item in enumerate(envelope.items):
        if i in taken:
            continue
        try:
            events.append(decode_value(meta, item.value, item.raw, i))
        except InvalidPayload as exc:
            where = prefix.format(i)
            refused.append(
                Refused(
                    index=i,
                    code=exc.code,
                    reason=f"{where}{exc.message}",
                    message_id=_event_id_of(item.value),
                    raw=item.raw.decode(),
                )
            )
    for r in refused:
        r.dialect = DIALECT
        value = _item_value(envelope, r.index) if r.code != "invalid_batch" else None
        r.version = version_of(value) if value.__class__ is dict else ""
        r.request_id = meta.request_id
        r.received_at = meta.received_at
    refused.sort(key=lambda r: r.index)
    return Decoded(events=events, refused=refused)


def _item_value(envelope: Envelope, index: int) -> Any:
    return envelope.items[index].value if 0 <= index < len(envelope.items) else None


def decode(meta: RequestMeta, envelope: Envelope) -> list[Event]:
    """All or nothing: the first refused item is raised (its reason prefixed ``batch[i].``)."""
    decoded = decode_partial(meta, envelope)
    if decoded.refused:
        first = decoded.refused[0]
        raise InvalidPayload(
            first.code, first.reason, f"batch[{first.index}]" if envelope.call == "batch" else None
        )
    return decoded.events


def decode_item(meta: RequestMeta, raw: bytes, index: int = 0) -> Event:
    """One item's bytes to its event (quarantine replay); raises ``InvalidPayload``."""
    if len(raw) > MAX_EVENT_BYTES:
        raise _too_large("event", len(raw), MAX_EVENT_BYTES, "event_too_large")
    return decode_value(meta, json_value(raw), raw, index)


def version_of(value: Any) -> str:
    """``v1`` when the item has no ``context`` object and carries v1's shape (``properties``, or
    ``event_id``/``page``/``device``/``app`` at the root); otherwise ``v2``."""
    if value.__class__ is not dict:
        return "v2"
    if value.get("context").__class__ is dict:
        return "v2"
    if value.get("properties").__class__ is dict:
        return "v1"
    for key in ("event_id", "page", "device", "app"):
        if key in value:
            return "v1"
    return "v2"


# v2 paths as v1 names them, for the reasons of refused v1 events (longest prefix first)
_V1_PATHS = (
    ("context.page.url", "page.location"),
    ("context.event_timestamp", "event_timestamp"),
    ("context.event_id", "event_id"),
    ("context.page", "page"),
    ("context.device", "device"),
    ("context.app", "app"),
    ("user", "properties.user"),
)


def _v1_path(path: str | None) -> str | None:
    if path is None:
        return None
    for v2, v1 in _V1_PATHS:
        if path == v2 or path.startswith(v2 + "."):
            return v1 + path[len(v2) :]
    return path


def decode_value(meta: RequestMeta, value: Any, raw: bytes, index: int = 0) -> Event:
    """One item (its JSON value and exact bytes) to a canonical event; raises ``InvalidPayload``."""
    if value.__class__ is not dict:
        raise InvalidPayload("invalid_event", "an event must be a JSON object", None)
    version = version_of(value)
    if version == "v1":
        try:
            value = v1_to_v2(value)
            event = _decode_v2(meta, value, raw, version)
        except InvalidPayload as exc:
            path = _v1_path(exc.path)
            message = exc.message
            if exc.path and path is not None and path != exc.path and message.startswith(exc.path):
                message = path + message[len(exc.path) :]
            raise InvalidPayload(exc.code, message, path) from exc
    else:
        event = _decode_v2(meta, value, raw, version)
    return scrubbed([event])[0] if has_nul(raw) else event


def _decode_v2(meta: RequestMeta, item: dict, raw: bytes, version: str) -> Event:
    name = string_id(item.get("event_name"), "event_name")
    if name is None:
        raise InvalidPayload("missing_event_name", "event_name is required", "event_name")
    context = item.get("context")
    if context is None:
        raise InvalidPayload("missing_event_id", "context.event_id is required", "context.event_id")
    if context.__class__ is not dict:
        raise InvalidPayload("invalid_field_type", "context must be an object", "context")
    event_id = string_id(context.get("event_id"), "context.event_id")
    if event_id is None:
        raise InvalidPayload("missing_event_id", "context.event_id is required", "context.event_id")
    if len(event_id) > MAX_EVENT_ID:
        raise InvalidPayload(
            "event_id_too_long",
            f"context.event_id is {len(event_id)} characters, over the limit of {MAX_EVENT_ID}",
            "context.event_id",
        )
    if "event_timestamp" in context:
        timestamp = _ms(context["event_timestamp"], "context.event_timestamp")
    else:
        timestamp = _ms(item.get("event_timestamp"), "event_timestamp")
    if timestamp is None:
        raise InvalidPayload(
            "missing_event_timestamp", "context.event_timestamp is required", "context.event_timestamp"
        )

    user = item.get("user")
    if user is not None and user.__class__ is not dict:
        raise InvalidPayload("invalid_field_type", "user must be an object", "user")
    user = user or {}
    user_id = string_id(user.get("id"), "user.id")
    anonymous_id = string_id(user.get("consistent_anonymous_id"), "user.consistent_anonymous_id")
    traits: dict[str, Any] = {
        (_TRAIT_NAMES.get(k) or k): v for k, v in user.items() if k not in ("id", "consistent_anonymous_id")
    }
    properties = {k: v for k, v in item.items() if k not in V2_RESERVED}

    kind: EventType = "track"
    if name == PAGE_EVENT:
        kind = "page"
        page_name = properties.get("page_name")
        name = page_name if page_name.__class__ is str and page_name else None

    return Event(
        id="",
        message_id=event_id,
        source_id=meta.source_id,
        dialect=DIALECT,
        dialect_version=version,
        type=kind,
        name=name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        properties=properties,
        traits=traits,
        context=normalize_context(context, meta),
        timestamp=timestamp,
        original_timestamp=timestamp,
        received_at=meta.received_at,
        raw=raw.decode(),
    )


_TRAIT_NAMES = {"firstname": "firstName", "lastname": "lastName"}
_TRAIT_NAMES_BACK = {v: k for k, v in _TRAIT_NAMES.items()}


def _ms(value: Any, path: str) -> datetime | None:
    """Milliseconds since the epoch: an integer, or a string of digits (the vendor's examples)."""
    if value is None or value == "":
        return None
    ms: int | None = None
    if value.__class__ is int:
        ms = value
    elif value.__class__ is str and value.isascii() and value.isdigit():
        ms = int(value)
    if ms is None or not 0 <= ms <= _MAX_MS:
        raise InvalidPayload(
            "invalid_timestamp",
            f"{path} must be milliseconds since the epoch (an integer or a numeric string)",
            path,
        )
    return _EPOCH + timedelta(milliseconds=ms)


_CONTEXT_KEYS = frozenset({"event_id", "event_timestamp", "page", "device"})
_PAGE_FIELDS = frozenset({"url", "path", "referrer", "title", "search"})


def normalize_context(ctx: dict, meta: RequestMeta) -> Context:
    """v2 ``context`` to the canonical one (see the module docstring); nothing the client sent is lost:
    what has no canonical field stays in ``extra`` under the client's key."""
    extra: dict[str, Any] = {k: v for k, v in ctx.items() if k not in _CONTEXT_KEYS}
    out = Context(extra=extra)
    page = ctx.get("page")
    if page is not None:
        if page.__class__ is not dict:
            raise InvalidPayload("invalid_field_type", "context.page must be an object", "context.page")
        known = {k: v for k, v in page.items() if k in _PAGE_FIELDS}
        for key, value in known.items():
            if value is not None and value.__class__ is not str:
                raise InvalidPayload(
                    "invalid_field_type", f"context.page.{key} must be a string", f"context.page.{key}"
                )
        if known:
            out.page = Page(**known)
        leftover = {k: v for k, v in page.items() if k not in _PAGE_FIELDS}
        if leftover or not known:
            extra["page"] = leftover
        lang = page.get("lang")
        if lang.__class__ is str and lang:
            out.locale = lang
    device = ctx.get("device")
    if device is not None:
        if device.__class__ is not dict:
            raise InvalidPayload("invalid_field_type", "context.device must be an object", "context.device")
        leftover = dict(device)
        for key, field in (
            ("ip", "ip"),
            ("user_agent", "user_agent"),
            ("lang", "locale"),
            ("timezone", "timezone"),
        ):
            value = device.get(key)
            if value is None:
                continue
            if value.__class__ is not str:
                raise InvalidPayload(
                    "invalid_field_type", f"context.device.{key} must be a string", f"context.device.{key}"
                )
            setattr(out, field, value)
            del leftover[key]
        if leftover or not device:
            extra["device"] = leftover
    if not out.ip:
        out.ip = meta.ip
    if not out.user_agent:
        out.user_agent = meta.user_agent
    site = meta.query.get("tc_s")
    if site:
        extra["tc_s"] = site
    return out


def _event_id_of(value: Any) -> str | None:
    if value.__class__ is not dict:
        return None
    context = value.get("context")
    found = context.get("event_id") if context.__class__ is dict else value.get("event_id")
    if found.__class__ is str and found:
        return found[:MAX_EVENT_ID]
    if isinstance(found, int) and not isinstance(found, bool):
        return str(found)
    return None


# --- v1 -> v2: the field-by-field migration --------------------------------------------------------


def v1_to_v2(item: dict) -> dict:
    """A v1 event as the same event in v2 (the vendor's own table): ``properties.<x>`` -> ``<x>`` at the
    root, ``properties.user`` -> ``user``, ``event_id``/``event_timestamp``/``page``/``device``/``app``
    -> ``context.*``, ``page.location`` -> ``context.page.url``. Values are kept as sent; other root
    keys stay at the root. Raises ``InvalidPayload`` when a property would overwrite a v2 root key."""
    properties = item.get("properties")
    if properties is None:
        properties = {}
    if properties.__class__ is not dict:
        raise InvalidPayload("invalid_field_type", "properties must be an object", "properties")
    out: dict[str, Any] = {}
    if "event_name" in item:
        out["event_name"] = item["event_name"]
    for key, value in properties.items():
        if key == "user":
            continue
        if key in V2_RESERVED:
            raise InvalidPayload(
                "unconvertible_property",
                f"properties.{key} cannot move to the root: v2 uses {key} for something else",
                f"properties.{key}",
            )
        out[key] = value
    for key, value in item.items():
        if key in ("event_name", "properties", "user", *V1_META):
            continue
        if key == "context":
            raise InvalidPayload("unconvertible_property", "a v1 event has no context: v2 uses it", key)
        if key in out:
            raise InvalidPayload(
                "unconvertible_property", f"{key} is both at the root and in properties", key
            )
        out[key] = value
    if "user" in properties and "user" in item:
        raise InvalidPayload("unconvertible_property", "user is both at the root and in properties", "user")
    if "user" in properties:
        out["user"] = properties["user"]
    elif "user" in item:
        out["user"] = item["user"]
    context: dict[str, Any] = {}
    for key in ("event_id", "page", "device", "app", "event_timestamp"):
        if key not in item:
            continue
        value = item[key]
        if key == "page" and value.__class__ is dict and "location" in value and "url" not in value:
            value = {("url" if k == "location" else k): v for k, v in value.items()}
        context[key] = value
    out["context"] = context
    return out


def convert(value: Any, source: str, target: str) -> Any:
    """``trackgate convert``: one event or ``{"batch": [...]}`` from ``source`` to ``target`` version.
    Only v1 -> v2 (and a version to itself) are supported."""
    if (source, target) not in (("v1", "v2"), ("v1", "v1"), ("v2", "v2")):
        raise ValueError(f"cannot convert commandersact.{source} to commandersact.{target}")
    if value.__class__ is dict and value.get("batch").__class__ is list:
        return {**value, "batch": [convert(item, source, target) for item in value["batch"]]}
    if value.__class__ is not dict:
        raise InvalidPayload("invalid_event", "an event must be a JSON object")
    found = version_of(value)
    if found != source:
        raise InvalidPayload("wrong_version", f"the event is {found}, not {source}")
    return v1_to_v2(value) if (source, target) == ("v1", "v2") else value


# --- encode: canonical events to v2 -----------------------------------------------------------------


def encode(events: list[Event]) -> list[dict[str, Any]]:
    """Canonical events as v2 events, ready for ``{"batch": [...]}``.

    An event received in this dialect is emitted from what the client sent (``raw``): as is when it
    came as v2, through ``v1_to_v2`` when it came as v1, so nothing the client sent is lost. Events of
    other dialects are built from the canonical fields."""
    return [encode_one(event) for event in events]


def encode_one(event: Event) -> dict[str, Any]:
    if event.dialect == DIALECT and event.raw:
        try:
            value = _decode_json(event.raw)
        except msgspec.DecodeError:
            value = None
        if value.__class__ is dict:
            return v1_to_v2(value) if version_of(value) == "v1" else value
    return _from_canonical(event)


def _from_canonical(event: Event) -> dict[str, Any]:
    if event.type == "page":
        out: dict[str, Any] = {"event_name": PAGE_EVENT}
        if event.name is not None:
            out["page_name"] = event.name
    else:
        out = {"event_name": event.name or event.type}
    out.update({k: v for k, v in event.properties.items() if k not in V2_RESERVED})
    user: dict[str, Any] = {}
    if event.user_id is not None:
        user["id"] = event.user_id
    if event.anonymous_id is not None:
        user["consistent_anonymous_id"] = event.anonymous_id
    for key, value in event.traits.items():
        user.setdefault(_TRAIT_NAMES_BACK.get(key, key), value)
    if user:
        out["user"] = user
    ctx = event.context
    extra = {k: v for k, v in ctx.extra.items() if k != "tc_s"}
    context: dict[str, Any] = {"event_id": event.message_id}
    page = dict(extra.pop("page", None) or {})
    if ctx.page is not None:
        page.update(msgspec.to_builtins(ctx.page))
    if page:
        context["page"] = page
    device = dict(extra.pop("device", None) or {})
    for key, value in (
        ("user_agent", ctx.user_agent),
        ("ip", ctx.ip),
        ("lang", ctx.locale),
        ("timezone", ctx.timezone),
    ):
        if value is not None:
            device[key] = value
    if device:
        context["device"] = device
    context.update(extra)
    context["event_timestamp"] = int((event.timestamp - _EPOCH) / timedelta(milliseconds=1))
    out["context"] = context
    return out


# --- forwarding and replay -------------------------------------------------------------------------

TRANSPORT = Transport(
    kind="commandersact",
    dialect="commandersact",
    default_base="https://collect.commander1.com",
    credentials=("site_id", "source_key"),
    route=lambda item: "/events/batch",
    wrap=lambda items, creds, now: {"batch": items},
    # the documented alternative to ?token=: keeps the key out of URLs (and of logged errors)
    headers=lambda creds: {"authorization": f"Bearer {creds['source_key']}"},
    query=lambda creds: {"tc_s": creds["site_id"]},
    max_items=100,
    max_bytes=480 * 1024,  # 500 KB a batch, 32 KB an event
    job_events=100,
    notes="POST {base}/events/batch?tc_s= {batch:[v2 events]}, Bearer source key",
)


def replay_call(payload: Any) -> str:
    """``{"batch": [...]}`` is a batch; anything else is posted to ``batch`` too (its sorted first call),
    as the replay has always done."""
    return call_by_shape(CALLS, payload)
