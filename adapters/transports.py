"""How each kind of destination is sent to: pure request building, no I/O, the clock passed in.

A destination of kind K takes what dialect K's own SDK sends: the items come from
``ADAPTERS[K].encode(events)`` (the canonical events themselves for ``webhook``). A :class:`Transport`
says how those items become HTTP requests: which path each goes to, how many share a request and how
the body wraps them, the auth headers, and what counts as success. The worker (``workers/forward.py``)
plans the requests with :func:`plan`, renders each with :func:`render` and classifies the answer.

Retryable answers are the same for every kind (timeouts, connection errors, 408, 429 with its
``Retry-After``, 5xx except 501/505); every other non-success is permanent and dead-lettered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import msgspec

from trackgate.schemas.destinations import Part
from trackgate.schemas.event import Event

_json = msgspec.json.encode

SIGNATURE_HEADER = "trackgate-signature"
"""Webhook signature: ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``."""


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes


def _ok(status: int, body: bytes) -> bool:
    return 200 <= status < 300


def _reflag_ok(status: int, body: bytes) -> bool:
    """Reflag's SDKs count a reply as delivered only when it is 2xx AND its JSON has success: true."""
    if not 200 <= status < 300:
        return False
    try:
        reply = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return isinstance(reply, dict) and reply.get("success") is True


@dataclass(frozen=True)
class Transport:
    kind: str
    dialect: str | None
    """The adapter whose ``encode`` builds the items; None: the canonical events (webhook)."""
    default_base: str | None
    credentials: tuple[str, ...]
    """Credential fields the destination needs (``--credential name=value``)."""
    route: Callable[[dict[str, Any]], str]
    """The path (under the base URL) an item goes to."""
    wrap: Callable[[list[dict[str, Any]], dict[str, str], float], Any]
    """The request body (JSON-able) for the items of one request: (items, credentials, now)."""
    headers: Callable[[dict[str, str]], dict[str, str]]
    query: Callable[[dict[str, str]], dict[str, str]] = lambda creds: {}
    per_event: bool = False
    """One request per item (the vendor has no batch call)."""
    max_items: int = 100
    max_bytes: int = 500 * 1024
    """The most a request's items may weigh (JSON), below the vendor's limit."""
    job_events: int = 500
    """Most canonical events per forward job."""
    content_type: str | Callable[[str], str] = "application/json"
    """The request's content type, or a function of its route."""
    url: Callable[[str, str], str] | None = None
    """(base URL, route) -> the request URL, when it is not simply base + route."""
    success: Callable[[int, bytes], bool] = _ok
    optional_credentials: tuple[str, ...] = ()
    single_routes: frozenset[str] = frozenset()
    """Routes that take one item a request (Reflag's /feedback beside /bulk)."""
    sign: bool = False
    notes: str = ""


def _basic(creds: dict[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{creds['write_key']}:".encode()).decode()
    return {"authorization": f"Basic {token}"}


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _openpanel_headers(creds: dict[str, str]) -> dict[str, str]:
    headers = {"openpanel-client-id": creds["client_id"], "openpanel-sdk-name": "trackgate"}
    if creds.get("client_secret"):
        headers["openpanel-client-secret"] = creds["client_secret"]
    return headers


SPECTACLE_PIXEL_HOST = "https://t.spectaclehq.com"
SPECTACLE_API_HOSTS = ("https://api.spectaclehq.com", "https://api.spectacle.com")


def _spectacle_pixel(route: str) -> bool:
    return not route.startswith("/tracking/")


def _spectacle_wrap(items: list[dict[str, Any]], creds: dict[str, str], now: float) -> Any:
    """The adapter's ``{"path", "body"}``: the REST body carries ``workspaceId``, the pixel's ``writeKey``."""
    body = dict(items[0]["body"])
    key = "writeKey" if _spectacle_pixel(items[0]["path"]) else "workspaceId"
    if not body.get(key):
        body[key] = creds["workspace_id"]
    return body


def _spectacle_url(base: str, route: str) -> str:
    # Spectacle serves the REST API and the JS tag's pixel on two hosts; trackgate serves both on one
    if _spectacle_pixel(route) and base.rstrip("/") in SPECTACLE_API_HOSTS:
        return SPECTACLE_PIXEL_HOST + route
    return base.rstrip("/") + route


def _tinytrail_wrap(items: list[dict[str, Any]], creds: dict[str, str], now: float) -> Any:
    return {"website_id": creds["website_id"], **items[0]}


def _bucket_wrap(items: list[dict[str, Any]], creds: dict[str, str], now: float) -> Any:
    if items[0].get("type") == "feedback":  # Reflag's POST /feedback body: the item without its type
        return {k: v for k, v in items[0].items() if k != "type"}
    return items


TRANSPORTS: dict[str, Transport] = {
    t.kind: t
    for t in (
        Transport(
            kind="webhook",
            dialect=None,
            default_base=None,
            credentials=("secret",),
            route=lambda item: "",
            wrap=lambda items, creds, now: {"sent_at": _iso(now), "events": items},
            headers=lambda creds: {},
            max_items=500,
            max_bytes=1024 * 1024,
            job_events=500,
            sign=True,
            notes="POST {base} {sent_at, events:[canonical events]}, signed in trackgate-signature",
        ),
        Transport(
            kind="segment",
            dialect="segment",
            default_base="https://api.segment.io",
            credentials=("write_key",),
            route=lambda item: "/v1/batch",
            wrap=lambda items, creds, now: {"batch": items, "sentAt": _iso(now)},
            headers=_basic,
            # Segment: 32 KB an event, 500 KB and 2,500 events a batch; analytics-python stays at 475 KB
            max_items=500,
            max_bytes=475_000,
            job_events=500,
            notes="POST {base}/v1/batch, Basic base64(write_key:) (Segment, RudderStack, Hightouch)",
        ),
        Transport(
            kind="openpanel",
            dialect="openpanel",
            default_base="https://api.openpanel.dev",
            credentials=("client_id",),
            optional_credentials=("client_secret",),
            route=lambda item: "/track",
            wrap=lambda items, creds, now: items[0],
            headers=_openpanel_headers,
            per_event=True,
            job_events=100,
            notes="POST {base}/track per event {type, payload}; openpanel-client-id/-secret headers",
        ),
        Transport(
            kind="bucket",
            dialect="bucket",
            default_base="https://front.reflag.com",
            credentials=("secret_key",),
            # feedback has its own call; user, company and event items go to /bulk
            route=lambda item: "/feedback" if item.get("type") == "feedback" else "/bulk",
            wrap=_bucket_wrap,
            single_routes=frozenset({"/feedback"}),
            headers=lambda creds: {"authorization": f"Bearer {creds['secret_key']}"},
            success=_reflag_ok,
            max_items=100,  # the node SDK's batch
            max_bytes=500 * 1024,
            job_events=100,
            notes="POST {base}/bulk [items], Bearer secret key; a reply counts only with success:true",
        ),
        Transport(
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
        ),
        Transport(
            kind="spectacle",
            dialect="spectacle",
            default_base="https://api.spectaclehq.com",
            credentials=("workspace_id",),
            route=lambda item: item["path"],
            wrap=_spectacle_wrap,
            headers=lambda creds: {},
            per_event=True,
            content_type=lambda route: "text/plain" if _spectacle_pixel(route) else "application/json",
            url=_spectacle_url,
            job_events=100,
            notes="POST {base}/tracking/{identify|track|page|group} per event (REST, workspaceId in the"
            " body); anonymous identify/track as the JS tag sends them (/i, /t, text/plain, writeKey)",
        ),
        Transport(
            kind="tinytrail",
            dialect="tinytrail",
            default_base="http://localhost:8000",
            credentials=("website_id",),
            route=lambda item: "/api/v1/collect",
            wrap=_tinytrail_wrap,
            headers=lambda creds: {},
            per_event=True,
            job_events=10,  # 10 requests / 10 s per IP: a 429 with Retry-After holds the destination
            notes="POST {base}/api/v1/collect per event (no auth; website_id in the body)",
        ),
    )
}


def encode(transport: Transport, adapters: Any, events: list[Event]) -> list[dict[str, Any]]:
    if transport.dialect is None:
        return [msgspec.to_builtins(event) for event in events]
    return adapters[transport.dialect].encode(events)


def plan(transport: Transport, items: list[dict[str, Any]]) -> list[Part]:
    """The requests that carry ``items``, in order: consecutive items of one route share a request up
    to ``max_items`` and ``max_bytes``; an item over ``max_bytes`` goes alone (and the vendor decides)."""
    parts: list[Part] = []
    current: list[dict[str, Any]] = []
    route = None
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
