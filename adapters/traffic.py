"""Who a request comes from, by rules that need no I/O: crawlers (``crawlerdetect``'s maintained list),
addresses a source excludes (IPs and CIDR ranges), and the content group a page path belongs to.

One place for both users of these rules: the gateway's dialect hooks (TinyTrail answers a bot or an
excluded address with a silent 204; OpenPanel answers a bot without a secret with 202) and the
workers' enrichment chain, which flags the events of every dialect.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from crawlerdetect import CrawlerDetect

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_detector = CrawlerDetect()


@lru_cache(maxsize=16384)
def crawler_name(user_agent: str) -> str | None:
    """The crawler ``user_agent`` names (``crawlerdetect``: ~0.6 ms a new string, hence the cache),
    or None when it is not one."""
    if not user_agent or not _detector.isCrawler(user_agent):
        return None
    matches = _detector.getMatches()
    return matches if isinstance(matches, str) else (matches[0] if matches else "bot")


def is_crawler(user_agent: str) -> bool:
    return crawler_name(user_agent) is not None


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


@lru_cache(maxsize=1024)
def networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """A source's ``excluded_ips`` as networks; an entry that is neither an IP nor a CIDR is skipped
    (``sources add`` refuses those)."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except (ValueError, AttributeError):
            continue
    return tuple(out)


def is_excluded(ip: str | IPAddress | None, entries: Any) -> bool:
    """Whether ``ip`` is one of ``entries`` (a source's ``excluded_ips``) or inside one of its ranges."""
    if not entries or not isinstance(entries, list | tuple):
        return False
    address = parse_ip(ip) if ip is None or isinstance(ip, str) else ip
    if address is None:
        return False
    found = networks(tuple(str(e) for e in entries))
    return any(address.version == net.version and address in net for net in found)


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def content_group(path: str | None, groups: Iterable[Any] | None) -> str | None:
    """The name of the first content group (``{"name", "pattern"}``) whose pattern matches the whole
    ``path``: a glob where ``*`` is any run of characters, ``/`` included (``/blog/*`` holds
    ``/blog/a/b``, not ``/blog``), ``?`` one character, ``[...]`` a set."""
    if not path or not groups:
        return None
    for group in groups:
        if not isinstance(group, dict):
            continue
        name, pattern = group.get("name"), group.get("pattern")
        if isinstance(name, str) and isinstance(pattern, str) and _glob(pattern).match(path):
            return name
    return None
