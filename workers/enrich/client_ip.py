"""The client IP the chain works from: ``event.context.ip``.

Adapters put the chosen IP there (the one the client supplied where its dialect allows it, else the
request's as the gateway recorded it, trusted proxies already resolved). The chain only reads it;
``ip_policy`` is the last processor and the only one that changes it.
"""

from __future__ import annotations

from functools import lru_cache

from trackgate.adapters.traffic import IPAddress, parse_ip


@lru_cache(maxsize=65536)
def normalized(text: str | None) -> str | None:
    """The address in its canonical text form (``::ffff:1.2.3.4`` → ``1.2.3.4``), or None."""
    address = parse_ip(text)
    return address.compressed if address is not None else None


@lru_cache(maxsize=65536)
def public_ip(text: str | None) -> IPAddress | None:
    """The address if it is globally routable (worth a geo lookup), else None."""
    address = parse_ip(text)
    return address if address is not None and address.is_global else None


__all__ = ["IPAddress", "normalized", "parse_ip", "public_ip"]
