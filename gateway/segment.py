"""Segment's HTTP surface: the tracking calls, metrics, and the settings analytics.js loads."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from adapters import segment
from gateway.errors import NotFound
from gateway.ingest import ingest
from gateway.responses import SEGMENT_OK, JSONResponse, error_response


async def track(request: Request) -> Response:
    """POST /v1/{identify,track,page,screen,group,alias,batch,import} and /v1/{i,t,p,s,g,a,b}."""
    call = request.path_params["call"]
    kind = segment.CALLS.get(call)
    if kind is None:
        return error_response("segment", NotFound(f"no such call: /v1/{call}", code="unknown_call"))
    cap = segment.MAX_BATCH_BYTES if kind == "batch" else segment.MAX_EVENT_BYTES
    return await ingest(request, segment, call, cap, SEGMENT_OK)


async def metrics(request: Request) -> Response:
    """POST /v1/m: analytics.js's own telemetry. Answered, not stored."""
    return SEGMENT_OK


async def project_settings(request: Request) -> Response:
    """GET /v1/projects/{writeKey}/settings: what analytics.js loads from its CDN before it starts."""
    write_key = request.path_params["write_key"]
    runtime = request.app.state.runtime
    if runtime.sources.by_key("segment", write_key) is None:
        return error_response("segment", NotFound("no source has that write key"))
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
        }
    )
