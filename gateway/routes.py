"""The route table. Each dialect is reachable at its vendor's own paths (so only the base URL
changes) and under its own prefix (``/segment/v1/...``, ``/openpanel/...``), which is never ambiguous.

A dialect's gateway module (``gateway/<dialect>.py``) provides:

- ``ingest_routes() -> dict[path, IngestRoute]``: its accepting POST paths, served by ``IngestFront``;
- ``shared_routes() -> dict[path, IngestRoute]`` (optional): unprefixed paths that another dialect may
  use too; when two dialects claim one, ``_shared`` decides per request (see ``choose_shared``);
- ``routes() -> list[BaseRoute]``: everything else (GET endpoints, preflights), served by Starlette;
- ``demo_source() -> dict`` and ``demo_lines(base, demo) -> list[str]``: what ``trackgate up`` creates
  and prints for it.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway import bucket, segment
from gateway.ingest import IngestRoute, SharedRoute

DIALECTS = (segment, bucket)
"""The gateway module of every dialect, in the order ``up`` lists them."""


async def health(request: Request) -> Response:
    runtime = request.app.state.runtime
    ready = runtime.sources.loaded
    return Response(
        b"ok" if ready else b"starting", status_code=200 if ready else 503, media_type="text/plain"
    )


def choose_shared(routes: Mapping[str, IngestRoute]) -> SharedRoute:
    """``/event``, ``/user``, ``/company``, ``/feedback`` are both OpenPanel's and Reflag's. The
    credentials decide: ``Authorization: Bearer`` is Reflag's (its SDKs always send it on these
    paths); anything else (``openpanel-client-id``/``mixan-client-id`` headers, or ``clientId`` in
    the body) is OpenPanel's, whose 401 then names what is missing."""
    bucket, openpanel = routes.get("bucket"), routes.get("openpanel")

    def choose(headers: Mapping[str, str]) -> IngestRoute:
        if bucket is not None and headers.get("authorization", "")[:7].lower() == "bearer ":
            return bucket
        return openpanel if openpanel is not None else bucket  # type: ignore[return-value]

    return SharedRoute(choose=choose)


def _shared() -> dict[str, IngestRoute | SharedRoute]:
    claims: dict[str, dict[str, IngestRoute]] = {}
    for module in DIALECTS:
        for path, route in getattr(module, "shared_routes", dict)().items():
            claims.setdefault(path, {})[route.adapter.dialect] = route
    return {
        path: next(iter(by_dialect.values())) if len(by_dialect) == 1 else choose_shared(by_dialect)
        for path, by_dialect in claims.items()
    }


def ingest_routes() -> dict[str, IngestRoute | SharedRoute]:
    """Every dialect's accepting POST paths (exact or ``{param}`` patterns), for ``IngestFront``."""
    table: dict[str, IngestRoute | SharedRoute] = {}
    for module in DIALECTS:
        for path, route in module.ingest_routes().items():
            if path in table:
                raise RuntimeError(f"two dialects claim POST {path}; use shared_routes()")
            table[path] = route
    for path, route in _shared().items():
        if path in table:
            raise RuntimeError(f"POST {path} is both a dialect's own path and a shared one")
        table[path] = route
    return table


def build_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [Route("/health", health, methods=["GET"])]
    for module in DIALECTS:
        routes.extend(module.routes())
    return routes
