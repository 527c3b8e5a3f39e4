"""The TinyTrail API's access layer (issue 12): who calls (``X-API-KEY`` → :class:`Principal`), what
they may see (a ``user`` key sees its own account only), how often (60 requests per 60 s per key), and
the API's one way of answering (:func:`endpoint`, :func:`ok`).

- :func:`principal`: 401 ``UNAUTHORIZED`` without a valid key; the request is counted against the key's
  window (429 ``RATE_LIMITED`` with ``Retry-After`` past ``TRACKGATE_API_RATE_LIMIT`` per 60 s, counted
  in Redis by the key's id, so every gateway process shares it); then 403 ``FORBIDDEN`` for a ``user``
  key on an admin route.
- :func:`website`: 400 ``INVALID_PAYLOAD`` for a missing or non-UUID id; 404 ``NOT_FOUND`` for a website
  that does not exist or that belongs to another account (a ``user`` never learns that it exists).
- :func:`endpoint` wraps a handler so that every error it raises is answered in TinyTrail's envelope by
  the one error→response place (``responses.error_response`` with ``responses.api_error``).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from trackgate.gateway import rate_limit
from trackgate.gateway.api_keys import ADMIN, HEADER, Principal
from trackgate.gateway.database import Database
from trackgate.gateway.errors import Forbidden, InvalidPayload, NotFound, Unauthorized, Unavailable
from trackgate.gateway.responses import JSONResponse, api_error, error_response
from trackgate.gateway.runtime import Runtime
from trackgate.schemas.websites import WEBSITE_COLUMNS, Website, website_from_row

__all__ = [
    "Principal",
    "database",
    "endpoint",
    "is_admin",
    "json_body",
    "ok",
    "principal",
    "uuid_param",
    "website",
]

RATE_WINDOW_SECONDS = 60
RATE_KEY = "trackgate:api:rate:"

Handler = Callable[[Request], Awaitable[Response]]


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def principal(request: Request, *, admin: bool = False) -> Principal:
    """The caller's key's owner (see the module's doc for the 401 / 429 / 403 order)."""
    runtime = _runtime(request)
    if runtime.api_keys is None or runtime.redis is None:
        raise Unavailable("the gateway is starting; retry")
    key = request.headers.get(HEADER)
    if not key:
        raise Unauthorized("send an API key in the X-API-KEY header", code="missing_api_key")
    found = await runtime.api_keys.lookup(key)
    if found is None:
        raise Unauthorized("the X-API-KEY is not a valid key", code="invalid_api_key")
    settings = runtime.settings
    await rate_limit.hit(
        runtime.redis,
        RATE_KEY + found.key_id,
        limit=settings.api_rate_limit,
        window_seconds=RATE_WINDOW_SECONDS,
        timeout=settings.redis_timeout_seconds,
    )
    if admin and found.role != ADMIN:
        raise Forbidden("this needs an admin API key", code="admin_only")
    return found


def is_admin(who: Principal) -> bool:
    return who.role == ADMIN


def uuid_param(value: str | None, name: str) -> str:
    """``value`` as a canonical UUID (lower case, hyphens); 400 ``INVALID_PAYLOAD`` naming ``name``."""
    if not value:
        raise InvalidPayload(f"{name} is required", path=name)
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidPayload(f"{name} must be a UUID", path=name) from None


def database(request: Request) -> Database:
    found = _runtime(request).database
    if found is None:
        raise Unavailable("the gateway is starting; retry")
    return found


WEBSITE_QUERY = (
    f"SELECT {WEBSITE_COLUMNS} FROM sources s JOIN accounts a ON a.workspace = s.workspace"
    " WHERE s.website_id = %s"
)


async def website(request: Request, principal: Principal, website_id: str | None) -> Website:
    """The website ``website_id`` names, if ``principal`` may see it (see the module's doc)."""
    canonical = uuid_param(website_id, "website_id")
    async with database(request).connection() as conn:
        cur = await conn.execute(WEBSITE_QUERY, (canonical,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound("website not found")
    found = website_from_row(row)
    if not is_admin(principal) and found.account_id != principal.account_id:
        raise NotFound("website not found")
    return found


def ok(data: Any, status: int = 200) -> Response:
    """``{"status":"success","data":...}``."""
    return JSONResponse({"status": "success", "data": data}, status_code=status)


MAX_BODY_BYTES = 64 * 1024
"""The largest management request body (a website with its content groups and IP list is a few KB)."""


async def json_body(request: Request, empty: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request's JSON object; 400 ``INVALID_PAYLOAD`` for anything else, or for a body over
    ``MAX_BODY_BYTES`` (read no further: the document has no 413). ``empty``: what an empty body
    means, for a route whose body is optional (else an empty body is a 400 too)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InvalidPayload(f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if empty is not None and not raw.strip():
        return empty
    try:
        body = msgspec.json.decode(raw) if raw.strip() else None
    except msgspec.DecodeError:
        raise InvalidPayload("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidPayload("the body must be a JSON object")
    return body


def endpoint(handler: Handler) -> Handler:
    """``handler``, its errors (the gateway's, or any other: logged, 500 ``INTERNAL_ERROR``) answered in
    TinyTrail's envelope."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 - every error gets the envelope; unknown ones are logged
            return error_response(api_error, exc, "tinytrail-api")

    return run
