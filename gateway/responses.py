"""The one place where errors become HTTP responses, in each dialect's own status and shape."""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from starlette.responses import Response

from trackgate.adapters.base import AdapterError
from trackgate.gateway.errors import GatewayError

log = logging.getLogger(__name__)

_encode = msgspec.json.encode


class JSONResponse(Response):
    """A JSON response encoded by msgspec (Starlette's own goes through the json module)."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return _encode(content)


def _default_error(status: int, code: str, message: str, path: str | None) -> Response:
    """``{"code", "message", "path"?}``; a 503 tells the client when to retry."""
    body = {"code": code, "message": message}
    if path:
        body["path"] = path
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _segment_error(status: int, code: str, message: str, path: str | None) -> Response:
    # Segment documents 400 for an oversized request or event; its SDKs never retry a 400.
    return _default_error(400 if status == 413 else status, code, message, path)


def _spectacle_error(status: int, code: str, message: str, path: str | None) -> Response:
    # Spectacle documents no error body: the default shape, with the ``success`` flag of its 200
    body = {"success": False, "code": code, "message": message}
    if path:
        body["path"] = path
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


_TINYTRAIL_CODES = {
    400: "INVALID_PAYLOAD",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


def _tinytrail_error(status: int, code: str, message: str, path: str | None) -> Response:
    """``{"status":"error","error":{"code","message"}}`` with TinyTrail's codes. Its collect endpoint
    documents no 413 or 415: a body too large or unreadable is ``INVALID_PAYLOAD``. A 204 is its silent
    drop (an unknown website): no body at all."""
    if status == 204:
        return Response(status_code=204)
    if status in (413, 415):
        status = 400
    tt_code = _TINYTRAIL_CODES.get(status, "INTERNAL_ERROR")
    if tt_code == "INTERNAL_ERROR":
        status = 500
    headers = {"Retry-After": "5"} if status == 503 else None
    body = {"status": "error", "error": {"code": tt_code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _commandersact_error(status: int, code: str, message: str, path: str | None) -> Response:
    # Commanders Act documents 200 for everything but a request too large or not JSON: 400.
    return _default_error(400 if status == 413 else status, code, message, path)


_FASTIFY_CODES = frozenset(
    {"invalid_json", "empty_body", "request_too_large", "unsupported_media_type", "invalid_body"}
)
"""Errors fastify raises before validation (its ``FastifyError``); the rest are validation errors."""


_OPENPANEL_PLAIN = frozenset({"missing_ip", "missing_user_agent"})
"""``GET /track/device-id``'s refusals, which OpenPanel's controller sends as plain text."""


def _openpanel_error(status: int, code: str, message: str, path: str | None) -> Response:
    """OpenPanel's answers: 401 (and 500) plain text, as ``clientHook`` and ``app.ts`` send them; other
    errors ``{"status", "error", "message"}`` from its error handler, a validation message prefixed
    with the field's path (``body/payload/name Too small: ...``)."""
    if status == 401 or code in _OPENPANEL_PLAIN:
        return Response(message, status_code=status, media_type="text/plain")
    if status >= 500 and status != 503:
        return Response("Internal server error", status_code=status, media_type="text/plain")
    if status == 429:
        message = "You have exceeded the rate limit for this endpoint."
        return JSONResponse(
            {"status": 429, "error": "Too Many Requests", "message": message}, status_code=429
        )
    if status == 413:
        message = "Request body is too large"
    error = "FastifyError" if code in _FASTIFY_CODES else "Error"
    if status == 503:
        error = "Service Unavailable"
    body = {"status": status, "error": error, "message": f"{path} {message}" if path else message}
    return JSONResponse(body, status_code=status, headers={"Retry-After": "5"} if status == 503 else None)


# Bucket/Reflag document 200, 400 (any problem with the request, no retry), 403 (a bad key) and 5xx.
_BUCKET_STATUS = {401: 403, 413: 400, 415: 400}


def _bucket_error(status: int, code: str, message: str, path: str | None) -> Response:
    """``{"success": false, "error": {"code", "message", "path"?}}``: Reflag's shape, which its SDKs
    log as ``code: message``."""
    error = {"code": code, "message": message}
    if path:
        error["path"] = path
    status = _BUCKET_STATUS.get(status, status)
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse({"success": False, "error": error}, status_code=status, headers=headers)


_RENDERERS: dict[str, Callable[[int, str, str, str | None], Response]] = {
    # a dialect's error shape: (status, code, message, path) -> Response
    "segment": _segment_error,
    "spectacle": _spectacle_error,
    "tinytrail": _tinytrail_error,
    "commandersact": _commandersact_error,
    "openpanel": _openpanel_error,
    "bucket": _bucket_error,
}


def error_response(dialect: str, exc: Exception) -> Response:
    """``exc`` as ``dialect`` answers it. Unknown exceptions are logged and answered 500."""
    render = _RENDERERS.get(dialect, _default_error)
    if isinstance(exc, AdapterError | GatewayError):
        response = render(exc.status, exc.code, exc.message, exc.path)
        for name, value in getattr(exc, "headers", {}).items():
            response.headers[name] = value
        return response
    log.exception("unhandled_error dialect=%s", dialect, exc_info=exc)
    return render(500, "internal_error", "internal error", None)


SUCCESS = b'{"success":true}'
"""What Segment, Spectacle and Reflag answer when all went well."""
SEGMENT_OK = Response(SUCCESS, status_code=200, media_type="application/json")
