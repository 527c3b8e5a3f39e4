"""Spectacle's HTTP surface: the REST tracking API and the pixel paths, at the root and under /spectacle.

- ``POST /tracking/{identify,track,page,group}``: JSON only (another Content-Type is a 415 before the
  body is read); the body's ``workspaceId`` names the source.
- ``POST /{p,i,t,g}``: the pixel/GTM template's ``text/plain`` JSON (any Content-Type is read as JSON);
  the body's ``writeKey`` names the source.
- Success is ``200 {"success":true}`` (Spectacle documents no body; its pixel takes any 2xx). Errors are
  ``{"success":false,"code","message","path"?}``: 400 for a bad body (``path`` names the field, also a
  missing ``workspaceId``/``writeKey``), 401 for a workspace id no source has, 413 over 32 KB, 415.
- ``OPTIONS`` on every path answers the browser's preflight (``*``, POST, the requested headers).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackgate.adapters import spectacle
from trackgate.adapters.base import InvalidPayload
from trackgate.gateway.dialect import Dialect
from trackgate.gateway.errors import NotFound, Unauthorized, UnsupportedMediaType
from trackgate.gateway.ingest import Auth, AuthContext, IngestRoute
from trackgate.gateway.responses import SUCCESS, JSONResponse, error_response, retry_headers

DIALECT = "spectacle"
PREFIXES = ("", "/spectacle")
JSON_TYPES = frozenset({"application/json"})


def _authenticate(json_only: bool) -> Callable[[AuthContext], Auth[None] | None]:
    def authenticate(ctx: AuthContext) -> Auth[None] | None:
        envelope = ctx.envelope
        if envelope is None:
            if json_only:
                _check_json(ctx.incoming.headers.get("content-type"))
            return None  # the workspace id is in the body
        key = spectacle.credentials(ctx.incoming.headers, envelope)
        field = envelope.key_field
        if not key:
            raise InvalidPayload("missing_field", f"{field} is required: your workspace id (ws_...)", field)
        try:
            return Auth(ctx.runtime.sources.authenticate(DIALECT, key), None)
        except Unauthorized:
            raise Unauthorized(
                f"no workspace has the {field} you sent", code="invalid_credentials", path=field
            ) from None

    return authenticate


def _check_json(content_type: str | None) -> None:
    media = (content_type or "").partition(";")[0].strip().lower()
    if media not in JSON_TYPES:
        got = f"got {content_type!r}" if content_type else "none was sent"
        raise UnsupportedMediaType(f"Content-Type must be application/json ({got})", path="Content-Type")


def ingest_routes() -> dict[str, IngestRoute[None]]:
    """/tracking/{identify,track,page,group} and /{p,i,t,g}, at the root and under /spectacle."""
    rest = _authenticate(json_only=True)
    pixel = _authenticate(json_only=False)
    routes: dict[str, IngestRoute[None]] = {}
    for call in spectacle.CALLS:
        is_rest = call in spectacle.REST_CALLS
        route = IngestRoute(
            adapter=spectacle,
            call=call,
            cap=spectacle.MAX_EVENT_BYTES,
            ok_status=200,
            ok_body=SUCCESS,
            authenticate=rest if is_rest else pixel,
        )
        for prefix in PREFIXES:
            routes[f"{prefix}/tracking/{call}" if is_rest else f"{prefix}/{call}"] = route
    return routes


def render_error(status: int, code: str, message: str, path: str | None) -> Response:
    """Spectacle documents no error body: the default shape, with the ``success`` flag of its 200."""
    body = {"success": False, "code": code, "message": message}
    if path:
        body["path"] = path
    return JSONResponse(body, status_code=status, headers=retry_headers(status))


async def preflight(request: Request) -> Response:
    """The browser's CORS preflight: any origin, POST, whatever headers it asks for."""
    requested = request.headers.get("access-control-request-headers") or "Content-Type"
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": requested,
            "Access-Control-Max-Age": "86400",
            "Vary": "Access-Control-Request-Headers",
        },
    )


async def unknown_call(request: Request) -> Response:
    """POST /tracking/<anything else>: the accepted calls never reach Starlette."""
    call = request.path_params["call"]
    response = error_response(render_error, NotFound(f"no such call: /tracking/{call}", code="unknown_call"))
    if "origin" in request.headers:
        response.headers["access-control-allow-origin"] = "*"
    return response


def routes() -> list[BaseRoute]:
    """Preflights for every accepting path, and a JSON 404 for unknown /tracking calls."""
    out: list[BaseRoute] = []
    for path in ingest_routes():
        out.append(Route(path, preflight, methods=["OPTIONS"]))
    for prefix in PREFIXES:
        out.append(Route(f"{prefix}/tracking/{{call}}", unknown_call, methods=["POST"]))
    return out


def new_source(key: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """A Spectacle source: its key IS the workspace id (``ws_`` + random when not given)."""
    key = key or new_workspace_id()
    return {"key": key, "extra_keys": {}, "settings": {}, "show": {"workspace id": key}}


def new_workspace_id() -> str:
    """The form Spectacle's GTM template checks: ``^ws_[a-zA-Z0-9-_]+$``."""
    return "ws_" + secrets.token_hex(12)


def demo_lines(base: str, demo: dict[str, Any]) -> list[str]:
    """A REST track and a pixel page view, as ``up`` prints them (they work pasted into a shell)."""
    ws = demo["key"]
    return [
        f"  curl -sS {base}/tracking/track -H 'Content-Type: application/json' "
        f"""-d '{{"workspaceId":"{ws}","userId":"user-1","event":"Charged","""
        """"properties":{"revenue":1599,"currency":"USD"}}'""",
        f"  curl -sS {base}/p -H 'Content-Type: text/plain' "
        f"""-d '{{"type":"page","writeKey":"{ws}","userId":null,"anonymousId":"anon-1","""
        """"context":{"page":{"url":"https://example.com/","path":"/","title":"Home"}}}'""",
    ]


SPEC = Dialect(
    name=DIALECT,
    adapter=spectacle,
    ingest=ingest_routes(),
    routes=routes(),
    render_error=render_error,
    new_source=new_source,
    demo_lines=demo_lines,
)
