"""Every dialect trackgate speaks, by name: the pure side (what workers may use; they never import the
gateway). Read-only. Adding a dialect is one line in ``CODECS`` (and one in ``gateway.routes.DIALECTS``;
a test checks that the two name the same dialects in the same order)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from trackgate.adapters import bucket, commandersact, openpanel, segment, spectacle, tinytrail
from trackgate.adapters.base import Adapter, PartialDecoder, Transport


@dataclass(frozen=True, slots=True)
class Codec:
    """A dialect's pure parts: its adapter module and, when it has them, optional capabilities (typed
    by their Protocol, so nothing is looked up by name)."""

    adapter: Adapter
    partial: PartialDecoder | None = None
    """Decodes a request item by item, refusing some (Commanders Act)."""

    @property
    def name(self) -> str:
        return self.adapter.dialect

    @property
    def transport(self) -> Transport:
        """How a destination of this dialect's kind is sent to."""
        return self.adapter.TRANSPORT

    def replay_call(self, payload: Any) -> str:
        """The call a bare stored payload of this dialect is decoded with."""
        return self.adapter.replay_call(payload)


CODECS: tuple[Codec, ...] = (
    Codec(segment),
    Codec(spectacle),
    Codec(openpanel),
    Codec(bucket),
    Codec(commandersact, partial=commandersact),
    Codec(tinytrail),
)
"""In the order ``trackgate up`` lists them."""

BY_NAME: Mapping[str, Codec] = MappingProxyType({codec.name: codec for codec in CODECS})
ADAPTERS: Mapping[str, Adapter] = MappingProxyType({codec.name: codec.adapter for codec in CODECS})
