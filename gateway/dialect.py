"""The one declared value per vendor: everything the gateway and ``trackgate`` know about a dialect.

Each dialect's HTTP module (``gateway/<dialect>.py``) ends with ``SPEC = Dialect(...)``, and
``gateway.routes.DIALECTS`` lists them. The pure side (decode/encode, the forwarding transport, the
replay call) is the ``adapter`` and lives in ``adapters/<dialect>.py``, where workers can reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from starlette.routing import BaseRoute

from trackgate.adapters.base import Adapter
from trackgate.gateway.ingest import IngestRoute
from trackgate.gateway.responses import ErrorRenderer

NewSource = Callable[[str | None, dict[str, Any]], dict[str, Any]]
"""``(key or None, options) -> {"key", "extra_keys", "settings", "show"}``: the credentials of a new
source (``sources add`` and ``up``): the primary key (``sources.key_hash``), extra keys (kind -> key,
``source_keys``), the source's settings (jsonb) and what to print once (label -> value)."""

DemoLines = Callable[[str, dict[str, Any]], list[str]]
"""``(base URL, what new_source made) -> lines``: the curl lines ``trackgate up`` prints."""

Claim = Callable[[Mapping[str, str], Mapping[str, str]], bool]
"""``(headers, query) -> bool``: on a path several dialects share, whether a request is this one's."""

_NONE: Mapping[str, IngestRoute[Any]] = MappingProxyType({})


@dataclass(frozen=True, kw_only=True, slots=True)
class Dialect:
    name: str
    adapter: Adapter
    """The pure side: parse, credentials, decode, encode, TRANSPORT, replay_call."""
    ingest: Mapping[str, IngestRoute[Any]]
    """Its own accepting POST paths (exact or ``{param}`` patterns), served by ``IngestFront``."""
    render_error: ErrorRenderer
    """Its error shape, used by ``responses.error_response`` for every error it answers."""
    new_source: NewSource
    demo_lines: DemoLines
    routes: Sequence[BaseRoute] = ()
    """Everything else (GET endpoints, preflights), served by Starlette."""
    shared: Mapping[str, IngestRoute[Any]] = field(default_factory=lambda: _NONE)
    """Unprefixed POST paths another dialect may use too (``/event``)."""
    claims: Claim | None = None
    """On a shared path: whether a request is this dialect's. The one dialect without a claim on a
    path takes what no claim takes (``routes.ingest_routes`` refuses two of them)."""

    def __post_init__(self) -> None:
        if self.adapter.dialect != self.name:
            raise ValueError(f"dialect {self.name!r} declares the adapter of {self.adapter.dialect!r}")
        for path, route in (*self.ingest.items(), *self.shared.items()):
            if route.adapter is not self.adapter:
                raise ValueError(f"dialect {self.name!r}: POST {path} decodes with {route.adapter.dialect!r}")
