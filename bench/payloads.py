"""Realistic Segment request bodies, and the canonical events the gateway would make of them.

Bodies are what analytics-node / analytics-python send: a track call of ~550 bytes, and a batch of 100
mixed calls (70% track, 20% page, 10% identify) of ~50 KB. Templates carry the placeholder ``__SEQ__``
in every ``messageId`` (and ``userId``); the wrk script replaces it with a per-request counter so every
request (and every event in a batch) has its own message id, as real SDKs send.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import uuid_utils

from trackgate.adapters import segment
from trackgate.schemas.event import Event
from trackgate.schemas.request import RequestMeta

SEQ = "__SEQ__"

_EVENTS = ["Order Completed", "Product Viewed", "Product Added", "Checkout Started", "Signed Up"]
_CATEGORIES = ["Games", "Books", "Garden", "Kitchen", "Shoes"]
_PAGES = [("/pricing", "Pricing"), ("/docs/start", "Getting started"), ("/blog/launch", "We launched")]
_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0"
_LIBRARY = {"name": "analytics-node", "version": "6.2.0"}


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _context(rng: random.Random, path: str, title: str) -> dict:
    ctx = {
        "library": _LIBRARY,
        "ip": f"203.0.113.{rng.randrange(1, 255)}",
        "userAgent": _UA,
        "page": {"path": path, "url": f"https://shop.example.com{path}"},
    }
    if rng.random() < 0.2:
        ctx["campaign"] = {"source": "newsletter", "medium": "email", "name": "spring_sale"}
    return ctx


def message(rng: random.Random, kind: str, mid: str, at: datetime) -> dict:
    """One Segment message of ``kind`` with message id ``mid``."""
    user = f"user-{rng.randrange(100_000)}"
    path, title = rng.choice(_PAGES)
    out: dict = {
        "type": kind,
        "messageId": mid,
        "userId": user,
        "anonymousId": f"anon-{rng.getrandbits(64):016x}",
        "timestamp": _iso(at - timedelta(milliseconds=rng.randrange(50, 2000))),
        "context": _context(rng, path, title),
    }
    if kind == "track":
        out["event"] = rng.choice(_EVENTS)
        out["properties"] = {
            "product_id": f"p-{rng.randrange(10_000)}",
            "category": rng.choice(_CATEGORIES),
            "price": round(rng.uniform(1, 200), 2),
            "quantity": rng.randrange(1, 5),
            "currency": "USD",
        }
    elif kind == "page":
        out["name"] = title
        out["properties"] = {"path": path, "title": title}
    else:
        out["traits"] = {
            "email": f"{user}@example.com",
            "plan": rng.choice(["free", "pro", "team"]),
            "created_at": "2024-03-01T10:00:00Z",
        }
    return out


def track_body(seed: int = 1, mid: str = f"bench-{SEQ}") -> bytes:
    """The body of a single ``/v1/track`` call (no ``type``: the path names it)."""
    rng = random.Random(seed)
    at = datetime.now(UTC)
    msg = message(rng, "track", mid, at)
    del msg["type"]
    msg["sentAt"] = _iso(at)
    return msgspec.json.encode(msg)


def batch_body(n: int = 100, seed: int = 2, prefix: str = f"bench-{SEQ}") -> bytes:
    """The body of a ``/v1/batch`` call of ``n`` mixed messages, ids ``<prefix>-<i>``."""
    rng = random.Random(seed)
    at = datetime.now(UTC)
    items = []
    for i in range(n):
        r = rng.random()
        kind = "track" if r < 0.7 else "page" if r < 0.9 else "identify"
        items.append(message(rng, kind, f"{prefix}-{i}", at))
    return msgspec.json.encode({"batch": items, "sentAt": _iso(at)})


def canonical_events(n: int, source_id: str, per_request: int = 100) -> list[Event]:
    """``n`` canonical events, decoded from batch bodies by the real Segment adapter, with ids set
    the way ``gateway.ingest`` sets them. Every event has its own message id."""
    events: list[Event] = []
    request = 0
    while len(events) < n:
        size = min(per_request, n - len(events))
        body = batch_body(size, seed=1000 + request, prefix=f"d-{request}")
        envelope = segment.parse("batch", body)
        meta = RequestMeta(
            source_id=source_id,
            dialect=segment.DIALECT,
            call="batch",
            received_at=datetime.now(UTC),
            request_id=str(uuid_utils.uuid7()),
            ip="127.0.0.1",
            user_agent="bench",
        )
        decoded = segment.decode(meta, envelope)
        for event in decoded:
            event.id = str(uuid_utils.uuid7())
        events.extend(decoded)
        request += 1
    return events
