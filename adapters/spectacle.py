"""Spectacle's dialect (spectaclehq.com): its REST tracking API and its pixel wire format.

Two ways in, one message shape (Segment-like, camelCase):

- **REST** (``dialect_version="rest"``; seed ``spectacle-rest-api.txt``): ``POST /tracking/identify``,
  ``/tracking/track``, ``/tracking/page`` (and ``/tracking/group``, which the JS API has), JSON only; the
  body's ``workspaceId`` names the source. Required, as the docs list them: identify ``userId``,
  ``anonymousId``; track ``userId``, ``event``; page ``userId`` or ``anonymousId``; group ``groupId``
  and ``userId`` or ``anonymousId``. ``timestamp`` is optional (ISO-8601; default: received).
- **pixel** (``dialect_version="pixel"``; the official GTM server-side template and stape's): ``POST /p``,
  ``/i``, ``/t``, ``/g`` with a ``text/plain`` JSON body ``{type, writeKey, userId|null, anonymousId, ip,
  lens, context{timezone, campaign, userAgent, page, locale}}`` plus ``properties``/``traits``/``event``/
  ``groupId``. The pixel keeps no user id until identify, so every pixel call needs only ``userId`` or
  ``anonymousId`` (the template always sends the latter); track needs ``event``, group ``groupId``.

Special traits (identify, track, page): ``email``, ``firstName``, ``lastName`` are the canonical names
already; ``companyId``/``companyName`` also become ``traits.company {id, name}`` and the event's
``group_id`` (the user belongs to that company). They may also arrive at the body's root (the docs'
own curl sends ``email`` there); the ``traits`` object wins over the root.

Special properties (track): ``revenue`` is in the currency's smallest unit (an integer, or a string of
one: the GTM template sends ``"1599"``/``"-1599"``) and becomes major units by the ISO 4217 exponent
of ``currency`` (JPY 0, KWD 3, default 2), computed in Decimal; a negative revenue is a refund and also
gets ``properties.refund = true``. ``mrr``/``arr`` are read in the same smallest unit as ``revenue``
(the docs give no unit of their own; they share ``currency``) and become major units too. ``currency``
must be a three-letter code (upper-cased). The original values stay in ``raw``.

A track with revenue and ``properties.transactionId`` takes ``txn:<event>:<transactionId>`` as its
message id: Spectacle deduplicates revenue by transaction id (GTM template), and so does the store; the
event name is part of it because a refund carries its order's transaction id. Otherwise
``messageId`` if sent, else one derived from the request id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from trackgate.adapters.base import InvalidPayload, PayloadTooLarge, Transport
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
from trackgate.adapters.segment import denormalize_context, normalize_context
from trackgate.schemas.event import Event
from trackgate.schemas.request import RequestMeta

DIALECT = dialect = "spectacle"
MAX_EVENT_BYTES = 32 * 1024
"""Undocumented by Spectacle; the limit Segment-like APIs use for one event."""
MAX_MESSAGE_ID = 200
MAX_MINOR_UNITS = 10**15
"""Money amounts above this (in minor units) are refused: 15 digits is what a JSON number (a double)
carries exactly, so the major-unit value stored is exactly the decimal one."""

REST_CALLS = {"identify": "identify", "track": "track", "page": "page", "group": "group"}
PIXEL_CALLS = {"p": "page", "i": "identify", "t": "track", "g": "group"}
CALLS = {**REST_CALLS, **PIXEL_CALLS}
"""The path's last segment -> the event type."""

SPECIAL_TRAITS = ("email", "firstName", "lastName", "companyId", "companyName")

# ISO 4217 minor-unit exponents that are not 2 (https://www.iso.org/iso-4217-currency-codes.html)
CURRENCY_EXPONENTS: Mapping[str, int] = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV")
        + ("XAF", "XOF", "XPF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
DEFAULT_EXPONENT = 2


class Message(msgspec.Struct):
    """One Spectacle message (REST or pixel). Loosely typed: the validators below decide."""

    type: Any = None
    workspaceId: Any = None
    writeKey: Any = None
    userId: Any = None
    anonymousId: Any = None
    messageId: Any = None
    event: Any = None
    name: Any = None
    groupId: Any = None
    properties: Any = None
    traits: Any = None
    context: Any = None
    timestamp: Any = None
    ip: Any = None
    lens: Any = None
    email: Any = None
    firstName: Any = None
    lastName: Any = None
    companyId: Any = None
    companyName: Any = None


BODIES: Mapping[str, type] = dict.fromkeys(CALLS, Message)


class Envelope(msgspec.Struct):
    call: str
    """The path's last segment: ``track`` (REST) or ``t`` (pixel)."""
    kind: str
    """The event type."""
    version: str
    """``rest`` or ``pixel``."""
    raw: str
    message: Message
    has_nul: bool = False

    @property
    def key_field(self) -> str:
        """Where this format carries the workspace id."""
        return "writeKey" if self.version == "pixel" else "workspaceId"


_decode_message = msgspec.json.Decoder(Message).decode
_decode_message_or_text = msgspec.json.Decoder(Message | str).decode


def _not_an_object(exc: Exception) -> InvalidPayload:
    return InvalidPayload("invalid_body", "body must be a JSON object")


def parse(call: str, body: bytes) -> Envelope:
    """Bytes to envelope. ``call`` is the path's last segment (``track``, ``t``, ...)."""
    kind = CALLS.get(call)
    if kind is None:
        raise InvalidPayload("unknown_call", f"unknown call {call!r}")
    if len(body) > MAX_EVENT_BYTES:
        raise PayloadTooLarge(
            "event_too_large", f"event is {len(body)} bytes, over the {MAX_EVENT_BYTES}-byte limit"
        )
    text = utf8(body)
    found = decode_json(_decode_message_or_text, body)
    if isinstance(found, str):
        # a body that is itself a JSON string holding the message (a client that stringified twice):
        # the meaning is clear, the inner text is the message
        text = found
        body = text.encode()
        found = decode_json(_decode_message, body, not_json=_not_an_object)
    message = found
    version = "pixel" if call in PIXEL_CALLS else "rest"
    return Envelope(call=call, kind=kind, version=version, raw=text, message=message, has_nul=has_nul(body))


def credentials(headers: Mapping[str, str], envelope: Envelope | None) -> str | None:
    """The workspace id: ``workspaceId`` (REST) or ``writeKey`` (pixel), in the body only; either
    format's field is taken when the other is absent."""
    if envelope is None:
        return None
    message = envelope.message
    first, second = (
        (message.writeKey, message.workspaceId)
        if envelope.version == "pixel"
        else (message.workspaceId, message.writeKey)
    )
    for value in (first, second):
        if isinstance(value, str) and value:
            return value
    return None


def decode(meta: RequestMeta, envelope: Envelope) -> list[Event]:
    """Validate the message, then normalize it. One request is one event."""
    events = [_decode_one(meta, envelope)]
    return scrubbed(events) if envelope.has_nul else events


# --- validators: one per (format, call) ---------------------------------------------------------


def _require(value: str | None, field: str, kind: str) -> str:
    if value is None:
        raise InvalidPayload("missing_field", f"{field} is required for {kind}", field)
    return value


def _user_or_anonymous(user_id: str | None, anonymous_id: str | None, kind: str) -> None:
    if user_id is None and anonymous_id is None:
        raise InvalidPayload("missing_field", f"userId or anonymousId is required for {kind}", "userId")


def _check(version: str, kind: str, message: Message, user_id, anonymous_id) -> tuple[str | None, str | None]:
    """The call's required fields; returns (name, group_id)."""
    if version == "rest" and kind == "identify":
        _require(user_id, "userId", kind)
        _require(anonymous_id, "anonymousId", kind)
    elif version == "rest" and kind == "track":
        _require(user_id, "userId", kind)
    else:
        _user_or_anonymous(user_id, anonymous_id, kind)
    if kind == "track":
        return _require(string_id(message.event, "event"), "event", kind), None
    if kind == "group":
        return None, _require(string_id(message.groupId, "groupId"), "groupId", kind)
    if kind == "page":
        return string_id(message.name, "name"), None
    return None, None


def _decode_one(meta: RequestMeta, envelope: Envelope) -> Event:
    message = envelope.message
    kind = envelope.kind
    declared = message.type
    if declared is not None and declared != kind:
        # the pixel names its type in the body too; a body that says another type than its path is
        # ambiguous
        raise InvalidPayload(
            "invalid_type", f"type {declared!r} does not match the path, which is a {kind} call", "type"
        )
    user_id = string_id(message.userId, "userId")
    anonymous_id = string_id(message.anonymousId, "anonymousId")
    name, group_id = _check(envelope.version, kind, message, user_id, anonymous_id)

    properties = obj(message.properties, "properties") or {}
    traits = obj(message.traits, "traits") or {}
    if kind != "group":
        traits, company_id = _special_traits(message, traits)
        group_id = company_id
    message_id = string_id(message.messageId, "messageId")
    if kind == "track":
        properties = _money(properties)
        transaction_id = properties.get("transactionId")
        if message_id is None and "revenue" in properties and transaction_id not in (None, ""):
            # the event name too: a refund carries its order's transaction id, and is another event
            message_id = f"txn:{name}:{string_id(transaction_id, 'properties.transactionId')}"
    if message_id is None:
        message_id = assigned_message_id(meta, 0, message.timestamp)
    elif len(message_id) > MAX_MESSAGE_ID:
        raise InvalidPayload(
            "message_id_too_long",
            f"messageId is {len(message_id)} characters, over the limit of {MAX_MESSAGE_ID}",
            "messageId",
        )

    original = iso_time(message.timestamp, "timestamp")
    context = normalize_context(obj(message.context, "context"), meta.ip)
    ip = message.ip
    if isinstance(ip, str) and ip:
        context.ip = ip  # the pixel's own field: the visitor's address as its server saw it
    elif ip is not None and ip != "":
        raise InvalidPayload("invalid_field_type", f"ip must be a string, got {type(ip).__name__}", "ip")
    if not context.user_agent:  # the GTM template sends "" when it has none
        context.user_agent = meta.user_agent
    if message.lens is not None:
        context.extra = {**context.extra, "lens": message.lens}

    return Event(
        id="",
        message_id=message_id,
        source_id=meta.source_id,
        dialect=DIALECT,
        dialect_version=envelope.version,
        type=kind,  # type: ignore[arg-type]
        name=name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        group_id=group_id,
        properties=properties,
        traits=traits,
        context=context,
        timestamp=original or meta.received_at,
        original_timestamp=original,
        received_at=meta.received_at,
        raw=envelope.raw,
    )


def _special_traits(message: Message, traits: dict) -> tuple[dict, str | None]:
    """Root-level special traits join ``traits`` (the object wins); companyId/companyName also make
    ``traits.company``. Returns the traits and the company id (the event's group)."""
    root = {f: getattr(message, f) for f in SPECIAL_TRAITS if getattr(message, f) is not None}
    if root:
        traits = {**root, **traits}
    company_id = string_id(traits.get("companyId"), "traits.companyId")
    company_name = traits.get("companyName")
    if company_name is not None and not isinstance(company_name, str):
        raise InvalidPayload(
            "invalid_field_type",
            f"traits.companyName must be a string, got {type(company_name).__name__}",
            "traits.companyName",
        )
    if company_id is not None or company_name:
        company = traits.get("company")
        company = dict(company) if isinstance(company, dict) else {}
        if company_id is not None:
            company["id"] = company_id
        if company_name:
            company["name"] = company_name
        traits = {**traits, "company": company}
    return traits, company_id


def _money(properties: dict) -> dict:
    """revenue / mrr / arr from minor to major units; currency checked and upper-cased."""
    if not any(k in properties for k in ("revenue", "mrr", "arr", "currency")):
        return properties
    out = dict(properties)
    currency = properties.get("currency")
    exponent = DEFAULT_EXPONENT
    if currency is not None:
        if not isinstance(currency, str) or not _CURRENCY.match(currency):
            raise InvalidPayload(
                "invalid_currency",
                f"properties.currency must be a three-letter ISO 4217 code, got {currency!r}"[:300],
                "properties.currency",
            )
        currency = out["currency"] = currency.upper()
        exponent = CURRENCY_EXPONENTS.get(currency, DEFAULT_EXPONENT)
    revenue = properties.get("revenue")
    if revenue is not None:
        minor = _minor_units(revenue, "properties.revenue")
        out["revenue"] = _major(minor, exponent)
        if minor < 0:
            out["refund"] = True
    for field in ("mrr", "arr"):
        value = properties.get(field)
        if value is None:
            continue
        minor = _minor_units(value, f"properties.{field}")
        if minor < 0:
            raise InvalidPayload(
                "invalid_amount", f"properties.{field} must not be negative", f"properties.{field}"
            )
        out[field] = _major(minor, exponent)
    return out


_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


def _minor_units(value: Any, path: str) -> Decimal:
    """An amount in the smallest currency unit: an integer, or a string holding one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidPayload(
            "invalid_amount", f"{path} must be an integer amount in the smallest currency unit", path
        )
    try:
        amount = Decimal(
            value.strip() if isinstance(value, str) else repr(value) if isinstance(value, float) else value
        )
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount != amount.to_integral_value():
        raise InvalidPayload(
            "invalid_amount",
            f"{path} must be an integer amount in the smallest currency unit (cents: 9995 for 99.95),"
            f" got {value!r}"[:300],
            path,
        )
    if abs(amount) >= MAX_MINOR_UNITS:
        raise InvalidPayload("invalid_amount", f"{path} is out of range (at most 15 digits)", path)
    return amount


def _major(minor: Decimal, exponent: int) -> int | float:
    """Exact: ``float`` of a decimal with at most 15 significant digits prints back as that decimal."""
    major = minor.scaleb(-exponent)
    if major == major.to_integral_value():
        return int(major)
    return float(major)


# --- encode: canonical events to what Spectacle's own clients send ---------------------------------

REST_PATHS = {kind: f"/tracking/{kind}" for kind in REST_CALLS}
PIXEL_PATHS = {kind: f"/{call}" for call, kind in PIXEL_CALLS.items()}


def encode(events: list[Event], workspace_id: str | None = None) -> list[dict[str, Any]]:
    """Canonical events as Spectacle requests: ``{"path", "body"}`` each (Spectacle has no batch call).

    The REST API is used for identify, track, page and group when its required fields are there;
    an anonymous identify or track (REST needs ``userId`` for both) goes as the pixel sends it
    (``/i``, ``/t``). ``workspace_id``, when given, is put where each format carries it. Money goes
    back to minor units; types Spectacle has no call for become a track named after the type (a
    screen becomes a page).
    """
    return [encode_one(event, workspace_id) for event in events]


def encode_one(event: Event, workspace_id: str | None = None) -> dict[str, Any]:
    kind = event.type
    body: dict[str, Any] = {}
    if kind == "screen":
        kind = "page"
    elif kind not in REST_CALLS:
        kind = "track"
    pixel = event.user_id is None and kind in ("identify", "track")
    if pixel:
        body["type"] = kind
    if event.user_id is not None:
        body["userId"] = event.user_id
    if event.anonymous_id is not None:
        body["anonymousId"] = event.anonymous_id
    elif kind == "identify":
        body["anonymousId"] = event.user_id  # REST identify requires one; the user id is the best we have
    body["messageId"] = event.message_id
    if kind == "track":
        body["event"] = event.name or event.type
        properties = _minor_properties(event.properties)
        if event.type != "track":
            properties.setdefault("trackgate_type", event.type)
            if event.group_ids:
                properties.setdefault("groupIds", event.group_ids)
            if event.previous_id is not None:
                properties.setdefault("previousId", event.previous_id)
        body["properties"] = properties
    elif kind == "page":
        if event.name is not None:
            body["name"] = event.name
        body["properties"] = dict(event.properties)
    elif kind == "group":
        body["groupId"] = event.group_id
    if event.traits:
        traits = dict(event.traits)
        company = traits.get("company")
        if kind != "group" and isinstance(company, dict):
            if company.get("id") is not None:
                traits.setdefault("companyId", company["id"])
            if company.get("name") is not None:
                traits.setdefault("companyName", company["name"])
        body["traits"] = traits
    context = denormalize_context(event.context)
    if pixel:  # where the template puts them: the visitor's ip and the lens flag at the root
        if isinstance(context.get("ip"), str):
            body["ip"] = context.pop("ip")
        if "lens" in context:
            body["lens"] = context.pop("lens")
    if context:
        body["context"] = context
    body["timestamp"] = event.timestamp.isoformat()
    if workspace_id is not None:
        body["writeKey" if pixel else "workspaceId"] = workspace_id
    return {"path": (PIXEL_PATHS if pixel else REST_PATHS)[kind], "body": body}


def _minor_properties(properties: dict) -> dict:
    out = dict(properties)
    currency = out.get("currency")
    exponent = CURRENCY_EXPONENTS.get(currency, DEFAULT_EXPONENT) if isinstance(currency, str) else 2
    for field in ("revenue", "mrr", "arr"):
        value = out.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            minor = Decimal(repr(value) if isinstance(value, float) else value).scaleb(exponent)
            out[field] = int(minor.to_integral_value())
    if out.get("refund") is True and isinstance(out.get("revenue"), int) and out["revenue"] < 0:
        del out["refund"]  # the sign says it; refund is trackgate's marker, not Spectacle's
    return out


# --- forwarding and replay -------------------------------------------------------------------------

PIXEL_HOST = "https://t.spectaclehq.com"
API_HOSTS = ("https://api.spectaclehq.com", "https://api.spectacle.com")


def _pixel(route: str) -> bool:
    return not route.startswith("/tracking/")


def _wrap(items: list[dict[str, Any]], creds: dict[str, str], now: float) -> Any:
    """The adapter's ``{"path", "body"}``: the REST body carries ``workspaceId``, the pixel's ``writeKey``."""
    body = dict(items[0]["body"])
    key = "writeKey" if _pixel(items[0]["path"]) else "workspaceId"
    if not body.get(key):
        body[key] = creds["workspace_id"]
    return body


def _url(base: str, route: str) -> str:
    # Spectacle serves the REST API and the JS tag's pixel on two hosts; trackgate serves both on one
    if _pixel(route) and base.rstrip("/") in API_HOSTS:
        return PIXEL_HOST + route
    return base.rstrip("/") + route


TRANSPORT = Transport(
    kind="spectacle",
    dialect="spectacle",
    default_base="https://api.spectaclehq.com",
    credentials=("workspace_id",),
    route=lambda item: item["path"],
    wrap=_wrap,
    headers=lambda creds: {},
    per_event=True,
    content_type=lambda route: "text/plain" if _pixel(route) else "application/json",
    url=_url,
    job_events=100,
    notes="POST {base}/tracking/{identify|track|page|group} per event (REST, workspaceId in the"
    " body); anonymous identify/track as the JS tag sends them (/i, /t, text/plain, writeKey)",
)


def replay_call(payload: Any) -> str:
    """A stored message is posted to its ``type``'s call."""
    return call_by_shape(CALLS, payload)
