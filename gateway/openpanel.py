"""OpenPanel's HTTP surface: ``POST /track``, ``GET /track/device-id``, the legacy ``POST /event``,
``/profile``, ``/profile/increment``, ``/profile/decrement``, at the root and under ``/openpanel``; and
``GET /op1.js``, the web SDK's script-tag build (``@openpanel/web``, ``gateway/static/openpanel``).

Checks run in the real server's order (``apps/api/src/routes/track.router.ts``): content type, body
validation, then the client (``utils/auth.ts``), then the bot check (``hooks/is-bot.hook.ts``).

A source's primary key is its client id (a UUID); its client secret is an extra key of kind
``secret``; ``settings.cors`` lists the browser origins allowed without a secret (``*.example.com``
wildcards, ``*`` for any origin). Device ids are made the cookie-less way (``packages/common/server/
profileId.ts``: a hash of user agent, IP, project and a salt that rotates daily, today's and
yesterday's kept in Redis); a session id lives in Redis until 30 idle minutes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
import uuid
import weakref
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import msgspec
import redis.exceptions
import uuid_utils
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router

from trackgate.adapters import openpanel, traffic
from trackgate.gateway import client_ip
from trackgate.gateway.auth import SourceCache
from trackgate.gateway.dialect import Dialect
from trackgate.gateway.errors import (
    GatewayError,
    InvalidBody,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from trackgate.gateway.ingest import Accepted, Auth, AuthContext, Hints, IngestRoute, PrepareContext, Reply
from trackgate.gateway.responses import JSONResponse, error_response
from trackgate.gateway.runtime import Runtime
from trackgate.gateway.scripts import packaged, script_response
from trackgate.schemas.request import Source

log = logging.getLogger(__name__)

DIALECT = "openpanel"
PREFIX = "/openpanel"

SESSION_IDLE_SECONDS = 30 * 60
SALT_KEY = "trackgate:openpanel:salt:{day}"
SESSION_KEY = "trackgate:openpanel:session:{source}:{device}"
SALT_TTL_SECONDS = 3 * 86400
UNKNOWN_UA = "unknown/1.0"
"""What the real server hashes when a request has no user agent."""

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TEXT = b"text/plain; charset=utf-8"
_encode = msgspec.json.encode

_CALL_PATHS = {
    "track": "/track",
    "event": "/event",
    "profile": "/profile",
    "profile_increment": "/profile/increment",
    "profile_decrement": "/profile/decrement",
}


# --- authentication ----------------------------------------------------------------------------------


def _clean_domain(domain: str) -> str:
    return re.sub(r"https?://", "", domain.replace("www.", "", 1), count=1).removesuffix("/")


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """OpenPanel's CORS rule: an allowed domain equals the origin once both lose ``www.``, the scheme and
    a trailing slash; ``*.example.com`` matches any subdomain; ``*`` any origin that is present.
    (The real server's wildcard regex is unanchored, so ``a.example.com.evil.net`` passes there; here
    the whole origin must match.)"""
    if not origin or not allowed:
        return False
    cleaned_origin = _clean_domain(origin)
    for domain in allowed:
        if not isinstance(domain, str):
            continue
        if domain == "*":
            return True
        cleaned = _clean_domain(domain)
        if "*" in cleaned:
            pattern = ".+?".join(re.escape(part) for part in cleaned.split("*"))
            if re.fullmatch(pattern, cleaned_origin):
                return True
        elif cleaned == cleaned_origin:
            return True
    return False


class Client(msgspec.Struct, frozen=True):
    source: Source
    client_id: str
    verified: bool
    """A valid client secret came with the request (server-side tracking)."""


def identify_client(sources: SourceCache, headers: Mapping[str, str], envelope: Any | None) -> Client:
    """``validateSdkRequest``: the source and whether its secret was proved, or 401 with the real
    server's message. ``envelope`` is None for a GET (no body to carry credentials or revenue)."""
    client_id = openpanel.credentials(headers, envelope)
    if not client_id:
        raise Unauthorized("Ingestion: Missing client id", code="missing_client_id")
    if not _UUID.match(client_id):
        raise Unauthorized("Ingestion: Client ID must be a valid UUIDv4", code="invalid_client_id")
    source = sources.by_key(DIALECT, client_id)
    if source is None:
        raise Unauthorized("Ingestion: Invalid client id", code="unknown_client_id")
    secret = openpanel.client_secret(headers, envelope)
    verified = False
    if secret:
        owner = sources.by_extra_key(DIALECT, "secret", secret)
        verified = owner is not None and owner.id == source.id
    settings = source.settings or {}
    unsafe_revenue = bool(settings.get("allow_unsafe_revenue_tracking"))
    has_revenue = envelope is not None and openpanel.revenue_of(envelope) is not None
    if has_revenue and not unsafe_revenue and not verified:
        # the real server checks only that a secret is present; a wrong one must not pass here
        raise Unauthorized(
            "Ingestion: Revenue tracking is not allowed without a client secret",
            code="revenue_without_secret",
        )
    client = Client(source=source, client_id=client_id, verified=verified)
    if settings.get("ignore_cors_and_secret") or verified:
        return client
    if origin_allowed(headers.get("origin"), settings.get("cors") or []):
        return client
    raise Unauthorized("Ingestion: Invalid cors or secret", code="invalid_cors_or_secret")


def authenticate(ctx: AuthContext) -> Auth[Client] | None:
    """Before the body: only the content type (fastify refuses other types with 415). After it (the body
    is validated first, as the real server does): the client, which ``prepare`` receives."""
    envelope = ctx.envelope
    if envelope is None:
        content_type = ctx.incoming.headers.get("content-type")
        if content_type and content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise UnsupportedMediaType(
                f"Unsupported Media Type: {content_type}", code="unsupported_media_type"
            )
        return None
    client = identify_client(ctx.runtime.sources, ctx.incoming.headers, envelope)
    return Auth(client.source, client)


# --- bots, salts, device and session ids --------------------------------------------------------------


def detect_bot(user_agent: str) -> dict[str, str] | None:
    """``{"name", "type"}`` when the user agent is a known crawler, else None (OpenPanel's 202 body)."""
    name = traffic.crawler_name(user_agent)
    return None if name is None else {"name": name, "type": "crawler"}


def device_id(salt: str, user_agent: str, ip: str, project: str) -> str:
    """OpenPanel's ``generateDeviceId``: shake256 of ``ua:ip:project:salt``, 16 bytes, hex."""
    return hashlib.shake_256(f"{user_agent}:{ip}:{project}:{salt}".encode()).hexdigest(16)


SALT_CACHE_SECONDS = 60.0
_salt_cache: weakref.WeakKeyDictionary[Any, tuple[date, float, tuple[str, str]]] = weakref.WeakKeyDictionary()
"""Per Redis client: the day, when the entry expires, (today's, yesterday's). The real server caches
its salts for 5 minutes; a minute here saves a Redis round trip on almost every request."""


async def salts(store: Any, runtime: Runtime) -> tuple[str, str]:
    """Today's and yesterday's salt (UTC days), today's created on first use. Yesterday's falls back to
    today's, as the real server's does when it has only one."""
    today = runtime.clock().date()
    cached = _salt_cache.get(store)
    now = time.monotonic()
    if cached is not None and cached[0] == today and cached[1] > now:
        return cached[2]
    found = await _load_salts(store, today)
    _salt_cache[store] = (today, now + SALT_CACHE_SECONDS, found)
    return found


async def _load_salts(store: Any, today: date) -> tuple[str, str]:
    keys = [
        SALT_KEY.format(day=today.isoformat()),
        SALT_KEY.format(day=(today - timedelta(days=1)).isoformat()),
    ]
    current, previous = await store.mget(keys)
    if current is None:
        await store.set(keys[0], secrets.token_hex(16), nx=True, ex=SALT_TTL_SECONDS)
        current = await store.get(keys[0])
    current = current.decode()
    return current, previous.decode() if previous else current


def _session_key(source_id: str, device: str) -> str:
    return SESSION_KEY.format(source=source_id, device=device)


async def find_session(store: Any, source_id: str, candidates: list[str]) -> tuple[str, str] | None:
    """The first candidate device id that has a live session, with that session id."""
    candidates = list(dict.fromkeys(c for c in candidates if c))
    values = await store.mget([_session_key(source_id, d) for d in candidates])
    for device, value in zip(candidates, values, strict=True):
        if value:
            return device, value.decode()
    return None


async def touch_session(store: Any, source_id: str, candidates: list[str]) -> tuple[str, str]:
    """The live session of the first candidate that has one, its idle timer restarted; else a new one
    for the first candidate."""
    found = await find_session(store, source_id, candidates)
    if found is not None:
        await store.expire(_session_key(source_id, found[0]), SESSION_IDLE_SECONDS)
        return found
    device = candidates[0]
    key = _session_key(source_id, device)
    session = str(uuid_utils.uuid7())
    if not await store.set(key, session, nx=True, ex=SESSION_IDLE_SECONDS):  # another request made one
        existing = await store.get(key)
        if existing:
            session = existing.decode()
    return device, session


async def prepare(ctx: PrepareContext[Client]) -> Hints:
    """The hints ``adapters.openpanel`` reads: trusted client IP, device and session ids, bot verdict.
    The client is what ``authenticate`` found; trusted proxies were resolved by the gateway already.
    The device id and client IP may come from the body (``ctx.envelope``)."""
    runtime, incoming, envelope = ctx.runtime, ctx.incoming, ctx.envelope
    client = ctx.auth.detail
    source = client.source
    ip = client_ip.client_ip(incoming.headers, incoming.client_ip, trusted=client.verified)
    user_agent = incoming.headers.get("user-agent")
    bot = None if client.verified or not user_agent else detect_bot(user_agent)
    override = openpanel.override_device_id(envelope)
    hash_ip = openpanel.explicit_ip(envelope) or ip or ""
    try:
        current, previous = await salts(runtime.redis, runtime)
        ua = user_agent or UNKNOWN_UA
        candidates = (
            [override]
            if override
            else [device_id(current, ua, hash_ip, source.id), device_id(previous, ua, hash_ip, source.id)]
        )
        if bot is not None:  # answered 202 before any session is touched
            device, session = candidates[0], None
        else:
            device, session = await touch_session(runtime.redis, source.id, candidates)
    except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
        raise Unavailable(f"session store unavailable: {exc.__class__.__name__}") from exc
    hints: dict[str, Any] = {"ip": ip, "device_id": device}
    if session:
        hints["session_id"] = session
    if bot is not None:
        hints["bot"] = bot
    return hints


# --- errors ------------------------------------------------------------------------------------------

_FASTIFY_CODES = frozenset(
    {"invalid_json", "empty_body", "request_too_large", "unsupported_media_type", "invalid_body"}
)
"""Errors fastify raises before validation (its ``FastifyError``); the rest are validation errors."""


_PLAIN = frozenset({"missing_ip", "missing_user_agent"})
"""``GET /track/device-id``'s refusals, which OpenPanel's controller sends as plain text."""


def render_error(status: int, code: str, message: str, path: str | None) -> Response:
    """OpenPanel's answers: 401 (and 500) plain text, as ``clientHook`` and ``app.ts`` send them; other
    errors ``{"status", "error", "message"}`` from its error handler, a validation message prefixed
    with the field's path (``body/payload/name Too small: ...``)."""
    if status == 401 or code in _PLAIN:
        return Response(message, status_code=status, media_type="text/plain")
    if status >= 500 and status != 503:
        return Response("Internal server error", status_code=status, media_type="text/plain")
    if status == 429:
        message = "You have exceeded the rate limit for this endpoint."
        return JSONResponse(
            {"status": 429, "error": "Too Many Requests", "message": message}, status_code=429
        )
    if status == 413:
        message = "Request body is too large"
    error = "FastifyError" if code in _FASTIFY_CODES else "Error"
    if status == 503:
        error = "Service Unavailable"
    body = {"status": status, "error": error, "message": f"{path} {message}" if path else message}
    return JSONResponse(body, status_code=status, headers={"Retry-After": "5"} if status == 503 else None)


# --- success answers ---------------------------------------------------------------------------------


def respond(accepted: Accepted) -> Reply:
    """200 ``{deviceId, sessionId}`` for /track, 202 ``ok`` for /event, 202 the profile id for the
    /profile calls; 202 ``{"bot": {...}}`` for a bot (stored, flagged)."""
    hints = accepted.meta.hints
    if hints.get("bot"):
        return Reply(202, _encode({"bot": hints["bot"]}))
    call = accepted.meta.call
    if call == "track":
        return Reply(
            200, _encode({"deviceId": hints.get("device_id", ""), "sessionId": hints.get("session_id", "")})
        )
    if call == "event":
        return Reply(202, b"ok", _TEXT)
    event = accepted.events[0]
    return Reply(202, (event.user_id or "").encode(), _TEXT)


def _route(call: str) -> IngestRoute[Client]:
    return IngestRoute(
        adapter=openpanel,
        call=call,
        cap=openpanel.MAX_BODY_BYTES,
        authenticate=authenticate,
        prepare=prepare,
        respond=respond,
    )


_ROUTES = {call: _route(call) for call in _CALL_PATHS}


def ingest_routes() -> dict[str, IngestRoute[Client]]:
    """/track and /profile{,/increment,/decrement} at the root, and every call under /openpanel."""
    routes = {f"{PREFIX}{path}": _ROUTES[call] for call, path in _CALL_PATHS.items()}
    routes.update({path: _ROUTES[call] for call, path in _CALL_PATHS.items() if call != "event"})
    return routes


def shared_routes() -> dict[str, IngestRoute[Client]]:
    """/event at the root: Reflag's too (``gateway.bucket.claims`` takes Bearer calls); OpenPanel
    makes no claim, so it takes the rest."""
    return {"/event": _ROUTES["event"]}


# --- GET /track/device-id and the preflights -----------------------------------------------------------


async def fetch_device_id(request: Request) -> Response:
    """``GET /track/device-id``: the device id this visitor has now, and its session if one is live."""
    runtime = request.app.state.runtime
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        client = identify_client(runtime.sources, headers, None)
    except GatewayError as exc:
        return error_response(render_error, exc)
    user_agent = headers.get("user-agent")
    if not client.verified and user_agent:
        bot = detect_bot(user_agent)
        if bot is not None:
            return JSONResponse({"bot": bot}, status_code=202)
    peer = request.client.host if request.client else None
    ip = client_ip.client_ip(
        headers,
        peer,
        trusted=client.verified,
        proxies=client_ip.parse_networks(runtime.settings.trusted_proxies),
    )
    if not ip:
        return error_response(render_error, InvalidBody("Missing ip address", code="missing_ip"))
    if not user_agent:
        return error_response(
            render_error, InvalidBody("Missing header: user-agent", code="missing_user_agent")
        )
    source_id = client.source.id
    try:
        current, previous = await salts(runtime.redis, runtime)
        now_id = device_id(current, user_agent, ip, source_id)
        before_id = device_id(previous, user_agent, ip, source_id)
        found = await find_session(runtime.redis, source_id, [now_id, before_id])
    except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
        return error_response(
            render_error, Unavailable(f"session store unavailable: {exc.__class__.__name__}")
        )
    if found is None:
        body = {"deviceId": now_id, "sessionId": "", "message": "No session exists for this device id"}
    else:
        which = "current" if found[0] == now_id else "previous"
        body = {
            "deviceId": found[0],
            "sessionId": found[1],
            "message": f"{which} session exists for this device id",
        }
    return JSONResponse(body)


async def _no_content(request: Request) -> Response:
    return Response(status_code=204)


async def op1_js(request: Request) -> Response:
    """GET /op1.js: ``@openpanel/web``'s script-tag build, what ``openpanel.dev/op1.js`` serves; its
    ``apiUrl`` option points it at the gateway."""
    return script_response(request, packaged("openpanel/op1.js"))


def routes() -> list[BaseRoute]:
    """GET /op1.js and /track/device-id (root and /openpanel), and CORS preflights for every OpenPanel
    path: the web SDK sends its client id in a custom header, which forces a preflight."""
    paths = [prefix + p for prefix in ("", PREFIX) for p in (*_CALL_PATHS.values(), "/track/device-id")]
    inner = Router(
        routes=[
            *(
                Route(f"{prefix}/track/device-id", fetch_device_id, methods=["GET"])
                for prefix in ("", PREFIX)
            ),
            *(Route(path, _no_content, methods=["OPTIONS"]) for path in paths),
        ]
    )
    app = CORSMiddleware(
        inner,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        max_age=86400,
    )
    return [
        *(Route(f"{prefix}/op1.js", op1_js, methods=["GET"]) for prefix in ("", PREFIX)),
        *(
            Route(path, app, methods=["GET", "OPTIONS"] if path.endswith("device-id") else ["OPTIONS"])
            for path in paths
        ),
    ]


def new_source(key: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """An OpenPanel client: the client id (a UUID, the primary key), a client secret (extra key
    ``secret``) and the allowed browser origins (``settings.cors``, from ``--origin``)."""
    client_id = (key or str(uuid.uuid4())).lower()
    if not _UUID.match(client_id):
        raise ValueError("an OpenPanel client id must be a UUID (OpenPanel SDKs send nothing else)")
    secret = options.get("secret") or "sec_" + secrets.token_hex(10)
    origins = options.get("origins") or []
    if isinstance(origins, str):
        origins = [o.strip() for o in origins.split(",") if o.strip()]
    return {
        "key": client_id,
        "extra_keys": {"secret": secret},
        "settings": {"cors": list(origins)},
        "show": {"client id": client_id, "client secret": secret},
    }


def demo_lines(base: str, demo: dict[str, Any]) -> list[str]:
    """The curl line ``up`` prints for the demo client ``new_source`` made."""
    return [
        f"  curl -sS {base}/track -H 'Content-Type: application/json'"
        f" -H 'openpanel-client-id: {demo['key']}'"
        f" -H 'openpanel-client-secret: {demo['extra_keys']['secret']}'"
        """ -d '{"type":"track","payload":{"name":"signup","profileId":"user-1","""
        """"properties":{"plan":"pro"}}}'"""
    ]


SPEC = Dialect(
    name=DIALECT,
    adapter=openpanel,
    ingest=ingest_routes(),
    shared=shared_routes(),
    routes=routes(),
    render_error=render_error,
    new_source=new_source,
    demo_lines=demo_lines,
)
