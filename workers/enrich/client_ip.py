"""The client IP the chain works from: ``event.context.ip``.

Adapters put the chosen IP there (the one the client supplied where its dialect allows it, else the
request's as the gateway recorded it, trusted proxies already resolved). The chain only reads it;
``ip_policy`` is the last processor and the only one that changes it.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=65536)
def parse_ip(text: str | None) -> IPAddress | None:
    """The address in ``text``, or None. IPv4-mapped IPv6 (``::ffff:1.2.3.4``) is read as IPv4;
    brackets and an IPv6 zone (``[fe80::1%eth0]``) are dropped. A port is not accepted."""
    if not text:
        return None
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    value = value.partition("%")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


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
