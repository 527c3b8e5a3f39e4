"""How each kind of destination is sent to: pure request building, no I/O, the clock passed in.

A destination of kind K takes what dialect K's own SDK sends: the items come from
``ADAPTERS[K].encode(events)`` (the canonical events themselves for ``webhook``). A :class:`Transport`
(each adapter's ``TRANSPORT``; ``webhook``'s is here) says how those items become HTTP requests:
which path each goes to, how many share a request and how the body wraps them, the auth headers,
and what counts as success. The worker (``workers/forward.py``) plans the requests with :func:`plan`,
renders each with :func:`render` and classifies the answer.

Retryable answers are the same for every kind (timeouts, connection errors, 408, 429 with its
``Retry-After``, 5xx except 501/505); every other non-success is permanent and dead-lettered.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from datetime import UTC
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

import msgspec

from trackgate.adapters.base import Request, Transport, iso_millis
from trackgate.adapters.registry import CODECS
from trackgate.schemas.destinations import Part
from trackgate.schemas.event import Event

_json = msgspec.json.encode

SIGNATURE_HEADER = "trackgate-signature"
"""Webhook signature: ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``."""


WEBHOOK = Transport(
    kind="webhook",
    dialect=None,
    default_base=None,
    credentials=("secret",),
    route=lambda item: "",
    wrap=lambda items, creds, now: {"sent_at": iso_millis(now), "events": items},
    headers=lambda creds: {},
    max_items=500,
    max_bytes=1024 * 1024,
    job_events=500,
    sign=True,
    notes="POST {base} {sent_at, events:[canonical events]}, signed in trackgate-signature",
)

TRANSPORTS: Mapping[str, Transport] = MappingProxyType(
    {WEBHOOK.kind: WEBHOOK, **{codec.transport.kind: codec.transport for codec in CODECS}}
)
"""Every destination kind: ``webhook`` and each dialect's own (``adapters.registry``)."""


def encode(transport: Transport, adapters: Any, events: list[Event]) -> list[dict[str, Any]]:
    if transport.dialect is None:
        return [msgspec.to_builtins(event) for event in events]
    return adapters[transport.dialect].encode(events)


def plan(transport: Transport, items: list[dict[str, Any]]) -> list[Part]:
    """The requests that carry ``items``, in order: consecutive items of one route share a request up
    to ``max_items`` and ``max_bytes``; an item over ``max_bytes`` goes alone (and the vendor decides)."""
    parts: list[Part] = []
    current: list[dict[str, Any]] = []
    route = ""  # set with the first item
    size = 0
    for item in items:
        item_route = transport.route(item)
        item_size = len(_json(item)) + 1
        if current and (
            transport.per_event
            or item_route != route
            or item_route in transport.single_routes
            or len(current) >= transport.max_items
            or size + item_size > transport.max_bytes
        ):
            parts.append(Part(route, current))
            current, size = [], 0
        current.append(item)
        route = item_route
        size += item_size
    if current:
        parts.append(Part(route, current))
    return parts


def render(
    transport: Transport, base_url: str, credentials: dict[str, str], part: Part, now: float
) -> Request:
    body = transport.wrap(part.items, credentials, now)
    content = body if isinstance(body, bytes) else _json(body)
    content_type = transport.content_type
    if callable(content_type):
        content_type = content_type(part.route)
    headers = {"content-type": content_type, "user-agent": "trackgate-forwarder"}
    headers.update(transport.headers(credentials))
    if transport.sign:
        headers[SIGNATURE_HEADER] = signature(credentials["secret"], content, int(now))
    if transport.url is not None:
        url = transport.url(base_url, part.route)
    else:
        url = base_url.rstrip("/") + part.route if part.route else base_url
    query = transport.query(credentials)
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query)
    return Request("POST", url, headers, content)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, now: float, tolerance: float = 300.0) -> bool:
    """What a webhook receiver runs: the HMAC matches and the timestamp is recent (no replays)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


RETRYABLE_4XX = frozenset({408, 429})
PERMANENT_5XX = frozenset({501, 505})


def retryable_status(status: int) -> bool:
    return status in RETRYABLE_4XX or (status >= 500 and status not in PERMANENT_5XX)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf", "nan" or a negative number say nothing usable
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
