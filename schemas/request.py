"""What the gateway knows about a request before an adapter decodes it."""

from __future__ import annotations

from datetime import datetime

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
    ip: str | None = None
    user_agent: str | None = None
