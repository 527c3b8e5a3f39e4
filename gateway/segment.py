"""Segment's HTTP surface: the tracking calls, metrics, and what analytics.js loads from Segment's CDN
(itself, its chunks and its settings)."""

from __future__ import annotations

import re
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router

from trackgate.adapters import segment
from trackgate.gateway.auth import new_key
from trackgate.gateway.dialect import Dialect
from trackgate.gateway.errors import NotFound, Unavailable
from trackgate.gateway.ingest import IngestRoute
from trackgate.gateway.responses import SEGMENT_OK, SUCCESS, JSONResponse, default_error, error_response
from trackgate.gateway.scripts import IMMUTABLE, packaged, script_response

DIALECT = "segment"
PREFIXES = ("/v1", "/segment/v1")
CDN_PREFIXES = ("", "/segment")
"""Where analytics.js's own CDN paths are served: the gateway (or ``/segment``) is its ``cdnURL``."""
ANALYTICS_JS = "/analytics.js/v1/{write_key}/analytics.min.js"
BUNDLES = "/analytics-next/bundles/{name}"
_BUNDLE = re.compile(r"[A-Za-z0-9_-]+\.bundle\.[0-9a-f]+\.js")


def ingest_routes() -> dict[str, IngestRoute[None]]:
    """POST /v1/{identify,track,page,screen,group,alias,batch,import} and analytics.js's
    /v1/{i,t,p,s,g,a,b}, at the root and under /segment: served by ``gateway.ingest.IngestFront``."""
    routes: dict[str, IngestRoute[None]] = {}
    for call, kind in segment.CALLS.items():
        cap = segment.MAX_BATCH_BYTES if kind == "batch" else segment.MAX_EVENT_BYTES
        route: IngestRoute[None] = IngestRoute(
            adapter=segment, call=call, cap=cap, ok_status=200, ok_body=SUCCESS
        )
        for prefix in PREFIXES:
            routes[f"{prefix}/{call}"] = route
    return routes


def render_error(status: int, code: str, message: str, path: str | None) -> Response:
    """The default shape; Segment documents 400 for an oversized request or event (its SDKs never
    retry a 400)."""
    return default_error(400 if status == 413 else status, code, message, path)


async def unknown_call(request: Request) -> Response:
    """POST /v1/<anything else>: the accepted calls never reach Starlette."""
    call = request.path_params["call"]
    return error_response(render_error, NotFound(f"no such call: /v1/{call}", code="unknown_call"))


async def metrics(request: Request) -> Response:
    """POST /v1/m: analytics.js's own telemetry. Answered, not stored."""
    return SEGMENT_OK


async def project_settings(request: Request) -> Response:
    """GET /v1/projects/{writeKey}/settings: what analytics.js loads from its CDN before it starts."""
    write_key = request.path_params["write_key"]
    runtime = request.app.state.runtime
    try:
        found = runtime.sources.by_key("segment", write_key)
    except Unavailable as exc:
        return error_response(render_error, exc, DIALECT)
    if found is None:
        return error_response(render_error, NotFound("no source has that write key"))
    base = (runtime.settings.public_url or f"{request.url.scheme}://{request.url.netloc}").rstrip("/")
    scheme, _, host = base.partition("://")
    host += request.scope.get("root_path", "")  # the mount it was asked under: /v1 or /segment/v1
    return JSONResponse(
        {
            "integrations": {
                "Segment.io": {
                    "apiKey": write_key,
                    "apiHost": host,
                    "protocol": scheme,
                    "unbundledIntegrations": [],
                    "addBundledMetadata": True,
                    "maybeBundledConfigIds": {},
                }
            },
            "plan": {
                "track": {"__default": {"enabled": True, "integrations": {}}},
                "identify": {"__default": {"enabled": True}},
                "group": {"__default": {"enabled": True}},
            },
            "edgeFunction": {},
            "analyticsNextEnabled": True,
            "middlewareSettings": {},
            "enabledMiddleware": {},
            "metrics": {"sampleRate": 0},
            "legacyVideoPluginsEnabled": False,
            "remotePlugins": [],
        },
        # apiHost comes from TRACKGATE_PUBLIC_URL, else from this request's Host: never cache it
        headers={"Cache-Control": "no-store"},
    )


async def analytics_js(request: Request) -> Response:
    """GET /analytics.js/v1/{writeKey}/analytics.min.js: the standalone bundle of the pinned
    ``@segment/analytics-next`` (``gateway/static/segment``, refreshed by its ``update.sh``). The same
    for every write key: the settings endpoint is where a key is checked."""
    return script_response(request, packaged("segment/analytics.min.js"))


async def bundle(request: Request) -> Response:
    """GET /analytics-next/bundles/{name}: a chunk analytics.min.js loads on demand (content-hashed)."""
    name = request.path_params["name"]
    if not _BUNDLE.fullmatch(name):
        return error_response(render_error, NotFound("no such bundle"))
    try:
        script = packaged(f"segment/{name}")
    except FileNotFoundError:
        return error_response(render_error, NotFound("no such bundle"))
    return script_response(request, script, IMMUTABLE)


def routes() -> list[BaseRoute]:
    """/v1/m, /v1/projects/{key}/settings, 404 for unknown calls, the CORS preflights, and
    analytics.js with its chunks."""
    router = Router(
        routes=[
            Route("/m", metrics, methods=["POST"]),
            Route("/projects/{write_key}/settings", project_settings, methods=["GET"]),
            Route("/{call}", unknown_call, methods=["POST"]),
        ]
    )
    # analytics.js >= 1.84 sends Basic auth from the browser, which forces a preflight.
    v1 = CORSMiddleware(
        router,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Retry-Count"],
        max_age=86400,
    )
    scripts: list[BaseRoute] = []
    for cdn in CDN_PREFIXES:
        scripts.append(Route(cdn + ANALYTICS_JS, analytics_js, methods=["GET"]))
        scripts.append(Route(cdn + BUNDLES, bundle, methods=["GET"]))
    return [*scripts, *(Mount(prefix, app=v1) for prefix in PREFIXES)]


def new_source(key: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """Credentials of a new Segment source: one write key (``sources add`` and ``up``).

    Returns ``key`` (primary, in ``sources.key_hash``), ``extra_keys`` (kind -> key, in
    ``source_keys``), ``settings`` (the source's jsonb) and ``show`` (label -> value, printed once)."""
    key = key or new_key()
    return {"key": key, "extra_keys": {}, "settings": {}, "show": {"write key": key}}


def demo_lines(base: str, demo: dict[str, Any]) -> list[str]:
    """The curl line ``up`` prints for the demo source ``new_source`` made."""
    return [
        f"  curl -sS {base}/v1/track -u '{demo['key']}:' -H 'Content-Type: application/json' "
        """-d '{"userId":"user-1","event":"Signed Up","properties":{"plan":"pro"}}'"""
    ]


SPEC = Dialect(
    name=DIALECT,
    adapter=segment,
    ingest=ingest_routes(),
    routes=routes(),
    render_error=render_error,
    new_source=new_source,
    demo_lines=demo_lines,
)
