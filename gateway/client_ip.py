"""Which IP a request is from, for geo: the peer address, or a client-IP header when it can be trusted.

Headers are read only when the caller is trusted: it proved a server-side secret (an SDK on a backend
forwards its end user's IP in ``x-client-ip``), or the TCP peer is one of ``TRACKGATE_TRUSTED_PROXIES``
(a load balancer that sets ``x-forwarded-for``). Anyone else could put any address there, so for them
the peer address is the answer.

The header order and the "first public IP" rule are OpenPanel's (``packages/common/server/
get-client-ip.ts``); other dialects can pass their own order.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

from trackgate.adapters.traffic import parse_ip

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HEADER_ORDER: tuple[str, ...] = (
    "openpanel-client-ip",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "x-forwarded-for",
    "x-real-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-appengine-user-ip",
    "do-connecting-ip",
    "x-nf-client-connection-ip",
    "x-forwarded",
    "forwarded",
)
"""OpenPanel's default order: headers an SDK sets explicitly before the ones infrastructure sets."""

_FORWARDED_FOR = re.compile(r'for="?\[?([^\]",;]+)\]?"?', re.I)


@lru_cache(maxsize=64)
def parse_networks(spec: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 192.168.1.7"`` -> networks. Raises ValueError on anything that is not one."""
    networks = []
    for part in spec.split(","):
        part = part.strip()
        if part:
            networks.append(ipaddress.ip_network(part, strict=False))
    return tuple(networks)


_NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)
"""OpenPanel's ``isPublicIp`` ranges (and the unspecified addresses). Python's ``is_private`` would also
drop the documentation and benchmark ranges, which the real server takes."""


def is_public(value: str) -> bool:
    """An address that says where a person is: not private, loopback, link-local or unspecified."""
    address = parse_ip(value)
    if address is None:
        return False
    return not any(address in network for network in _NOT_PUBLIC if network.version == address.version)


def is_trusted_proxy(peer: str | None, proxies: Iterable[IPNetwork]) -> bool:
    address = parse_ip(peer)
    return address is not None and any(address in network for network in proxies)


def from_headers(headers: Mapping[str, str], order: Sequence[str] = HEADER_ORDER) -> str | None:
    """The first public IP among ``order`` (``x-forwarded-for``: its first entry; ``forwarded``: its
    first ``for=``), as OpenPanel reads them; None when no header names one."""
    for name in order:
        value = headers.get(name)
        if not value:
            continue
        if name == "x-forwarded-for":
            value = value.split(",")[0].strip()
        elif name == "forwarded":
            match = _FORWARDED_FOR.search(value)
            value = match.group(1) if match else ""
        else:
            value = value.strip()
        if is_public(value):
            address = parse_ip(value)
            return str(address)
    return None


def forwarded_client(headers: Mapping[str, str], proxies: Iterable[IPNetwork]) -> str | None:
    """The client a chain of trusted proxies names: ``x-forwarded-for`` read from the right (each proxy
    appends the address it saw), skipping our own proxies; the first other address is the client. The
    left-most entries are whatever the client wrote, so they are never believed. Then ``x-real-ip``."""
    networks = tuple(proxies)
    hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            return None  # a garbled chain: believe none of it
        if not any(address in network for network in networks if network.version == address.version):
            return str(address)
    address = parse_ip(headers.get("x-real-ip"))
    return str(address) if address is not None else None


def client_ip(
    headers: Mapping[str, str],
    peer: str | None,
    *,
    trusted: bool,
    proxies: Iterable[IPNetwork] = (),
    order: Sequence[str] = HEADER_ORDER,
) -> str | None:
    """The request's client IP: the first public IP the headers name when ``trusted`` (a verified
    server-side secret: the SDK forwards its end user's address); the address our trusted proxies saw
    when the peer is one of them; else the peer address."""
    if trusted:
        found = from_headers(headers, order)
        if found:
            return found
    elif is_trusted_proxy(peer, proxies):
        return forwarded_client(headers, proxies) or peer
    return peer
