"""Per source: ``settings.excluded_ips`` (IPs and CIDRs) → ``enrichment.is_excluded``.

Sets ``is_excluded = true`` on an excluded event (absent means not excluded, as adapters flag it); a
True an adapter already set stays. Excluded events are stored, flagged: reports leave them out.
Entries that are not an IP or a CIDR are ignored (``sources add`` is where they should be refused).
"""

from __future__ import annotations

from trackgate.adapters.traffic import is_excluded
from trackgate.schemas.event import Event


def process(event: Event, env) -> None:
    entries = env.source(event.source_id).get("excluded_ips")
    if not entries or not isinstance(entries, list):
        return
    out = event.enrichment
    if out.get("is_excluded") is True:
        return
    if is_excluded(event.context.ip, entries):
        out["is_excluded"] = True
