"""What the gateway knows about a request before an adapter decodes it."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import msgspec


def request_key(dialect: str, source_id: str, call: str, idempotency_key: str | None, body: bytes) -> str:
    """What names a request when it is sent again (``RequestMeta.key``): a BLAKE2b digest of its
    dialect, source, call and body, or the client's ``Idempotency-Key`` instead of the body."""
    digest = hashlib.blake2b(f"{dialect}\0{source_id}\0{call}\0".encode(), digest_size=16)
    if idempotency_key is not None:
        digest.update(b"key\0" + idempotency_key.encode("utf-8", "surrogateescape"))
    else:
        digest.update(b"body\0" + body)
    return "r" + digest.hexdigest()


class LazyRequestKey:
    """A request's key (:func:`request_key`), worked out the first time an adapter asks for it, then
    kept. Only an item without a message id of the client's needs it (``assigned_message_id``); a
    request whose items all carry one (every real SDK's) never pays for the digest of its body (~15k
    instructions for a 540-byte ``/v1/track``: 6% of the whole accept path)."""

    __slots__ = ("_parts", "_key")

    def __init__(
        self, dialect: str, source_id: str, call: str, idempotency_key: str | None, body: bytes
    ) -> None:
        self._parts = (dialect, source_id, call, idempotency_key, body)
        self._key: str | None = None

    def __call__(self) -> str:
        key = self._key
        if key is None:
            key = self._key = request_key(*self._parts)
            self._parts = None  # type: ignore[assignment]  # the body is not held longer than needed
        return key


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
    deduplicated (``adapters.fields.assigned_message_id``). Read it with :meth:`key`: the gateway
    leaves this empty and gives ``lazy_key`` instead. Both empty: none (tests, replays)."""
    lazy_key: LazyRequestKey | None = None
    """The gateway's: ``request_key`` worked out only if an adapter asks for it (:meth:`key`)."""
    ip: str | None = None
    user_agent: str | None = None
    headers: dict[str, str] = {}
    """The request's headers, names lower-cased (dialects read their SDK and IP headers here)."""
    query: dict[str, str] = {}
    """The query string, first value of each name."""
    hints: dict[str, Any] = {}
    """What the gateway worked out before decoding (a dialect's ``prepare`` hook): device and
    session ids, a trusted client IP, flags. Adapters read it; they never compute it."""

    def key(self) -> str:
        """``request_key``, or the gateway's ``lazy_key`` worked out now (once a request); "" if none."""
        if self.request_key:
            return self.request_key
        return self.lazy_key() if self.lazy_key is not None else ""


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
