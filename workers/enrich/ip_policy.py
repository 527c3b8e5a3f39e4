"""Per source: ``settings.ip_policy`` for the raw IP, applied last (after geo and the visitor id).

- ``keep`` (default): nothing changes.
- ``truncate``: ``context.ip`` keeps its network part: IPv4 the first three octets (``203.0.113.0``),
  IPv6 the first 48 bits (the last 80 zeroed).
- ``drop``: ``context.ip`` is removed.

This is the one client field the chain changes. When the IP also appears in ``raw`` (the client sent it
in the body), that JSON string is replaced there too, by the truncated IP, or by ``""`` for drop (a string
stays a string, so the JSON stays valid wherever it stood): the policy holds for everything stored.
``enrichment.ip_policy`` records a policy other than keep. An unknown policy is treated as ``drop``
(the privacy-safe reading of a typo); an IP that cannot be parsed is dropped under ``truncate``.
"""

from __future__ import annotations

import ipaddress

from trackgate.schemas.event import Event
from trackgate.workers.enrich.client_ip import IPAddress, parse_ip

POLICIES = ("keep", "truncate", "drop")


def truncate(address: IPAddress) -> str:
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def apply(ip: str | None, policy: str) -> str | None:
    if ip is None or policy == "keep":
        return ip
    if policy == "truncate":
        address = parse_ip(ip)
        return truncate(address) if address is not None else None
    return None


def process(event: Event, env) -> None:
    policy = env.source(event.source_id).get("ip_policy") or "keep"
    if policy == "keep":
        return
    if policy not in POLICIES:
        policy = "drop"
    ip = event.context.ip
    event.enrichment["ip_policy"] = policy
    if ip is None:
        return
    new = apply(ip, policy)
    event.context.ip = new
    quoted = f'"{ip}"'
    if quoted in event.raw:
        event.raw = event.raw.replace(quoted, f'"{new or ""}"')
