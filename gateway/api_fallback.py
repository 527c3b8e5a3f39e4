"""The TinyTrail API's answer to what it does not serve: every path under ``/api/v1`` (and
``/tinytrail/api/v1``) that no route takes is 404 ``NOT_FOUND``, and a served path asked with another
method 405 ``METHOD_NOT_ALLOWED`` with ``Allow``, both in TinyTrail's envelope through the one
error→response place (``api_access.endpoint``), never Starlette's plain-text "Not Found" nor its 307 to
the path without a trailing slash.

:func:`routes` are the last of the route table: a request reaches them only when no other route takes
its path and method, so the dialects' own paths (collect's POST, taken before Starlette by
``IngestFront``; its OPTIONS preflight) keep their answers, and paths outside these prefixes keep
Starlette's.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, get_route_path
from starlette.types import Receive, Scope, Send

from trackgate.gateway.api_access import Handler, endpoint
from trackgate.gateway.errors import MethodNotAllowed, NotFound

PREFIXES = ("/api/v1", "/tinytrail/api/v1")


def routes(posted: Collection[str]) -> list[BaseRoute]:
    """The catch-all routes of :data:`PREFIXES`; ``posted``: the exact paths ``IngestFront`` takes POSTs
    on (so that a GET of ``/api/v1/collect`` says that POST is allowed)."""

    async def unrouted(request: Request) -> Response:
        allowed: set[str] = set()
        for route in request.app.router.routes:
            if isinstance(route, Route) and route.methods:  # (these routes' methods: None, every one)
                match, _ = route.matches(request.scope)
                if match == Match.PARTIAL:
                    allowed |= route.methods
        path = get_route_path(request.scope)
        if path in posted:
            allowed.add("POST")
        if allowed:
            raise MethodNotAllowed(f"{request.method} is not allowed on {path}", sorted(allowed))
        raise NotFound(f"no such route: {request.method} {path}")

    app = _EveryMethod(endpoint(unrouted))
    return [Route(path, app) for prefix in PREFIXES for path in (prefix, prefix + "/{rest:path}")]


class _EveryMethod:
    """``handler`` as an ASGI app: a Route whose endpoint is not a function takes every method
    (Starlette gives a function's route GET and HEAD only)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)
