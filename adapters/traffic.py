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

from crawlerdetect.providers.crawlers import data as _crawler_patterns  # type: ignore[import-untyped]
from crawlerdetect.providers.exclusions import data as _exclusion_patterns  # type: ignore[import-untyped]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CLASSIFIED_UA_CHARS = 512
"""How much of a user agent the crawler rules (and ua-parser) look at. Browsers' user agents are
100-300 characters (in-app browsers with many tokens reach ~450); crawlers name themselves near the
start. The rules cost time in proportion to the length (~15-30 µs a character), so this bounds it."""
OVERLONG_UA_CHARS = 1024
"""A user agent longer than this is a bot by rule, without being classified: no browser sends one."""
OVERLONG_UA_NAME = "overlong-user-agent"

_RUN = r"[a-z0-9\-_]*"


def _crawler_regex() -> re.Pattern[str]:
    r"""crawlerdetect's crawler list as one regex, as ``CrawlerDetect`` compiles it, except that a
    pattern starting with a run of word characters (``[a-z0-9\-_]*(bot|crawl|...)``) may only start
    where such a run starts: ``search`` otherwise retries it at every character of a long run, which
    is quadratic (a 20 KB agent took 27 s). The same agents match, with the same leftmost match: a
    match inside a run implies one at the run's start, which comes first."""
    patterns = [rf"(?<![a-z0-9\-_]){p}" if p.startswith(_RUN) else p for p in _crawler_patterns]
    return re.compile(f"({'|'.join(patterns)})", re.IGNORECASE)


_CRAWLERS = _crawler_regex()
_EXCLUSIONS = re.compile(f"({'|'.join(_exclusion_patterns)})", re.IGNORECASE)


def bounded_user_agent(user_agent: str) -> str:
    """The part of ``user_agent`` that rules classify (its first CLASSIFIED_UA_CHARS characters)."""
    return user_agent[:CLASSIFIED_UA_CHARS]


def crawler_name(user_agent: str) -> str | None:
    """The crawler ``user_agent`` names (crawlerdetect's maintained list), or None when it is not one.
    An agent over OVERLONG_UA_CHARS is a bot by rule; otherwise only its first CLASSIFIED_UA_CHARS
    characters are looked at, so the cost is bounded whatever a client sends."""
    if not user_agent:
        return None
    if len(user_agent) > OVERLONG_UA_CHARS:
        return OVERLONG_UA_NAME
    return _classify(bounded_user_agent(user_agent).strip())


@lru_cache(maxsize=16384)
def _classify(user_agent: str) -> str | None:
    """crawlerdetect's ``isCrawler``/``getMatches`` on a bounded agent (~0.6 ms a new string, hence
    the cache, keyed by at most CLASSIFIED_UA_CHARS characters)."""
    agent = _EXCLUSIONS.sub("", user_agent)
    if not agent:
        return None
    found = _CRAWLERS.search(agent)
    if found is None:
        return None
    return next((group for group in found.groups() if group), "bot")


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
