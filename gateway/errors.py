"""The gateway's own errors. Each has a stable ``code`` and a default HTTP status; ``responses``
turns them (and adapter errors) into each dialect's error shape, in one place."""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, code: str | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        if code is not None:
            self.code = code


class BodyTooLarge(GatewayError):
    status = 413
    code = "request_too_large"


class InvalidBody(GatewayError):
    """The body could not be read as sent (a broken gzip stream, a bad encoding)."""

    status = 400
    code = "invalid_body"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Unavailable(GatewayError):
    """The event store (Redis) did not take the events: nothing was acknowledged, retry."""

    status = 503
    code = "unavailable"
