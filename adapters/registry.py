"""Every dialect trackgate speaks, by name. Read-only: adding a dialect is a line here."""

from __future__ import annotations

from types import MappingProxyType

from adapters import bucket, segment
from adapters.base import Adapter

ADAPTERS: MappingProxyType[str, Adapter] = MappingProxyType({"segment": segment, "bucket": bucket})  # type: ignore[dict-item]
