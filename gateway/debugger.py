"""The live event debugger: ``GET /debugger`` (a static page), ``POST /debugger/token`` and
``GET /debugger/stream`` (Server-Sent Events), and the gateway's side of the debug feed (refused
requests). The feed itself is ``schemas/debug_feed.py``; workers write what they stored.

**Authentication.** The page asks for an admin API key once (kept in the tab's ``sessionStorage``) and
trades it for a token: ``POST /debugger/token`` with ``X-API-KEY`` answers a random token that opens
the stream for ``TOKEN_SECONDS`` (kept in Redis by its SHA-256, so every gateway process knows it).
``EventSource`` cannot send headers, so the stream takes the token as a query parameter; a token (not
the key, nor its digest, which would be a key-equivalent for ever) is what lands in URLs and access
logs, and it is worthless minutes later. An open stream lives on until its key is revoked or deleted
(asked every ``KEY_CHECK_SECONDS``); when it drops after the token expired, the page asks for a new
one with the key it kept.

**Cost when nobody watches.** A background task asks Redis once a second whether the ``WATCHERS`` key
exists (``Runtime.watched``). While it does not, a refused request costs one attribute read; while it
does, the request's body and source are kept (``Trace``) and the refusal is written to the feed by a
task started after the answer was sent (never awaited; skipped when ``MAX_IN_FLIGHT`` are pending).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.resources
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackgate.adapters.base import AdapterError
from trackgate.gateway.api_keys import HEADER
from trackgate.gateway.errors import GatewayError, InvalidBody, Unauthorized, Unavailable
from trackgate.gateway.responses import JSONResponse, api_error, error_response
from trackgate.gateway.runtime import Runtime
from trackgate.schemas import debug_feed
from trackgate.schemas.debug_feed import Filters, Seen

log = logging.getLogger(__name__)

TOKEN_SECONDS = 300
TOKEN_PREFIX = "trackgate:debug:token:"
_STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")
"""A Redis stream id (``Last-Event-ID`` / ``after``): anything else is a 400, not a broken stream."""
BACKLOG = 200
"""Lines of the feed a new stream starts with (what was written while others watched)."""
READ_BLOCK_MS = 1000
KEY_CHECK_SECONDS = 5.0
"""How often an open stream asks whether its key still works (a revoked key's stream ends then)."""
"""How long one ``XREAD`` waits for new lines (between two refreshes of the watchers key at most)."""
MAX_IN_FLIGHT = 64
_PAGE = "static/debugger.html"
_SCRIPT = "static/debugger.js"


class Trace(msgspec.Struct):
    """What a request showed of itself before it was refused (kept only while someone watches)."""

    source_id: str | None = None
    body: bytes | None = None


# --- the refused side of the feed -------------------------------------------------------------------


async def watch_flag(runtime: Runtime, stop: asyncio.Event) -> None:
    """Keep ``runtime.watched`` in step with the ``WATCHERS`` key, once a second, until ``stop``.

    Stopped by the event, not only by cancelling: a cancel that lands while redis-py's command timeout
    expires comes out of the command as ``TimeoutError`` (an ``OSError``), which this loop has to
    survive, so a cancel alone could be swallowed and the lifespan would wait for ever."""
    while not stop.is_set():
        client = runtime.redis
        if client is not None:
            try:
                runtime.watched = bool(await client.exists(debug_feed.WATCHERS))
            except (RedisError, OSError):
                runtime.watched = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), debug_feed.WATCH_CHECK_SECONDS)


_in_flight: set[asyncio.Task[None]] = set()


def refused(runtime: Runtime, trace: Trace, exc: Exception, dialect: str, path: str) -> None:
    """Write a refused request to the feed in the background (called after its answer was sent)."""
    if runtime.redis is None or len(_in_flight) >= MAX_IN_FLIGHT:
        return
    if isinstance(exc, AdapterError | GatewayError):
        status, code, reason = exc.status, exc.code, exc.message
    else:
        status, code, reason = 500, "internal_error", "internal error"
    raw = None if trace.body is None else trace.body.decode("utf-8", "replace")
    raw, truncated = debug_feed.cut(raw)
    seen = Seen(
        kind="refused",
        at=runtime.clock(),
        source_id=trace.source_id,
        dialect=dialect,
        raw=raw,
        raw_truncated=truncated,
        status=status,
        code=code,
        reason=reason,
        path=path,
    )
    task = asyncio.create_task(_add(runtime.redis, seen))
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)


async def _add(client: aioredis.Redis, seen: Seen) -> None:
    try:
        await client.xadd(
            debug_feed.STREAM,
            {"d": debug_feed.encode(seen)},
            maxlen=debug_feed.STREAM_MAXLEN,
            approximate=True,
        )
    except (RedisError, OSError) as exc:
        log.debug("debug_feed_skipped error=%s", exc)


# --- the page and its stream -------------------------------------------------------------------------


def _static(name: str) -> bytes:
    return importlib.resources.files("trackgate.gateway").joinpath(name).read_bytes()


async def page(request: Request) -> Response:
    """GET /debugger: the page (HTML, its script beside it; nothing from a CDN)."""
    return Response(_static(_PAGE), media_type="text/html; charset=utf-8", headers=_NO_STORE)


async def script(request: Request) -> Response:
    return Response(_static(_SCRIPT), media_type="text/javascript; charset=utf-8", headers=_NO_STORE)


_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _token_key(token: str) -> str:
    return TOKEN_PREFIX + hashlib.sha256(token.encode()).hexdigest()


async def token(request: Request) -> Response:
    """POST /debugger/token with ``X-API-KEY`` (an admin key): ``{"status":"success","data":{"token",
    "expiresIn","sources"}}``; the token opens ``/debugger/stream`` for ``TOKEN_SECONDS``; ``sources``
    (id, name, dialect of every enabled source) names them on the page."""
    runtime: Runtime = request.app.state.runtime
    try:
        if runtime.api_keys is None or runtime.redis is None:
            raise Unavailable("the gateway is starting; retry")
        principal = await runtime.api_keys.require(request.headers.get(HEADER))
        issued = secrets.token_urlsafe(32)
        try:
            await runtime.redis.set(_token_key(issued), principal.key_id, ex=TOKEN_SECONDS)
        except (RedisError, OSError) as exc:
            raise Unavailable("Redis did not answer; retry") from exc
    except GatewayError as exc:
        return error_response(api_error, exc)
    sources = [{"id": s.id, "name": s.name, "dialect": s.dialect} for s in runtime.sources.known()]
    body = {"status": "success", "data": {"token": issued, "expiresIn": TOKEN_SECONDS, "sources": sources}}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def filters_of(request: Request) -> Filters:
    query = request.query_params
    return Filters(
        sources=frozenset(s for s in query.getlist("source") if s),
        type=query.get("type") or None,
        name=query.get("name") or None,
        user=query.get("user") or None,
    )


async def stream(request: Request) -> Response:
    """GET /debugger/stream?token=…[&source=…&type=…&name=…&user=…][&after=<id>]: the feed as
    Server-Sent Events (``event: seen``, ``id`` the stream id, ``data`` one ``Seen`` as JSON). It starts
    with the last ``BACKLOG`` lines (or after ``Last-Event-ID``/``after``) and keeps the feed on while
    it is open."""
    runtime: Runtime = request.app.state.runtime
    client = runtime.redis
    try:
        if client is None:
            raise Unavailable("the gateway is starting; retry")
        issued = request.query_params.get("token", "")
        try:
            owner = await client.get(_token_key(issued)) if issued else None
        except (RedisError, OSError) as exc:
            raise Unavailable("Redis did not answer; retry") from exc
        key_id = owner.decode() if isinstance(owner, bytes) else owner or ""
        if key_id and runtime.api_keys is not None and not await runtime.api_keys.active(key_id):
            key_id = ""  # the key was revoked or deleted since
        if not key_id:
            raise Unauthorized(
                "the debugger token is missing or expired: POST /debugger/token for another",
                code="invalid_token",
            )
        after = request.headers.get("last-event-id") or request.query_params.get("after") or None
        if after is not None and not _STREAM_ID.fullmatch(after):
            raise InvalidBody(
                f"after must be a stream id such as 1733490000000-0, not {after[:40]!r}", code="invalid_after"
            )
    except GatewayError as exc:
        return error_response(api_error, exc)
    api_keys = runtime.api_keys

    async def allowed() -> bool:
        try:
            return api_keys is None or await api_keys.active(key_id)
        except Unavailable:
            return True  # asked again at the next check

    return EventSourceResponse(
        _feed(client, filters_of(request), after, allowed), ping=15, headers={"Cache-Control": "no-store"}
    )


async def _watch(client: aioredis.Redis) -> None:
    with contextlib.suppress(RedisError, OSError):
        await client.set(debug_feed.WATCHERS, b"1", ex=debug_feed.WATCH_TTL_SECONDS)


async def _feed(
    client: aioredis.Redis, filters: Filters, after: str | None, allowed: Callable[[], Awaitable[bool]]
) -> AsyncIterator[ServerSentEvent]:
    """The stream's events; it ends when ``allowed()`` says no (its key was revoked or deleted), asked
    every ``KEY_CHECK_SECONDS``."""
    await _watch(client)
    refreshed = checked = time.monotonic()
    if after is None:
        try:
            backlog = debug_feed.entries(await client.xrevrange(debug_feed.STREAM, count=BACKLOG))
        except (RedisError, OSError):
            backlog = []
        last = backlog[0][0] if backlog else "0-0"
        for entry_id, data in reversed(backlog):
            event = _event(entry_id, data, filters)
            if event is not None:
                yield event
    else:
        last = after
    while True:
        if time.monotonic() - refreshed >= debug_feed.WATCH_REFRESH_SECONDS:
            await _watch(client)
            refreshed = time.monotonic()
        if time.monotonic() - checked >= KEY_CHECK_SECONDS:
            if not await allowed():
                log.info("debugger_stream_closed reason=key_revoked")
                return
            checked = time.monotonic()
        try:
            found = await client.xread({debug_feed.STREAM: last}, count=100, block=READ_BLOCK_MS)
        except (RedisError, OSError):
            await asyncio.sleep(1)
            continue
        for entry_id, data in debug_feed.entries(found):
            last = entry_id
            event = _event(entry_id, data, filters)
            if event is not None:
                yield event


def _event(entry_id: str, data: bytes, filters: Filters) -> ServerSentEvent | None:
    try:
        seen = debug_feed.decode(data)
    except msgspec.DecodeError:  # written by another version: skipped
        return None
    if not filters.matches(seen):
        return None
    return ServerSentEvent(data.decode(), event="seen", id=entry_id)


ROUTES: list[BaseRoute] = [
    Route("/debugger", page, methods=["GET"]),
    Route("/debugger/debugger.js", script, methods=["GET"]),
    Route("/debugger/token", token, methods=["POST"]),
    Route("/debugger/stream", stream, methods=["GET"]),
]
