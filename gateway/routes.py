"""The route table. Each dialect is reachable at its vendor's own paths (so only the base URL
changes) and under its own prefix (``/segment/v1/...``), so no two dialects' paths collide."""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router

from gateway import segment
from gateway.ingest import IngestRoute


def _segment_v1() -> CORSMiddleware:
    router = Router(
        routes=[
            Route("/m", segment.metrics, methods=["POST"]),
            Route("/projects/{write_key}/settings", segment.project_settings, methods=["GET"]),
            Route("/{call}", segment.unknown_call, methods=["POST"]),
        ]
    )
    # analytics.js >= 1.84 sends Basic auth from the browser, which forces a preflight.
    return CORSMiddleware(
        router,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Retry-Count"],
        max_age=86400,
    )


async def health(request: Request) -> Response:
    runtime = request.app.state.runtime
    ready = runtime.sources.loaded
    return Response(
        b"ok" if ready else b"starting", status_code=200 if ready else 503, media_type="text/plain"
    )


def ingest_routes() -> dict[str, IngestRoute]:
    """Every dialect's accepting POST paths, exact, for ``IngestFront``."""
    return {**segment.ingest_routes()}


def build_routes() -> list[BaseRoute]:
    segment_v1 = _segment_v1()
    return [
        Route("/health", health, methods=["GET"]),
        Mount("/v1", app=segment_v1),
        Mount("/segment/v1", app=segment_v1),
    ]
