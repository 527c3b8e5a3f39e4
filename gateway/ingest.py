"""The accept path every dialect shares: body → credentials → source → events → Redis → answer.

It is the one hot path, so it is served as raw ASGI in front of Starlette (``IngestFront``): an exact
path lookup, the headers read once, the body read from ``receive``, and pre-built success messages.
Everything else (preflights, settings, health, unknown paths) goes to the Starlette app. Measured in
``bench/``: Starlette's Mount + Router + CORSMiddleware alone cost more per request than this whole path.

Nothing is acknowledged before the publisher says the events are in Redis; any error on the way is
answered in the dialect's shape by ``responses.error_response`` and nothing is published.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import uuid_utils

from trackgate.adapters.base import Adapter, AdapterError, Refused
from trackgate.gateway import client_ip
from trackgate.gateway.body import MAX_DEPTH, nested_deeper, read_body
from trackgate.gateway.errors import GatewayError, InvalidBody, Unauthorized
from trackgate.gateway.responses import error_response
from trackgate.schemas.event import Event
from trackgate.schemas.request import Incoming, RequestMeta, Source

log = logging.getLogger(__name__)

_CORS = (b"access-control-allow-origin", b"*")


class Reply(msgspec.Struct, frozen=True):
    """A success answer computed per request (a dialect's ``respond`` hook)."""

    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Accepted(msgspec.Struct, kw_only=True):
    """What ``accept`` published: for a dialect whose success answer depends on it."""

    source: Source
    meta: RequestMeta
    events: list[Event]
    refused: list[Refused] = []


@functools.cache
def key_auth(adapter: Adapter) -> Callable[[Any, Incoming, Any | None], Source | None]:
    """The default: one key, from a header or the body, looked up among the dialect's sources.
    Returns None (before the body is parsed) when the key is not in a header."""

    def authenticate(sources: Any, incoming: Incoming, envelope: Any | None) -> Source | None:
        key = adapter.credentials(incoming.headers, envelope)
        if envelope is None and not key:
            return None
        return sources.authenticate(adapter.dialect, key)

    return authenticate


class IngestRoute(msgspec.Struct, frozen=True, kw_only=True):
    """One accepting path: which adapter and call, the body cap, and what success looks like.

    The hooks are how a dialect's gateway module shapes the shared path:

    - ``authenticate(sources, incoming, envelope | None) -> Source | None``: called before the body
      is read (``envelope=None``; return None to be called again with the parsed body) and after. It
      may return an object with a ``source`` attribute instead, which ``prepare`` then receives.
      Default: ``key_auth(adapter)``. Raise ``Unauthorized``/``Forbidden`` to refuse.
    - ``prepare(runtime, incoming, source) -> dict`` (async): hints for the adapter (``meta.hints``):
      a session id kept in Redis, a rate limit (raise ``RateLimited``), a trusted client IP. With
      ``prepare_sees_body=True`` it is called with the parsed envelope as a fourth argument (OpenPanel:
      the device id and client IP may come from the body, the secret from its root).
    - ``respond(accepted) -> Reply``: a success answer that depends on the request; without it the
      pre-built ``ok_status``/``ok_body`` is sent.
    - ``partial``: decode with ``adapter.decode_partial`` (refused items go to quarantine).
    - ``cors(headers) -> headers``: the CORS headers of every answer (success or error) to a request
      with an ``Origin``; default ``Access-Control-Allow-Origin: *``.
    """

    adapter: Any  # an Adapter module
    call: str
    cap: int
    ok_status: int = 200
    ok_body: bytes = b""
    ok_content_type: bytes = b"application/json"
    authenticate: Callable | None = None
    prepare: Callable | None = None
    prepare_sees_body: bool = False
    respond: Callable | None = None
    partial: bool = False
    cors: Callable[[Mapping[str, str]], tuple[tuple[bytes, bytes], ...]] | None = None

    def ok_messages(self, cors: bool) -> tuple[dict, dict]:
        return _messages(Reply(self.ok_status, self.ok_body, self.ok_content_type), cors)


class SharedRoute(msgspec.Struct, frozen=True):
    """A path that two dialects both use (``/event``): ``choose(headers, query)`` picks the route."""

    choose: Callable[[Mapping[str, str], Mapping[str, str]], IngestRoute]


def _messages(reply: Reply, cors: bool | tuple[tuple[bytes, bytes], ...]) -> tuple[dict, dict]:
    headers = [
        *(
            ()  # a 204 has neither (RFC 9110 §8.6)
            if reply.status == 204
            else ((b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode()))
        ),
        *reply.headers,
    ]
    if cors is True:
        headers.append(_CORS)
    elif cors:
        headers.extend(cors)
    return (
        {"type": "http.response.start", "status": reply.status, "headers": headers},
        {"type": "http.response.body", "body": reply.body},
    )


async def accept(
    runtime: Any,
    route: IngestRoute,
    incoming: Incoming,
    chunks: AsyncIterator[bytes],
) -> Accepted:
    """Publish the request's events, or raise the error that refuses it."""
    adapter = route.adapter
    dialect = adapter.dialect
    headers = incoming.headers
    authenticate = route.authenticate or key_auth(adapter)
    found = authenticate(runtime.sources, incoming, None)
    body = await read_body(chunks, route.cap, headers.get("content-length"))
    envelope = adapter.parse(route.call, body)
    if found is None:
        found = authenticate(runtime.sources, incoming, envelope)
        if found is None:  # a hook that found no credentials at all
            raise Unauthorized("no credentials", code="missing_credentials")
    # a hook may return more than the source (OpenPanel: whether the secret was proved); ``prepare``
    # gets what it returned, so nothing is worked out twice
    source: Source = found if found.__class__ is Source else found.source
    if route.prepare is None:
        hints = {}
    elif route.prepare_sees_body:
        hints = await route.prepare(runtime, incoming, found, envelope)
    else:
        hints = await route.prepare(runtime, incoming, found)
    meta = RequestMeta(
        source_id=source.id,
        dialect=dialect,
        call=route.call,
        received_at=runtime.clock(),
        request_id=str(uuid_utils.uuid7()),
        ip=incoming.client_ip,
        user_agent=headers.get("user-agent"),
        headers=headers,
        query=incoming.query,
        hints=hints,
    )
    if route.partial:
        decoded = adapter.decode_partial(meta, envelope)
        events, refused = decoded.events, decoded.refused
    else:
        events, refused = adapter.decode(meta, envelope), []
    for event in events:
        if nested_deeper(event.raw):  # a worker could not decode it: refused whole, nothing published
            raise InvalidBody(f"JSON is nested more than {MAX_DEPTH} levels deep", code="invalid_json")
        event.id = str(uuid_utils.uuid7())
    if refused:
        await runtime.publisher.publish(events, refused=refused, source_id=source.id)
    else:
        await runtime.publisher.publish(events)
    return Accepted(source=source, meta=meta, events=events, refused=refused)


class ClientDisconnected(Exception):
    pass


async def _receive_chunks(receive: Callable) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _compile(pattern: str) -> re.Pattern:
    """``/{tracking_key}/event`` -> a regex whose named groups are the path parameters."""
    return re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(pattern)) + "$")


class IngestFront:
    """ASGI: the accepting POST paths of every dialect, everything else to ``app``.

    ``routes`` maps a path to an ``IngestRoute`` or a ``SharedRoute``; a path with ``{name}`` segments
    is a pattern, tried (in order) only when no exact path matches."""

    def __init__(self, app: Any, runtime: Any, routes: Mapping[str, IngestRoute | SharedRoute]):
        self.app = app
        self.runtime = runtime
        self.routes: dict[str, IngestRoute | SharedRoute] = {}
        self.patterns: list[tuple[re.Pattern, IngestRoute | SharedRoute]] = []
        for path, route in routes.items():
            if "{" in path:
                self.patterns.append((_compile(path), route))
            else:
                self.routes[path] = route
        self._ok: dict[int, tuple[tuple[dict, dict], tuple[dict, dict]]] = {}
        settings = getattr(runtime, "settings", None)
        self._proxies = client_ip.parse_networks(settings.trusted_proxies) if settings else ()

    @property
    def state(self):
        return self.app.state

    def _match(self, path: str) -> tuple[IngestRoute | SharedRoute, dict[str, str]] | None:
        found = self.routes.get(path)
        if found is not None:
            return found, {}
        for pattern, route in self.patterns:
            m = pattern.match(path)
            if m:
                return route, m.groupdict()
        return None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = self._match(scope["path"])
            if found is not None:
                await self._ingest(*found, scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _static_ok(self, route: IngestRoute, cors: bool) -> tuple[dict, dict]:
        cached = self._ok.get(id(route))
        if cached is None:
            cached = self._ok[id(route)] = (route.ok_messages(False), route.ok_messages(True))
        return cached[cors]

    async def _ingest(
        self,
        route: IngestRoute | SharedRoute,
        params: dict[str, str],
        scope: dict,
        receive: Callable,
        send: Callable,
    ) -> None:
        # ASGI header names are lower-case already
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        raw_query = scope.get("query_string", b"")
        query = dict(parse_qsl(raw_query.decode("latin-1"))) if raw_query else {}
        if isinstance(route, SharedRoute):
            route = route.choose(headers, query)
        cors: bool | tuple[tuple[bytes, bytes], ...] = "origin" in headers
        if cors and route.cors is not None:
            cors = route.cors(headers)
        client = scope.get("client")
        peer = client[0] if client else None
        if self._proxies and client_ip.is_trusted_proxy(peer, self._proxies):
            # behind a configured load balancer: the client it names (uvicorn's own proxy-header
            # handling is off, so nobody else's X-Forwarded-For is believed)
            peer = client_ip.forwarded_client(headers, self._proxies) or peer
        incoming = Incoming(
            path=scope["path"],
            headers=headers,
            query=query,
            params=params,
            client_ip=peer,
        )
        dialect = route.adapter.dialect
        try:
            accepted = await accept(self.runtime, route, incoming, _receive_chunks(receive))
        except ClientDisconnected:
            return
        except (AdapterError, GatewayError) as exc:
            if exc.status >= 500:
                log.warning("ingest_unavailable dialect=%s code=%s", dialect, exc.code)
            else:
                log.info("ingest_refused dialect=%s code=%s path=%s", dialect, exc.code, exc.path)
            await self._error(dialect, exc, cors, scope, receive, send)
            return
        except Exception as exc:  # a bug: answered in the dialect's shape (500), logged with its trace
            await self._error(dialect, exc, cors, scope, receive, send)
            return
        if route.respond is None and cors.__class__ is bool:
            start, body = self._static_ok(route, cors)
        elif route.respond is None:
            start, body = _messages(Reply(route.ok_status, route.ok_body, route.ok_content_type), cors)
        else:
            start, body = _messages(route.respond(accepted), cors)
        await send(start)
        await send(body)

    async def _error(self, dialect: str, exc: Exception, cors, scope, receive, send) -> None:
        response = error_response(dialect, exc)
        if cors is True:
            response.headers["access-control-allow-origin"] = "*"
        elif cors:
            for name, value in cors:
                response.headers.append(name.decode("latin-1"), value.decode("latin-1"))
        await response(scope, receive, send)
