"""The one place where errors become HTTP responses, in each dialect's own status and shape."""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from starlette.responses import Response

from adapters.base import AdapterError
from gateway.errors import GatewayError

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


SEGMENT_OK = Response(b'{"success":true}', status_code=200, media_type="application/json")
