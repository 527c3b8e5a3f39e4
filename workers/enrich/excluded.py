"""Per source: ``settings.excluded_ips`` (IPs and CIDRs) → ``enrichment.is_excluded``.

Sets ``is_excluded = true`` on an excluded event (absent means not excluded, as adapters flag it); a
True an adapter already set stays. Excluded events are stored, flagged: reports leave them out.
Entries that are not an IP or a CIDR are ignored (``sources add`` is where they should be refused).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from schemas.event import Event
from workers.enrich.client_ip import IPAddress, parse_ip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=1024)
def networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except (ValueError, AttributeError):
            continue
    return tuple(out)


def is_excluded(address: IPAddress, entries: tuple[str, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks(entries))


def process(event: Event, env) -> None:
    entries = env.source(event.source_id).get("excluded_ips")
    if not entries or not isinstance(entries, list):
        return
    out = event.enrichment
    if out.get("is_excluded") is True:
        return
    address = parse_ip(event.context.ip)
    if address is None:
        return
    if is_excluded(address, tuple(str(e) for e in entries)):
        out["is_excluded"] = True
