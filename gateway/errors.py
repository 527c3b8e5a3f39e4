"""The gateway's own errors. Each has a stable ``code`` and a default HTTP status; ``responses``
turns them (and adapter errors) into each dialect's error shape, in one place."""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        path: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.path = path
        self.headers = headers or {}
        """Added to the error response whatever the dialect's shape (``Retry-After``)."""
        if code is not None:
            self.code = code


class BodyTooLarge(GatewayError):
    status = 413
    code = "request_too_large"


class InvalidBody(GatewayError):
    """The body could not be read as sent (a broken gzip stream, a bad encoding)."""

    status = 400
    code = "invalid_body"


class InvalidPayload(GatewayError):
    """A request to the TinyTrail API (management, reports) with a missing or invalid field: 400
    ``INVALID_PAYLOAD``; the message names the field (``path``)."""

    status = 400
    code = "invalid_payload"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class Forbidden(GatewayError):
    """Credentials were presented and are not valid here (dialects that answer 403, not 401)."""

    status = 403
    code = "forbidden"


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, **kwargs):
        super().__init__(message, headers={"Retry-After": str(retry_after)}, **kwargs)
        self.retry_after = retry_after


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class MethodNotAllowed(GatewayError):
    """The path is served, not with this method; ``Allow`` lists the methods that are."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allow: list[str], **kwargs):
        super().__init__(message, headers={"Allow": ", ".join(allow)}, **kwargs)


class Unavailable(GatewayError):
    """The event store (Redis) did not take the events: nothing was acknowledged, retry."""

    status = 503
    code = "unavailable"
