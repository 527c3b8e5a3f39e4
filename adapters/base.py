"""What every dialect adapter provides, and the errors adapters raise.

An adapter is pure: no I/O, no clock, no randomness. Time and ids come in through ``RequestMeta``.
Decoding is split in two so the gateway can authenticate with credentials found in the body:

- ``parse(call, body) -> envelope``: bytes to the dialect's envelope (raises ``AdapterError``);
- ``credentials(headers, envelope) -> str | None``: the key the request presents (first called with
  ``envelope=None``, so a key in a header is checked before the body is parsed);
- ``decode(meta, envelope) -> list[Event]``: validated, normalized events (all or nothing).

The worker side of a dialect lives here too, because workers never import the gateway:

- ``encode(events) -> items``: what the vendor's own SDK would send for canonical events;
- ``TRANSPORT``: how those items become HTTP requests to a destination of the dialect's kind;
- ``replay_call(payload) -> str``: the call a bare stored payload is decoded with on replay.

An adapter module satisfies :class:`Adapter` structurally (mypy checks the module against it where the
registry lists it). Optional capabilities are Protocols of their own, never looked up by name: a
dialect whose vendor answers 200 to a request and drops the events it cannot take (Commanders Act) is
also a :class:`PartialDecoder`: ``decode_partial(meta, envelope) -> Decoded`` gives the events it
accepts and each refused one with its index and reason (the gateway keeps refused events in
quarantine instead of losing them), and ``decode_item`` re-decodes one refused item later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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


# --- sending to a destination of the dialect's kind (pure request building) ----------------------


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes


def ok_2xx(status: int, body: bytes) -> bool:
    return 200 <= status < 300


def iso_millis(now: float) -> str:
    """``now`` (Unix seconds) as ``2026-01-02T03:04:05.678Z``."""
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Transport:
    """How a destination of kind ``kind`` is sent to (``adapters.transports`` plans and renders it)."""

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
    success: Callable[[int, bytes], bool] = ok_2xx
    optional_credentials: tuple[str, ...] = ()
    single_routes: frozenset[str] = frozenset()
    """Routes that take one item a request (Reflag's /feedback beside /bulk)."""
    sign: bool = False
    notes: str = ""


# --- the contract ---------------------------------------------------------------------------------


class Adapter(Protocol):
    """What every dialect adapter module provides (see the module docstring)."""

    dialect: str
    TRANSPORT: Transport
    BODIES: Mapping[str, type]
    """The msgspec type ``parse`` reads each call's body as (its JSON Schema is in ``/openapi.json``);
    a call not listed takes any JSON object and checks it field by field."""

    def parse(self, call: str, body: bytes) -> Any: ...

    def credentials(self, headers: Mapping[str, str], envelope: Any | None) -> str | None: ...

    def decode(self, meta: RequestMeta, envelope: Any) -> list[Event]: ...

    def encode(self, events: list[Event]) -> list[dict[str, Any]]: ...

    def replay_call(self, payload: Any) -> str: ...


class PartialDecoder(Protocol):
    """A dialect that accepts a request and refuses some of its items (kept in quarantine)."""

    def decode_partial(self, meta: RequestMeta, envelope: Any) -> Decoded: ...

    def decode_item(self, meta: RequestMeta, raw: bytes, index: int = 0) -> Event: ...


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
