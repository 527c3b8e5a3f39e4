"""The accept path every dialect shares: body → credentials → source → events → Redis → answer.

It is the one hot path, so it is served as raw ASGI in front of Starlette (``IngestFront``): an exact
path lookup, the headers read once, the body read from ``receive``, and pre-built success messages.
Everything else (preflights, settings, health, unknown paths) goes to the Starlette app. Measured in
``bench/``: Starlette's Mount + Router + CORSMiddleware alone cost more per request than this whole path.

Nothing is acknowledged before the publisher says the events are in Redis; any error on the way is
answered in the dialect's shape (its ``Dialect.render_error``, applied by ``responses.error_response``)
and nothing is published.

A dialect shapes this path with the typed hooks of its ``IngestRoute``s: one context value in,
one typed value out (see ``IngestRoute``). A route without hooks (Segment's) costs no hook call and no
context: its key is looked up inline.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl

import msgspec
import uuid_utils
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.routing import get_route_path

from trackgate.adapters.base import Adapter, AdapterError, PartialDecoder, Refused
from trackgate.gateway import client_ip, debugger
from trackgate.gateway.body import (
    MAX_DEPTH,
    RequestTimeout,
    finished,
    nested_deeper,
    read_body,
    refuse_declared,
)
from trackgate.gateway.counting import AcceptCounts, Tally
from trackgate.gateway.deadlines import Deadlines
from trackgate.gateway.errors import GatewayError, InvalidBody, Unauthorized, Unavailable
from trackgate.gateway.first_party import under_prefix
from trackgate.gateway.responses import ErrorRenderer, default_error, error_response
from trackgate.gateway.runtime import Runtime
from trackgate.gateway.types import Message, Receive, Scope, Send
from trackgate.schemas import metrics
from trackgate.schemas.event import Event
from trackgate.schemas.request import Incoming, LazyRequestKey, RequestMeta, Source

log = logging.getLogger(__name__)

_CORS = (b"access-control-allow-origin", b"*")

D = TypeVar("D")
"""What a dialect's ``authenticate`` found besides the source (``None`` for most; OpenPanel: its
``Client``, whether the secret was proved), handed to its ``prepare``."""

Hints = dict[str, Any]
"""What ``prepare`` works out for the adapter (``RequestMeta.hints``)."""
CorsHeaders = tuple[tuple[bytes, bytes], ...]


class Reply(msgspec.Struct, frozen=True):
    """A success answer computed per request (a dialect's ``respond`` hook)."""

    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Auth(msgspec.Struct, Generic[D], frozen=True):
    """Who sent a request: the source, and what else the dialect's ``authenticate`` found."""

    source: Source
    detail: D


class AuthContext(msgspec.Struct, frozen=True):
    """What ``authenticate`` sees: ``envelope`` is None before the body is parsed."""

    runtime: Runtime
    incoming: Incoming
    envelope: Any = None


class PrepareContext(msgspec.Struct, Generic[D], frozen=True):
    """What ``prepare`` sees: the parsed envelope and what ``authenticate`` returned."""

    runtime: Runtime
    incoming: Incoming
    envelope: Any
    auth: Auth[D]


class Accepted(msgspec.Struct, kw_only=True):
    """What ``accept`` published: for a dialect whose success answer depends on it."""

    source: Source
    meta: RequestMeta
    events: list[Event]
    """The events, for a route with ``respond``; else empty (``n_events`` counts them)."""
    n_events: int = 0
    refused: list[Refused] = []


class IngestRoute(msgspec.Struct, Generic[D], frozen=True, kw_only=True):
    """One accepting path: which adapter and call, the body cap, and what success looks like.

    The hooks are how a dialect's gateway module shapes the shared path; each takes one typed value:

    - ``authenticate(ctx: AuthContext) -> Auth[D] | None``: called before the body is read
      (``ctx.envelope`` is None; return None to be called again once it is parsed) and after. Raise
      ``Unauthorized``/``Forbidden`` to refuse; None after the body means no credentials at all (401).
      Without it: the dialect's key (``adapter.credentials``, from a header, else from the body)
      looked up among its sources, inline on the hot path.
    - ``prepare(ctx: PrepareContext[D]) -> Hints`` (async): hints for the adapter (``meta.hints``): a
      session id kept in Redis, a rate limit (raise ``RateLimited``), a trusted client IP. It sees
      the parsed envelope and the ``Auth`` that ``authenticate`` returned, so nothing is worked out
      twice (OpenPanel: whether the client secret was proved).
    - ``respond(accepted) -> Reply``: a success answer that depends on the request; without it the
      pre-built ``ok_status``/``ok_body`` is sent.
    - ``partial``: decode item by item with this ``PartialDecoder`` (refused items go to quarantine).
    - ``cors(headers) -> headers``: the CORS headers of every answer (success or error) to a request
      with an ``Origin``; default ``Access-Control-Allow-Origin: *``.
    """

    adapter: Adapter
    call: str
    cap: int
    ok_status: int = 200
    ok_body: bytes = b""
    ok_content_type: bytes = b"application/json"
    authenticate: Callable[[AuthContext], Auth[D] | None] | None = None
    prepare: Callable[[PrepareContext[D]], Awaitable[Hints]] | None = None
    respond: Callable[[Accepted], Reply] | None = None
    partial: PartialDecoder | None = None
    cors: Callable[[Mapping[str, str]], CorsHeaders] | None = None

    def ok_messages(self, cors: bool) -> tuple[Message, Message]:
        return _messages(Reply(self.ok_status, self.ok_body, self.ok_content_type), cors)


Chooser = Callable[[Mapping[str, str], Mapping[str, str]], IngestRoute[Any]]


class SharedRoute(msgspec.Struct, frozen=True):
    """A path that two dialects both use (``/event``): ``choose(headers, query)`` picks the route."""

    choose: Chooser


AnyRoute = IngestRoute[Any] | SharedRoute


def _messages(reply: Reply, cors: bool | CorsHeaders) -> tuple[Message, Message]:
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
    runtime: Runtime,
    route: IngestRoute[Any],
    incoming: Incoming,
    reader: BodyReader,
    deadlines: Deadlines,
    trace: debugger.Trace | None = None,
) -> Accepted:
    """Publish the request's events, or raise the error that refuses it. ``deadlines`` keeps the body's
    deadline; ``trace`` (only while someone watches the debug feed) keeps the body and the source, for
    the feed's line if it is refused."""
    adapter = route.adapter
    dialect = adapter.dialect
    headers = incoming.headers
    authenticate = route.authenticate
    auth: Auth[Any] | None = None
    source: Source | None = None
    if authenticate is None:  # the default: the dialect's key, checked before the body when it can be
        key = adapter.credentials(headers, None)
        if key:
            source = runtime.sources.authenticate(dialect, key)
    else:
        auth = authenticate(AuthContext(runtime, incoming))
    timeout = runtime.settings.http_body_timeout_seconds
    try:
        with deadlines.within(timeout):
            body = await reader.read(route.cap, headers.get("content-length"))
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
    if trace is not None:
        trace.body = body
        trace.source_id = source.id if source is not None else None
    envelope = adapter.parse(route.call, body)
    if auth is not None:
        source = auth.source
    elif authenticate is not None:
        auth = authenticate(AuthContext(runtime, incoming, envelope))
        if auth is None:  # a hook that found no credentials at all
            raise Unauthorized("no credentials", code="missing_credentials")
        source = auth.source
    elif source is None:
        source = runtime.sources.authenticate(dialect, adapter.credentials(headers, envelope))
    if trace is not None:
        trace.source_id = source.id
    if route.prepare is None:
        hints: Hints = {}
    else:
        if auth is None:
            auth = Auth(source, None)
        hints = await route.prepare(PrepareContext(runtime, incoming, envelope, auth))
    meta = RequestMeta(
        source_id=source.id,
        dialect=dialect,
        call=route.call,
        received_at=runtime.clock(),
        request_id=str(uuid_utils.uuid7()),
        lazy_key=LazyRequestKey(dialect, source.id, route.call, headers.get("idempotency-key"), body),
        ip=incoming.client_ip,
        user_agent=headers.get("user-agent"),
        headers=headers,
        query=incoming.query,
        hints=hints,
    )
    refused: list[Refused]
    if route.partial is not None:
        decoded = route.partial.decode_partial(meta, envelope)
        events, refused = decoded.events, decoded.refused
    else:
        events, refused = adapter.decode(meta, envelope), []
    _check_and_number(events)
    publisher = runtime.publisher
    if publisher is None:  # the app's lifespan has not started
        raise Unavailable("the gateway is starting; retry")
    if refused:
        published = publisher.enqueue(events, refused=refused, source_id=source.id)
    else:
        published = publisher.enqueue(events)
    accepted = Accepted(
        source=source,
        meta=meta,
        # kept only for a dialect whose answer reads them: a request of ENCODE_AT_ONCE_EVENTS or
        # more has them encoded by enqueue, and they go with the parsed body before the wait, while
        # they are still in the CPU's caches (freeing a /v1/batch of 100 after its flush took a
        # fifth of the gateway's time); a smaller one's the publisher keeps until its flush
        events=events if route.respond is not None else [],
        n_events=len(events),
        refused=refused,
    )
    del envelope, events
    if route.partial is not None:
        del decoded
    await published
    return accepted


def _check_and_number(events: list[Event]) -> None:
    """Give each event its id; refuse the request if an event nests deeper than a worker decodes."""
    for event in events:
        if nested_deeper(event.raw):  # a worker could not decode it: refused whole, nothing published
            raise InvalidBody(f"JSON is nested more than {MAX_DEPTH} levels deep", code="invalid_json")
        event.id = str(uuid_utils.uuid7())


class ClientDisconnected(Exception):
    pass


class BodyReader:
    """A request's body from ASGI ``receive``; ``received`` counts its bytes as sent (before gunzip)."""

    __slots__ = ("receive", "received")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.received = 0

    async def read(self, cap: int, content_length: str | None) -> bytes:
        """``read_body``'s answer (the cap, gzip). A body that came whole in the first message (almost
        every one: it arrives with the head) is taken as is, without ``read_body``'s async iteration
        (~1.6 µs), and checked the same way (``refuse_declared``, ``finished``)."""
        refuse_declared(content_length, cap)
        message = await self.receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            body: bytes = message.get("body", b"")
            self.received += len(body)
            return finished(body, cap)
        return await read_body(self._chunks(message), cap)

    async def _chunks(self, first: Message | None) -> AsyncIterator[bytes]:
        message = first
        while True:
            if message is None:
                message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            self.received += len(chunk)
            yield chunk
            if not message.get("more_body", False):
                return
            message = None


_DECODED: dict[bytes, str] = {}
"""Header names and values decoded (latin-1) lately: an SDK sends the same names, and mostly the same
values (Host, Authorization, User-Agent, Content-Type), with every request."""
DECODED_KEPT = 4096
"""At most this many in ``_DECODED``; when it is full it starts afresh."""
DECODED_LONGEST = 512
"""Longer names or values are decoded every time (``_DECODED`` holds at most ~2 MB)."""


def _decode_new(raw: bytes) -> str:
    text = raw.decode("latin-1")
    if len(raw) <= DECODED_LONGEST:
        if len(_DECODED) >= DECODED_KEPT:
            _DECODED.clear()
        _DECODED[raw] = text
    return text


def decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI's header pairs as a dict of latin-1 text (names are lower-case already; the last of a
    repeated name wins). Each name or value seen lately is looked up instead of decoded (``_DECODED``):
    a lookup costs about half a decode (~0.8k instructions each, ~10k for a 4-header request)."""
    decoded = _DECODED.get
    headers = {}
    for name, value in raw:
        key = decoded(name)
        if key is None:
            key = _decode_new(name)
        text = decoded(value)
        if text is None:
            text = _decode_new(value)
        headers[key] = text
    return headers


def _compile(pattern: str) -> re.Pattern[str]:
    """``/{tracking_key}/event`` -> a regex whose named groups are the path parameters."""
    return re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(pattern)) + "$")


class RouteTable:
    """Accepting paths: exact ones in a dict, ``{name}`` patterns tried in order when none matches."""

    def __init__(self, routes: Mapping[str, AnyRoute]) -> None:
        self.exact: dict[str, AnyRoute] = {}
        self.patterns: list[tuple[re.Pattern[str], AnyRoute]] = []
        for path, route in routes.items():
            if "{" in path:
                self.patterns.append((_compile(path), route))
            else:
                self.exact[path] = route

    def match(self, path: str) -> tuple[AnyRoute, dict[str, str]] | None:
        found = self.exact.get(path)
        if found is not None:
            return found, {}
        for pattern, route in self.patterns:
            m = pattern.match(path)
            if m:
                return route, m.groupdict()
        return None


class IngestFront:
    """ASGI: the accepting POST paths of every dialect, everything else to ``app``.

    ``routes`` maps a path to an ``IngestRoute`` or a ``SharedRoute``; a path with ``{name}`` segments
    is a pattern, tried (in order) only when no exact path matches. ``errors`` maps a dialect's name to
    its error renderer (``Dialect.render_error``); a dialect without one answers in the default shape."""

    def __init__(
        self,
        app: Starlette,
        runtime: Runtime,
        routes: Mapping[str, AnyRoute],
        errors: Mapping[str, ErrorRenderer] | None = None,
        counts: AcceptCounts | None = None,
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.table = RouteTable(routes)
        self.errors: Mapping[str, ErrorRenderer] = errors or {}
        self._ok: dict[int, tuple[tuple[Message, Message], tuple[Message, Message]]] = {}
        self._proxies = client_ip.parse_networks(runtime.settings.trusted_proxies)
        self.counts = counts if counts is not None else AcceptCounts(metrics.gateway())
        """What this process counted and has not handed to prometheus-client yet (``gateway/counting.py``)."""
        self._prefix = runtime.settings.first_party_prefix
        self.deadlines = Deadlines.for_timeout(runtime.settings.http_body_timeout_seconds)
        """The bodies' deadlines: one timer a ``resolution`` for all requests, not one each."""

    @property
    def state(self) -> State:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._prefix is not None:
                scope = under_prefix(scope, self._prefix)
            if scope["method"] == "POST":
                path = get_route_path(scope)
                found = self.table.match(path)
                if found is not None:
                    await self._ingest(found[0], found[1], path, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _static_ok(self, route: IngestRoute[Any], cors: bool) -> tuple[Message, Message]:
        cached = self._ok.get(id(route))
        if cached is None:
            cached = self._ok[id(route)] = (route.ok_messages(False), route.ok_messages(True))
        return cached[cors]

    async def _ingest(
        self,
        route: AnyRoute,
        params: dict[str, str],
        path: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        started = time.perf_counter()
        headers = decode_headers(scope["headers"])
        raw_query = scope.get("query_string", b"")
        query = dict(parse_qsl(raw_query.decode("latin-1"))) if raw_query else {}
        if isinstance(route, SharedRoute):
            route = route.choose(headers, query)
        cors: bool | CorsHeaders = "origin" in headers
        if cors and route.cors is not None:
            cors = route.cors(headers)
        client = scope.get("client")
        peer = client[0] if client else None
        if self._proxies and client_ip.is_trusted_proxy(peer, self._proxies):
            # behind a configured load balancer: the client it names (uvicorn's own proxy-header
            # handling is off, so nobody else's X-Forwarded-For is believed)
            peer = client_ip.forwarded_client(headers, self._proxies) or peer
        incoming = Incoming(
            path=path,
            headers=headers,
            query=query,
            params=params,
            client_ip=peer,
        )
        dialect = route.adapter.dialect
        trace = debugger.Trace() if self.runtime.watched else None
        tally = self.counts.of(dialect)
        reader = BodyReader(receive)
        try:
            accepted = await accept(self.runtime, route, incoming, reader, self.deadlines, trace)
        except ClientDisconnected:
            self._refused(tally, dialect, 499, "client_disconnected", reader.received, started)
            return
        except (AdapterError, GatewayError) as exc:
            if exc.status >= 500:
                log.warning("ingest_unavailable dialect=%s code=%s", dialect, exc.code)
            else:
                log.info("ingest_refused dialect=%s code=%s path=%s", dialect, exc.code, exc.path)
            await self._error(dialect, exc, cors, scope, receive, send, trace)
            self._refused(tally, dialect, exc.status, exc.code, reader.received, started)
            return
        except Exception as exc:  # a bug: answered in the dialect's shape (500), logged with its trace
            await self._error(dialect, exc, cors, scope, receive, send, trace)
            self._refused(tally, dialect, 500, "internal_error", reader.received, started)
            return
        if route.respond is None and cors.__class__ is bool:
            start, body = self._static_ok(route, cors)  # type: ignore[arg-type]  # narrowed by the class test
        elif route.respond is None:
            start, body = _messages(Reply(route.ok_status, route.ok_body, route.ok_content_type), cors)
        else:
            start, body = _messages(route.respond(accepted), cors)
        await send(start)
        await send(body)
        tally.accepted += 1
        tally.events += accepted.n_events
        tally.bytes_in += reader.received
        tally.observe(time.perf_counter() - started)

    def _refused(
        self, tally: Tally, dialect: str, status: int, reason: str, n_bytes: int, started: float
    ) -> None:
        self.counts.refused(dialect, status, reason)
        tally.bytes_in += n_bytes
        tally.observe(time.perf_counter() - started)

    async def _error(
        self,
        dialect: str,
        exc: Exception,
        cors: bool | CorsHeaders,
        scope: Scope,
        receive: Receive,
        send: Send,
        trace: debugger.Trace | None = None,
    ) -> None:
        response = error_response(self.errors.get(dialect, default_error), exc, dialect)
        if cors is True:
            response.headers["access-control-allow-origin"] = "*"
        elif cors:
            for name, value in cors:
                response.headers.append(name.decode("latin-1"), value.decode("latin-1"))
        await response(scope, receive, send)
        if trace is not None:  # someone watches the debug feed: the refusal, after the answer
            debugger.refused(self.runtime, trace, exc, dialect, scope["path"])
