"""How the gateway runs under uvicorn: one configuration for ``trackgate serve``, ``trackgate up`` and the
bench, with the limits that keep slow or hostile clients from holding a process.

uvicorn's own knobs come first: ``limit_concurrency`` (beyond it uvicorn answers 503 to new requests),
``timeout_keep_alive`` (idle kept-alive connections), ``h11_max_incomplete_event_size`` (h11 only).
uvicorn has no timeout for reading a request's head, and its httptools protocol no cap on the head's
size (a 16 MB header was read whole; a connection that never finishes its headers stays open for
ever): :class:`GuardedHttpToolsProtocol` adds both, selected with uvicorn's ``http=`` option. The body's
deadline is the application's (``gateway/body.py``: 408 in the dialect's shape).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trackgate.gateway.deadlines import Deadlines
from trackgate.schemas import metrics
from trackgate.schemas.settings import Settings

log = logging.getLogger(__name__)

APP = "trackgate.gateway.asgi:app_from_env"


def _canned(status: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(message)).encode() + b"\r\nconnection: close\r\n\r\n" + message
    )


REQUEST_TIMEOUT = _canned(b"408 Request Timeout", b"request headers not received in time")
HEADERS_TOO_LARGE = _canned(b"431 Request Header Fields Too Large", b"request headers too large")


class GatewayConfig(uvicorn.Config):
    """``uvicorn.Config`` carrying the head limits :class:`GuardedHttpToolsProtocol` reads (plain
    attributes: the config is pickled into each worker process)."""

    def __init__(self, app: Any, *, header_timeout: float, max_header_bytes: int, **kwargs: Any):
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes


_HEADS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Deadlines]] = (
    weakref.WeakKeyDictionary()
)
"""The heads' deadlines of the connections each loop serves (tests run servers in threads, a loop
each), one :class:`Deadlines` per header timeout."""


def _heads(loop: asyncio.AbstractEventLoop, timeout: float) -> Deadlines:
    of_loop = _HEADS.get(loop)
    if of_loop is None:
        of_loop = _HEADS[loop] = {}
    deadlines = of_loop.get(timeout)
    if deadlines is None:
        deadlines = of_loop[timeout] = Deadlines.for_timeout(timeout)
    return deadlines


class _Head:
    """A connection's head deadline, as :class:`Deadlines` watches it."""

    __slots__ = ("due", "protocol")

    def __init__(self, protocol: GuardedHttpToolsProtocol) -> None:
        self.protocol = protocol
        self.due = 0.0

    def fire(self) -> None:
        self.protocol._head_timed_out()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on each request's line and headers.

    The deadline runs from the connection (a client that connects and sends nothing, or a header a byte
    at a time) or from a kept-alive request's first byte, until its headers are complete; then 408 and
    the connection is closed. Bytes received while a head is incomplete are counted; past the cap, 431
    and closed (the head is bounded by the cap plus one read).

    The deadlines of all connections are kept by one coarse timer (``gateway/deadlines.py``), not a
    timer per request: under uvloop a ``call_later`` and its cancel cost ~5 µs, a tenth of a small
    request's whole cost. A head is cut off between the timeout and a quarter of it (at most 1 s) later."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any):
        super().__init__(config, *args, **kwargs)
        self._header_timeout = float(getattr(config, "header_timeout", 10.0))
        self._max_header_bytes = int(getattr(config, "max_header_bytes", 32768))
        self._heads = _heads(self.loop, self._header_timeout)
        self._head = _Head(self)
        self._in_head = True
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._head.due = self.loop.time() + self._header_timeout
        self._heads.add(self._head, self.loop)

    def _stop_head_timer(self) -> None:
        self._heads.discard(self._head)

    def _refuse(self, response: bytes, reason: str) -> None:
        self._stop_head_timer()
        if self.transport.is_closing():
            return
        log.info("http_refused reason=%s client=%s", reason, self.client)
        _count_refused(int(response[9:12]), reason)  # "HTTP/1.1 408 ...": its status
        self.transport.write(response)
        self.transport.close()

    def _head_timed_out(self) -> None:
        if self._in_head:
            self._refuse(REQUEST_TIMEOUT, "header_timeout")

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self._max_header_bytes:
            self._refuse(HEADERS_TOO_LARGE, "headers_too_large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a kept-alive connection's next request
            self._start_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        limit = self.limit_concurrency  # uvicorn's own test, just before it answers 503 itself
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            _count_refused(503, "concurrency_limit")
        super().on_headers_complete()


def _count_refused(status: int, reason: str) -> None:
    """A request the server refused before the app saw it (408, 431, uvicorn's 503), counted in
    ``trackgate_requests_refused`` as the app's refusals are, with the dialect ``http`` (not known yet)."""
    metrics.gateway().refused.labels("http", str(status), reason).inc()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options every way of serving the gateway uses (keyword arguments of ``uvicorn.Config``)."""
    return {
        "loop": "uvloop",
        "http": GuardedHttpToolsProtocol,
        "access_log": False,
        "log_level": settings.log_level.lower(),
        # JSON logs: uvicorn's loggers keep no text handlers of their own and reach the root's
        **({"log_config": None} if settings.log_format == "json" else {}),
        # X-Forwarded-For is believed only from TRACKGATE_TRUSTED_PROXIES (gateway.ingest), not from
        # uvicorn's default 127.0.0.1
        "proxy_headers": False,
        "limit_concurrency": settings.http_max_connections,
        "timeout_keep_alive": settings.http_keepalive_timeout_seconds,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
    }


def uvicorn_config(
    settings: Settings, app: Any = APP, *, factory: bool = True, workers: int = 1, **overrides: Any
) -> GatewayConfig:
    """The gateway's uvicorn configuration: ``settings``' host, port and limits."""
    options = {
        "host": settings.host,
        "port": settings.port,
        "factory": factory,
        "workers": workers,
        **uvicorn_options(settings),
        **overrides,
    }
    return GatewayConfig(
        app,
        header_timeout=settings.http_header_timeout_seconds,
        max_header_bytes=settings.http_max_header_bytes,
        **options,
    )


def serve(config: uvicorn.Config) -> None:
    """Run ``config`` as ``uvicorn.run`` does (one process, or ``workers`` processes on one socket)."""
    from uvicorn.supervisors import Multiprocess

    server = uvicorn.Server(config)
    if config.workers > 1:
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run()
    if not server.started and config.workers == 1:
        raise SystemExit(3)  # uvicorn.run's STARTUP_FAILURE


def main(argv: list[str] | None = None) -> None:
    """``python -m trackgate.gateway.server APP [--factory] [--host H] [--port P] [--log-level L]``:
    any ASGI app under the gateway's uvicorn configuration (the bench serves every app it compares so)."""
    import argparse

    from trackgate.schemas.settings import settings_from_env

    parser = argparse.ArgumentParser(prog="python -m trackgate.gateway.server")
    parser.add_argument("app")
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--log-level")
    args = parser.parse_args(argv)
    settings = settings_from_env(host=args.host, port=args.port, log_level=args.log_level)
    serve(uvicorn_config(settings, args.app, factory=args.factory))


if __name__ == "__main__":
    main()
