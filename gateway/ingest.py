"""The accept path every dialect shares: body → credentials → source → events → Redis → answer.

It is the one hot path, so it is served as raw ASGI in front of Starlette (``IngestFront``): an exact
path lookup, the headers read once, the body read from ``receive``, and pre-built success messages.
Everything else (preflights, settings, health, unknown paths) goes to the Starlette app. Measured in
``bench/``: Starlette's Mount + Router + CORSMiddleware alone cost more per request than this whole path.

Nothing is acknowledged before the publisher says the events are in Redis; any error on the way is
answered in the dialect's shape by ``responses.error_response`` and nothing is published.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import msgspec
import uuid_utils

from adapters.base import Adapter, AdapterError
from gateway.body import read_body
from gateway.errors import GatewayError
from gateway.responses import error_response
from schemas.request import RequestMeta

log = logging.getLogger(__name__)

_CORS = (b"access-control-allow-origin", b"*")


class IngestRoute(msgspec.Struct, frozen=True):
    """One accepting path: which adapter, which call, the body cap, and what success looks like."""

    adapter: Any  # an Adapter module
    call: str
    cap: int
    ok_status: int
    ok_body: bytes
    ok_content_type: bytes = b"application/json"

    def ok_messages(self, cors: bool) -> tuple[dict, dict]:
        headers = [
            (b"content-type", self.ok_content_type),
            (b"content-length", str(len(self.ok_body)).encode()),
        ]
        if cors:
            headers.append(_CORS)
        return (
            {"type": "http.response.start", "status": self.ok_status, "headers": headers},
            {"type": "http.response.body", "body": self.ok_body},
        )


async def accept(
    runtime: Any,
    adapter: Adapter,
    call: str,
    cap: int,
    headers: Mapping[str, str],
    chunks: AsyncIterator[bytes],
    client_ip: str | None,
) -> None:
    """Publish the request's events, or raise the error that refuses it."""
    dialect = adapter.dialect
    key = adapter.credentials(headers, None)
    source = runtime.sources.authenticate(dialect, key) if key else None
    body = await read_body(chunks, cap, headers.get("content-length"))
    envelope = adapter.parse(call, body)
    if source is None:
        source = runtime.sources.authenticate(dialect, adapter.credentials(headers, envelope))
    meta = RequestMeta(
        source_id=source.id,
        dialect=dialect,
        call=call,
        received_at=runtime.clock(),
        request_id=str(uuid_utils.uuid7()),
        ip=client_ip,
        user_agent=headers.get("user-agent"),
    )
    events = adapter.decode(meta, envelope)
    for event in events:
        event.id = str(uuid_utils.uuid7())
    await runtime.publisher.publish(events)


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


class IngestFront:
    """ASGI: the accepting POST paths of every dialect here, everything else to ``app``."""

    def __init__(self, app: Any, runtime: Any, routes: Mapping[str, IngestRoute]):
        self.app = app
        self.runtime = runtime
        # path -> (route, success messages without CORS, with CORS): one lookup per request
        self.routes = {path: (r, r.ok_messages(False), r.ok_messages(True)) for path, r in routes.items()}

    @property
    def state(self):
        return self.app.state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = self.routes.get(scope["path"])
            if found is not None:
                await self._ingest(*found, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _ingest(
        self,
        route: IngestRoute,
        ok_plain: tuple[dict, dict],
        ok_cors: tuple[dict, dict],
        scope: dict,
        receive: Callable,
        send: Callable,
    ) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        cors = "origin" in headers
        client = scope.get("client")
        dialect = route.adapter.dialect
        try:
            await accept(
                self.runtime,
                route.adapter,
                route.call,
                route.cap,
                headers,
                _receive_chunks(receive),
                client[0] if client else None,
            )
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
        start, body = ok_cors if cors else ok_plain
        await send(start)
        await send(body)

    async def _error(self, dialect: str, exc: Exception, cors: bool, scope, receive, send) -> None:
        response = error_response(dialect, exc)
        if cors:
            response.headers["access-control-allow-origin"] = "*"
        await response(scope, receive, send)
