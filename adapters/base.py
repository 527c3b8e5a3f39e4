"""What every dialect adapter provides, and the errors adapters raise.

An adapter is pure: no I/O, no clock, no randomness. Time and ids come in through ``RequestMeta``.
Decoding is split in two so the gateway can authenticate with credentials found in the body:

- ``parse(call, body) -> envelope``: bytes to the dialect's envelope (raises ``AdapterError``);
- ``credentials(headers, envelope) -> str | None``: the key the request presents (first called with
  ``envelope=None``, so a key in a header is checked before the body is parsed);
- ``decode(meta, envelope) -> list[Event]``: validated, normalized events (all or nothing).

A dialect whose vendor answers 200 to a request and drops the events it cannot take (Commanders Act)
also provides ``decode_partial(meta, envelope) -> Decoded``: the events it accepts, and each refused
one with its index and reason; the gateway keeps refused events in quarantine instead of losing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import msgspec

from trackgate.schemas.event import Event
from trackgate.schemas.request import RequestMeta


class AdapterError(Exception):
    """A request the dialect's rules refuse. ``code`` is stable; ``path`` names the field."""

    status = 400

    def __init__(self, code: str, message: str, path: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path


class InvalidPayload(AdapterError):
    """The body is not what the dialect accepts (bad JSON, wrong shape, broken rule)."""


class PayloadTooLarge(AdapterError):
    """An event or a batch is over the dialect's documented limit."""

    status = 413


class Refused(msgspec.Struct, kw_only=True):
    """One item of a request that a partial-success dialect refused (kept in quarantine)."""

    index: int
    code: str
    reason: str
    message_id: str | None = None
    raw: str
    """The item as it arrived (JSON text)."""
    dialect: str = ""
    version: str = ""
    """The dialect version the item was read as (``v1``/``v2``), when known."""
    request_id: str | None = None
    received_at: datetime | None = None
    """From the request's meta: quarantine replay re-decodes the item with them."""


class Decoded(msgspec.Struct, kw_only=True):
    events: list[Event]
    refused: list[Refused] = []


class Adapter(Protocol):
    dialect: str

    def parse(self, call: str, body: bytes) -> Any: ...

    def credentials(self, headers: Mapping[str, str], envelope: Any | None) -> str | None: ...

    def decode(self, meta: RequestMeta, envelope: Any) -> list[Event]: ...

    def encode(self, events: list[Event]) -> list[dict[str, Any]]: ...


def scrub_nul(event: Event) -> Event:
    """Replace U+0000 with U+FFFD in every canonical string of ``event``; ``raw`` stays verbatim.

    PostgreSQL refuses NUL in text and jsonb. The meaning of the rest of the event is clear, so it is
    kept; adapters call this only when the body contains a ``\\u0000`` escape (the only way JSON can
    carry a NUL), so the common path pays nothing.
    """
    fields = msgspec.to_builtins(event)
    raw = fields.pop("raw")
    cleaned = _scrub(fields)
    cleaned["raw"] = raw
    return msgspec.convert(cleaned, Event)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value
