"""Bucket's tracking API and Reflag's runtime API over HTTP.

Where a key can be, and which key (a source's primary key is its publishable/tracking key; its extra
key of kind ``secret`` is the secret key the node SDK needs):

- ``POST /{tracking_key}/{user,company,event,feedback}`` (the old ``tracking.bucket.co``): the path's key,
  the publishable one;
- ``POST /{user,company,event,feedback}``, ``/bulk``, ``/feedback/prompt-events``, ``/features/events``
  and the ``GET`` endpoints (``front.reflag.com``): ``Authorization: Bearer <secret or publishable key>``,
  or ``?publishableKey=`` (publishable only, as Reflag documents); ``GET /features`` takes the secret key
  only (flag definitions are the server SDKs').

Everything is also served under ``/bucket/...``. Success is ``200 {"success":true}`` (the SDKs drop a
batch whose answer lacks it); errors are ``{"success":false,"error":{"code","message","path"?}}`` with 400
(anything wrong with the body, Content-Type included) or 403 (a missing or bad key).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackgate.adapters import bucket
from trackgate.gateway.auth import SourceCache, new_key
from trackgate.gateway.dialect import Dialect
from trackgate.gateway.errors import Forbidden, Unavailable, UnsupportedMediaType
from trackgate.gateway.ingest import Accepted, Auth, AuthContext, IngestRoute, Reply
from trackgate.gateway.responses import SUCCESS as OK
from trackgate.gateway.responses import JSONResponse, error_response, retry_headers
from trackgate.schemas.request import Source

DIALECT = "bucket"
PREFIX = "/bucket"
SECRET = "secret"
"""The ``source_keys`` kind of a source's secret key."""
MIN_SECRET_LENGTH = 23
"""@reflag/node-sdk refuses a secret key of 22 characters or fewer."""

TRACKING_CALLS = ("user", "company", "event", "feedback")
FEATURES_BODY = b'{"success":true,"features":[],"flagStateVersion":0}'
EVALUATED_BODY = b'{"success":true,"features":{}}'
FLAGS_BODY = b'{"success":true,"flags":{}}'
"""``/{tracking_key}/features/enabled``: what @bucketco/tracking-sdk's ``getFeatureFlags`` reads."""

_CORS = {"Access-Control-Allow-Origin": "*"}


# --- credentials -----------------------------------------------------------------------------------


def find_source(
    sources: SourceCache,
    *,
    path_key: str | None = None,
    authorization: str | None = None,
    query_key: str | None = None,
    publishable_ok: bool = True,
) -> Source:
    """The source the request's key belongs to, or ``Forbidden`` (403: Reflag's answer to a missing,
    unknown or not-allowed key)."""
    if path_key is not None:
        source = sources.by_key(DIALECT, path_key)
        if source is None:
            raise Forbidden("no source has that tracking key", code="invalid_credentials")
        return source
    key = bucket.bearer(authorization)
    if key is not None:
        source = sources.by_key(DIALECT, key)
        if source is not None:
            if not publishable_ok:
                raise Forbidden(
                    "a publishable key cannot read flag definitions: use the secret key",
                    code="secret_key_required",
                )
            return source
        source = sources.by_extra_key(DIALECT, SECRET, key)
        if source is None:
            raise Forbidden("no source has that key", code="invalid_credentials")
        return source
    if query_key:
        source = sources.by_key(DIALECT, query_key) if publishable_ok else None
        if source is None:
            raise Forbidden("no source has that publishable key", code="invalid_credentials")
        return source
    raise Forbidden(
        "no key: send Authorization: Bearer <secret or publishable key>", code="missing_credentials"
    )


def _require_json(headers: Mapping[str, str]) -> None:
    content_type = headers.get("content-type")
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != "application/json":
        shown = repr(content_type) if content_type else "none"
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {shown}", code="invalid_content_type"
        )


def _path_key_auth(ctx: AuthContext) -> Auth[None]:
    incoming = ctx.incoming
    source = find_source(ctx.runtime.sources, path_key=incoming.params["tracking_key"])
    _require_json(incoming.headers)
    return Auth(source, None)


def _bearer_auth(ctx: AuthContext) -> Auth[None]:
    incoming = ctx.incoming
    source = find_source(
        ctx.runtime.sources,
        authorization=incoming.headers.get("authorization"),
        query_key=incoming.query.get("publishableKey"),
    )
    _require_json(incoming.headers)
    return Auth(source, None)


def claims(headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """On a path OpenPanel uses too (``/event``): ``Authorization: Bearer`` or ``?publishableKey=`` is
    Reflag's (its SDKs always send one of them); anything else is OpenPanel's, whose 401 then names
    what is missing."""
    return headers.get("authorization", "")[:7].lower() == "bearer " or "publishableKey" in query


_encode = msgspec.json.encode


def _feedback_reply(accepted: Accepted) -> Reply:
    """The old SDK's feedback widget sends the score first, reads ``feedbackId`` from the answer, and
    sends the comment later with it: the client's own id, else the event's, links the two."""
    (event,) = accepted.events
    feedback_id = event.properties.get("feedbackId") or event.id
    return Reply(200, _encode({"success": True, "feedbackId": str(feedback_id)}))


# --- ingest routes (IngestFront) --------------------------------------------------------------------


def _route(call: str, auth: Callable[[AuthContext], Auth[None]]) -> IngestRoute[None]:
    bulk = call == "bulk"
    return IngestRoute(
        adapter=bucket,
        call=call,
        cap=bucket.MAX_BULK_BYTES if bulk else bucket.MAX_CALL_BYTES,
        ok_body=OK,
        authenticate=auth,
        respond=_feedback_reply if call == "feedback" else None,
    )


def _bearer_routes() -> dict[str, IngestRoute[None]]:
    """Reflag's paths that are Bucket's alone (the four tracking calls are ``shared_routes``)."""
    return {
        "/bulk": _route("bulk", _bearer_auth),
        "/feedback/prompt-events": _route("prompt-event", _bearer_auth),
        "/features/events": _route("feature-flag-event", _bearer_auth),
    }


def ingest_routes() -> dict[str, IngestRoute[None]]:
    """The old API's ``/{tracking_key}/{call}`` (patterns), ``/bulk`` and Reflag's single-item event
    paths, and all of them plus the four tracking calls under ``/bucket``."""
    routes: dict[str, IngestRoute[None]] = {}
    for call in TRACKING_CALLS:
        by_path_key = _route(call, _path_key_auth)
        routes[f"/{{tracking_key}}/{call}"] = by_path_key
        routes[f"{PREFIX}/{{tracking_key}}/{call}"] = by_path_key
        routes[f"{PREFIX}/{call}"] = _route(call, _bearer_auth)
    prompt_events = _route("prompt-event", _path_key_auth)  # the old SDK's live-satisfaction events
    routes["/{tracking_key}/feedback/prompt-events"] = prompt_events
    routes[f"{PREFIX}/{{tracking_key}}/feedback/prompt-events"] = prompt_events
    for path, route in _bearer_routes().items():
        routes[path] = route
        routes[PREFIX + path] = route
    return routes


def shared_routes() -> dict[str, IngestRoute[None]]:
    """``/user``, ``/company``, ``/event``, ``/feedback``: OpenPanel uses ``/event`` too; the requests
    that ``claims`` are Bucket's."""
    return {f"/{call}": _route(call, _bearer_auth) for call in TRACKING_CALLS}


# --- errors ------------------------------------------------------------------------------------------

# Bucket/Reflag document 200, 400 (any problem with the request, no retry), 403 (a bad key) and 5xx.
_STATUS = {401: 403, 413: 400, 415: 400}


def render_error(status: int, code: str, message: str, path: str | None) -> Response:
    """``{"success": false, "error": {"code", "message", "path"?}}``: Reflag's shape, which its SDKs
    log as ``code: message``."""
    error = {"code": code, "message": message}
    if path:
        error["path"] = path
    status = _STATUS.get(status, status)
    return JSONResponse({"success": False, "error": error}, status_code=status, headers=retry_headers(status))


# --- Starlette routes: flags, prompting, preflights --------------------------------------------------


def _key_args(request: Request) -> dict[str, Any]:
    path_key = request.path_params.get("tracking_key")
    if path_key is not None:
        return {"path_key": path_key}
    return {
        "authorization": request.headers.get("authorization"),
        "query_key": request.query_params.get("publishableKey"),
    }


def _checked(request: Request, body: bytes, publishable_ok: bool = True) -> Response:
    try:
        find_source(request.app.state.runtime.sources, publishable_ok=publishable_ok, **_key_args(request))
    except (Forbidden, Unavailable) as exc:
        response = error_response(render_error, exc)
        response.headers.update(_CORS)
        return response
    return Response(body, media_type="application/json", headers={**_CORS, "Cache-Control": "no-store"})


async def features(request: Request) -> Response:
    """GET /features: flag definitions for server SDKs (the secret key). trackgate has no flags: an
    empty list at version 0 (@reflag/node-sdk needs the integer ``flagStateVersion``)."""
    return _checked(request, FEATURES_BODY, publishable_ok=False)


async def evaluated(request: Request) -> Response:
    """GET /features/evaluated and /features/enabled: no flag is on for anyone."""
    return _checked(request, EVALUATED_BODY)


async def enabled_by_path_key(request: Request) -> Response:
    """GET /{tracking_key}/features/enabled (@bucketco/tracking-sdk): no flag is on."""
    return _checked(request, FLAGS_BODY)


async def prompting_init(request: Request) -> Response:
    """POST /feedback/prompting-init: automated feedback surveys are off (no ``channel``), so the
    browser SDK opens no live connection."""
    return _checked(request, OK)


async def live_channel(request: Request) -> Response:
    """GET /sse/client: Reflag's live channel (flag updates, automatic feedback prompts), which
    @reflag/browser-sdk opens at ``apiBaseUrl`` when automatic feedback is on (its default). trackgate
    pushes nothing: 204, which tells an EventSource to stop (HTML's server-sent events: no reconnect),
    so the SDK closes it quietly (a debug line) instead of warning about a failed stream."""
    response = _checked(request, b"")
    if response.status_code != 200:
        return response
    return Response(status_code=204, headers={**_CORS, "Cache-Control": "no-store"})


_ALLOW_HEADERS = "Authorization, Content-Type, reflag-sdk-version, bucket-sdk-version"


async def preflight(request: Request) -> Response:
    """CORS preflight for the browser SDKs (``Authorization`` and ``Content-Type: application/json``
    make every POST preflighted). The requested headers are allowed as asked, so a preflight that is
    meant for another dialect on a shared path (OpenPanel's ``/event``) is answered right too."""
    return Response(
        status_code=204,
        headers={
            **_CORS,
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("access-control-request-headers")
            or _ALLOW_HEADERS,
            "Access-Control-Max-Age": "86400",
        },
    )


def routes() -> list[BaseRoute]:
    """GET ``/features``, ``/features/evaluated``, ``/features/enabled``, ``/sse/client``; POST
    ``/feedback/prompting-init``; OPTIONS on every path of the dialect. Exact paths come before the
    ``/{tracking_key}/...`` ones."""
    exact = {
        "/features": (features, "GET"),
        "/features/evaluated": (evaluated, "GET"),
        "/features/enabled": (evaluated, "GET"),
        "/feedback/prompting-init": (prompting_init, "POST"),
        "/sse/client": (live_channel, "GET"),
    }
    by_path_key = {
        "/{tracking_key}/features/enabled": (enabled_by_path_key, "GET"),
        "/{tracking_key}/feedback/prompting-init": (prompting_init, "POST"),
    }
    table: list[BaseRoute] = []
    for group in (exact, by_path_key):
        for path, (endpoint, method) in group.items():
            for full in (path, PREFIX + path):
                table.append(Route(full, endpoint, methods=[method]))
    paths = (
        {route.path for route in table if isinstance(route, Route)}
        | set(ingest_routes())
        | set(shared_routes())
    )
    # exact paths first: "/bucket/user" must not be taken for a tracking key "bucket"
    for path in sorted(paths, key=lambda p: ("{" in p, p)):
        table.append(Route(path, preflight, methods=["OPTIONS"]))
    return table


# --- sources add / up ----------------------------------------------------------------------------------


def new_source(key: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """A publishable (tracking) key, the primary one, and a secret key (``source_keys`` kind
    ``secret``; longer than 22 characters, as @reflag/node-sdk requires)."""
    if key is not None and (not key or any(c in key for c in "/?#% ")):
        raise ValueError("a Bucket tracking key is part of the URL path: no '/', '?', '#', '%' or spaces")
    if key is not None and key.lower() == PREFIX.strip("/"):
        raise ValueError("'bucket' cannot be a tracking key: /bucket/user is the prefixed Reflag path")
    key = key or "pub_" + new_key()
    secret = "sec_" + secrets.token_urlsafe(24)
    assert len(secret) >= MIN_SECRET_LENGTH
    return {
        "key": key,
        "extra_keys": {SECRET: secret},
        "settings": {},
        "show": {"publishable key": key, "secret key": secret},
    }


def demo_lines(base: str, demo: dict[str, Any]) -> list[str]:
    """Two curl lines: the old tracking API (key in the path) and Reflag's /bulk (the secret key)."""
    key, secret = demo["key"], demo["extra_keys"][SECRET]
    return [
        f"  curl -sS {base}/{key}/event -H 'Content-Type: application/json' "
        """-d '{"userId":"user-1","event":"Sent message","attributes":{"position":"popover"}}'""",
        f"  curl -sS {base}/bulk -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' "
        """-d '[{"type":"user","userId":"user-1","attributes":{"name":"Ada"}},"""
        """{"type":"company","companyId":"acme","userId":"user-1","attributes":{"name":"Acme"}}]'""",
    ]


SPEC = Dialect(
    name=DIALECT,
    adapter=bucket,
    ingest=ingest_routes(),
    shared=shared_routes(),
    claims=claims,
    routes=routes(),
    render_error=render_error,
    new_source=new_source,
    demo_lines=demo_lines,
)
