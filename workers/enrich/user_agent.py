"""User agent → browser, OS and device type (``ua-parser`` with its Rust regex backend).

Enrichment keys: ``browser``, ``browser_version``, ``os``, ``os_version``, ``device_type`` (one of
``desktop``, ``mobile``, ``tablet``, ``bot``: ``bot`` whenever ``is_bot``, set by :mod:`bots` before).
Parsing a new user agent costs ~40 µs; results are cached by user-agent string, and real traffic
repeats a few thousand strings.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

import ua_parser

from trackgate.adapters.traffic import bounded_user_agent
from trackgate.schemas.event import Event

_TABLET = re.compile(r"iPad|Tablet|Kindle|Silk/|PlayBook|Nexus (7|9|10)\b|SM-[TPX]\d|Tab\b", re.I)
_MOBILE = re.compile(r"Mobi|iPhone|iPod|Android.*Mobile|Windows Phone|IEMobile|BlackBerry|Opera Mini", re.I)
_TABLET_DEVICES = frozenset({"iPad", "Kindle", "Kindle Fire"})


class UserAgentInfo(NamedTuple):
    browser: str | None
    browser_version: str | None
    os: str | None
    os_version: str | None
    device_type: str


def _version(*parts: str | None) -> str | None:
    out = []
    for part in parts:
        if not part:
            break
        out.append(part)
    return ".".join(out) or None


def _family(value: str | None) -> str | None:
    return None if value in (None, "Other") else value


def device_type(ua: str, device_family: str | None, device_brand: str | None) -> str:
    """``tablet``, ``mobile`` or ``desktop`` (``bot`` is decided by :mod:`bots`, which runs first):
    ua-parser's device (iPad, Generic_Android_Tablet) first, then the usual user-agent tokens (Android
    without ``Mobile`` is a tablet); anything else is a desktop."""
    if device_family in _TABLET_DEVICES or device_brand == "Generic_Android_Tablet" or _TABLET.search(ua):
        return "tablet"
    if "Android" in ua and "Mobile" not in ua:
        return "tablet"
    if _MOBILE.search(ua) or device_family in ("iPhone", "iPod", "Generic Smartphone"):
        return "mobile"
    return "desktop"


@lru_cache(maxsize=16384)
def parse_user_agent(ua: str) -> UserAgentInfo:
    result = ua_parser.parse(ua)
    agent, os, device = result.user_agent, result.os, result.device
    return UserAgentInfo(
        browser=_family(agent.family) if agent else None,
        browser_version=_version(agent.major, agent.minor, agent.patch) if agent else None,
        os=_family(os.family) if os else None,
        os_version=_version(os.major, os.minor, os.patch) if os else None,
        device_type=device_type(ua, device.family if device else None, device.brand if device else None),
    )


@lru_cache(maxsize=16384)
def ua_fields(ua: str) -> dict[str, str]:
    """The enrichment keys of a user agent (without the unknown ones); callers copy, never change it."""
    info = parse_user_agent(ua)
    return {k: v for k, v in zip(UserAgentInfo._fields, info, strict=True) if v is not None}


def process(event: Event, env) -> None:
    ua = event.context.user_agent
    if not ua:
        return
    # only the first CLASSIFIED_UA_CHARS characters are parsed: the cost and the cache's keys stay
    # bounded whatever a client sends (a longer agent is a bot by rule, see bots)
    fields = ua_fields(bounded_user_agent(ua))
    out = event.enrichment
    if out.keys().isdisjoint(fields):
        out.update(fields)  # the usual case: nothing of these was sent
    else:
        for key, value in fields.items():
            out.setdefault(key, value)
    if out.get("is_bot") is True:
        out["device_type"] = "bot"
