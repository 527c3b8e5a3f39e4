"""Every dialect trackgate speaks, by name. Read-only: adding a dialect is a line here."""

from __future__ import annotations

from types import MappingProxyType

from trackgate.adapters import bucket, commandersact, openpanel, segment, spectacle, tinytrail
from trackgate.adapters.base import Adapter

ADAPTERS: MappingProxyType[str, Adapter] = MappingProxyType(
    {  # type: ignore[arg-type]
        "segment": segment,
        "spectacle": spectacle,
        "openpanel": openpanel,
        "bucket": bucket,
        "commandersact": commandersact,
        "tinytrail": tinytrail,
    }
)
