"""The one place where errors become HTTP responses (``error_response``), in each dialect's own status
and shape: the shape is the dialect's ``render_error`` (declared in its ``Dialect``, next to its routes)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.responses import Response

from trackgate.adapters.base import AdapterError
from trackgate.gateway.errors import GatewayError

log = logging.getLogger(__name__)

_encode = msgspec.json.encode


class JSONResponse(Response):
    """A JSON response encoded by msgspec (Starlette's own goes through the json module)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


ErrorRenderer = Callable[[int, str, str, str | None], Response]
"""A dialect's error shape: (status, code, message, path) -> Response (``Dialect.render_error``)."""


def retry_headers(status: int) -> dict[str, str] | None:
    """A 503 tells the client when to retry."""
    return {"Retry-After": "5"} if status == 503 else None


def default_error(status: int, code: str, message: str, path: str | None) -> Response:
    """``{"code", "message", "path"?}``; a 503 tells the client when to retry."""
    body = {"code": code, "message": message}
    if path:
        body["path"] = path
    return JSONResponse(body, status_code=status, headers=retry_headers(status))


API_CODES = {
    400: "INVALID_PAYLOAD",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


def api_error(status: int, code: str, message: str, path: str | None) -> Response:
    """TinyTrail's API envelope ``{"status":"error","error":{"code","message"}}`` with its upper-case codes:
    its collect endpoint's errors and the operator API's (``/debugger``, issue 12's management API and
    reports). ``METHOD_NOT_ALLOWED`` (405, with ``Allow``) is ours: the document lists no code for a
    method its paths do not take (``gateway/api_fallback.py``)."""
    api_code = API_CODES.get(status, "INTERNAL_ERROR")
    if api_code == "INTERNAL_ERROR":
        status = 500
    body = {"status": "error", "error": {"code": api_code, "message": message}}
    return JSONResponse(body, status_code=status, headers=retry_headers(status))


def error_response(render: ErrorRenderer, exc: Exception, dialect: str = "") -> Response:
    """``exc`` as a dialect answers it: ``render`` is the dialect's ``render_error``. Unknown
    exceptions are logged (with ``dialect``) and answered 500."""
    if isinstance(exc, AdapterError | GatewayError):
        response = render(exc.status, exc.code, exc.message, exc.path)
        if isinstance(exc, GatewayError):
            for name, value in exc.headers.items():
                response.headers[name] = value
        return response
    log.exception("unhandled_error dialect=%s", dialect, exc_info=exc)
    return render(500, "internal_error", "internal error", None)


SUCCESS = b'{"success":true}'
"""What Segment, Spectacle and Reflag answer when all went well."""
SEGMENT_OK = Response(SUCCESS, status_code=200, media_type="application/json")
