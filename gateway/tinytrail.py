"""TinyTrail's HTTP surface: ``POST /api/v1/collect``, its CORS preflight, and ``GET /js/tracker.js``.

A TinyTrail website is a source: its ``website_id`` (a UUID) is the source's key, and its settings hold
``domain``, ``excluded_ips`` (addresses or CIDR ranges) and ``content_groups`` (``{name, pattern}``).

The answers, as TinyTrail documents them (seeds/tinytrail-api.md):

- 202 ``{"status":"accepted"}``: stored;
- 204, no body: a silent drop. An unknown ``website_id`` stores nothing; traffic from a bot (the
  ``crawlerdetect`` package, on the User-Agent) or from one of the website's excluded IPs is stored,
  flagged in ``event.enrichment`` (``is_bot``/``is_excluded``), so reports can include it on request;
- 400 ``INVALID_PAYLOAD`` (a missing or mistyped field), 429 ``RATE_LIMITED`` with ``Retry-After``: 10
  requests per 10 seconds per client IP by default (``TRACKGATE_TINYTRAIL_RATE_LIMIT``/``_RATE_WINDOW``),
  counted in Redis so every gateway process shares one count.

The order: the body is validated first (400), then the website looked up, then the rate limit counted
(a malformed body is refused before it is counted; an unknown website counts), then the drop (204).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackgate.adapters import tinytrail, traffic
from trackgate.gateway.dialect import Dialect
from trackgate.gateway.errors import GatewayError
from trackgate.gateway.ingest import Accepted, Auth, AuthContext, Hints, IngestRoute, PrepareContext, Reply
from trackgate.gateway.rate_limit import hit as rate_limit_hit
from trackgate.gateway.responses import api_error
from trackgate.gateway.runtime import Runtime
from trackgate.gateway.scripts import packaged, script_response
from trackgate.schemas.request import Source

log = logging.getLogger(__name__)

DIALECT = "tinytrail"
PREFIXES = ("", "/tinytrail")
COLLECT = "/api/v1/collect"
TRACKER = "/js/tracker.js"
TRACKER_CACHE = "public, max-age=86400"


class Dropped(GatewayError):
    """TinyTrail's silent drop: answered 204, nothing stored."""

    status = 204
    code = "dropped"


UNKNOWN_WEBSITE = Source(id="", dialect=DIALECT, name="(unknown website)")
"""What ``authenticate`` finds for a website id no source has: the rate limit still counts it,
then ``prepare`` drops it."""
_UNKNOWN = Auth(UNKNOWN_WEBSITE, None)

ACCEPTED = Reply(202, b'{"status":"accepted"}')
SILENT = Reply(204, b"")


# --- who sent it --------------------------------------------------------------------------------


def website_id(value: str) -> str | None:
    """The canonical (lower-case, hyphenated) form of a UUID, or None for anything else."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


def authenticate(ctx: AuthContext) -> Auth[None] | None:
    """The website id is in the body: nothing to check before it is parsed."""
    envelope = ctx.envelope
    if envelope is None:
        return None
    key = website_id(envelope.website_id)
    found = ctx.runtime.sources.by_key(DIALECT, key) if key else None
    return _UNKNOWN if found is None else Auth(found, None)


# --- the rate limit -----------------------------------------------------------------------------


async def rate_limit(runtime: Runtime, ip: str | None) -> None:
    """Count this request against its IP's fixed window; raise ``RateLimited`` past the limit."""
    settings = runtime.settings
    await rate_limit_hit(
        runtime.redis,
        f"trackgate:tinytrail:rate:{ip or '-'}",
        limit=settings.tinytrail_rate_limit,
        window_seconds=settings.tinytrail_rate_window,
        timeout=settings.redis_timeout_seconds,
    )


async def prepare(ctx: PrepareContext[None]) -> Hints:
    """Rate limit, silent drop of an unknown website, and the flags the adapter stores."""
    incoming = ctx.incoming
    await rate_limit(ctx.runtime, incoming.client_ip)
    source = ctx.auth.source
    if source is UNKNOWN_WEBSITE:
        raise Dropped("no website has that website_id")
    settings = source.settings
    return {
        "is_bot": traffic.is_crawler(incoming.headers.get("user-agent") or ""),
        "is_excluded": traffic.is_excluded(incoming.client_ip, settings.get("excluded_ips")),
    }


def respond(accepted: Accepted) -> Reply:
    hints = accepted.meta.hints
    return SILENT if hints.get("is_bot") or hints.get("is_excluded") else ACCEPTED


def cors(headers: Mapping[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    """The preflight's CORS headers on every answer: the caller's origin, credentials allowed."""
    return (
        (b"access-control-allow-origin", headers.get("origin", "*").encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    )


def render_error(status: int, code: str, message: str, path: str | None) -> Response:
    """``{"status":"error","error":{"code","message"}}`` with TinyTrail's codes. Its collect endpoint
    documents no 413 or 415: a body too large or unreadable is ``INVALID_PAYLOAD``. A 204 is its silent
    drop (an unknown website): no body at all."""
    if status == 204:
        return Response(status_code=204)
    if status in (413, 415):
        status = 400
    return api_error(status, code, message, path)


COLLECT_ROUTE = IngestRoute(
    adapter=tinytrail,
    call="collect",
    cap=tinytrail.MAX_BODY_BYTES,
    ok_status=202,
    ok_body=ACCEPTED.body,
    authenticate=authenticate,
    prepare=prepare,
    respond=respond,
    cors=cors,
)


def ingest_routes() -> dict[str, IngestRoute[None]]:
    """POST /api/v1/collect, at the root and under /tinytrail."""
    return {f"{prefix}{COLLECT}": COLLECT_ROUTE for prefix in PREFIXES}


# --- preflight and tracker ------------------------------------------------------------------------


async def preflight(request: Request) -> Response:
    """OPTIONS /api/v1/collect: 204 with the headers TinyTrail lists."""
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": request.headers.get("origin", "*"),
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        },
    )


async def tracker(request: Request) -> Response:
    """GET /js/tracker.js: the vanilla-JS tracker; it sends to the base it was loaded from."""
    return script_response(request, packaged("tracker.js"), TRACKER_CACHE)


def routes() -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for prefix in PREFIXES:
        out.append(Route(f"{prefix}{COLLECT}", preflight, methods=["OPTIONS"]))
        out.append(Route(f"{prefix}{TRACKER}", tracker, methods=["GET"]))
    return out


# --- sources --------------------------------------------------------------------------------------

DOMAIN = re.compile(r"[A-Za-z0-9.-]{1,255}")
"""A website's domain (TinyTrail's rule: letters, digits, hyphens and dots, at most 255), whole."""


def new_source(key: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """A TinyTrail website: its ``website_id`` (a UUID) is the key; ``options`` give ``domain``
    (required), ``excluded_ips`` (IPs or CIDR ranges) and ``content_groups`` (``{name, pattern}``)."""
    domain = options.get("domain")
    if not domain or not DOMAIN.fullmatch(domain):
        raise ValueError("TinyTrail needs --domain: letters, digits, hyphens and dots, at most 255")
    if key is not None:
        canonical = website_id(key)
        if canonical is None:
            raise ValueError("a TinyTrail website id is a UUID")
        key = canonical
    key = key or str(uuid.uuid4())
    excluded = [str(e).strip() for e in options.get("excluded_ips") or []]
    for entry in excluded:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ValueError(f"excluded IP {entry!r} is not an address or CIDR range") from exc
    groups = options.get("content_groups") or []
    for group in groups:
        if not isinstance(group, dict) or not group.get("name") or not group.get("pattern"):
            raise ValueError("a content group is NAME=PATTERN (a name and a path glob), e.g. Blog=/blog/*")
    return {
        "key": key,
        "extra_keys": {},
        "settings": {"domain": domain, "excluded_ips": excluded, "content_groups": groups},
        "show": {"website id": key},
    }


BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)


def demo_lines(base: str, demo: dict[str, Any]) -> list[str]:
    """The curl line ``up`` prints (with a browser's User-Agent: curl's own is a bot's, dropped 204)."""
    return [
        f"  curl -sS {base}{COLLECT} -H 'Content-Type: application/json' "
        f"-A '{BROWSER_UA}' "
        f"""-d '{{"website_id":"{demo["key"]}","event_type":"page_view","url":"https://example.com/blog/post-1","""
        """"path":"/blog/post-1","referrer":"https://t.co/abc123","screen_width":1920,"screen_height":1080}'""",
        f'  or in a page: <script defer data-id="{demo["key"]}" src="{base}{TRACKER}"></script>',
    ]


SPEC = Dialect(
    name=DIALECT,
    adapter=tinytrail,
    ingest=ingest_routes(),
    routes=routes(),
    render_error=render_error,
    new_source=new_source,
    demo_lines=demo_lines,
)
