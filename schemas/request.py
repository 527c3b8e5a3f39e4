"""What the gateway knows about a request before an adapter decodes it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Source(msgspec.Struct, frozen=True):
    """A configured source: who may send, in which dialect. Credentials are never held here."""

    id: str
    dialect: str
    name: str
    settings: dict = {}


class RequestMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Everything an adapter may use besides the body. Adapters read the clock only from here."""

    source_id: str
    dialect: str
    call: str
    """The call the path names (``track``, ``batch``, ...)."""
    received_at: datetime
    request_id: str
    """Unique per request; adapters derive missing message ids from it, so decoding stays pure."""
    request_key: str = ""
    """The same for the same request sent again: a digest of the dialect, the source, the call and the
    body (or, instead of the body, the client's ``Idempotency-Key`` header). An item that carries no
    message id of the client's but does carry the client's own time (or whose request has an
    ``Idempotency-Key``) gets its message id from this key, so a retry after an ambiguous failure is
    deduplicated (``adapters.fields.assigned_message_id``). Empty: not computed (tests, replays)."""
    ip: str | None = None
    user_agent: str | None = None
    headers: dict[str, str] = {}
    """The request's headers, names lower-cased (dialects read their SDK and IP headers here)."""
    query: dict[str, str] = {}
    """The query string, first value of each name."""
    hints: dict[str, Any] = {}
    """What the gateway worked out before decoding (a dialect's ``prepare`` hook): device and
    session ids, a trusted client IP, flags. Adapters read it; they never compute it."""


class Incoming(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of a request that a dialect's gateway hooks may read (never the body)."""

    path: str
    headers: dict[str, str]
    query: dict[str, str] = {}
    params: dict[str, str] = {}
    """Path parameters of a pattern route (``/{tracking_key}/event``)."""
    client_ip: str | None = None
    """The TCP peer, or, when the peer is one of ``TRACKGATE_TRUSTED_PROXIES``, the client those
    proxies name (uvicorn's own forwarded-header handling is off)."""
