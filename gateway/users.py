"""TinyTrail's users: ``GET/POST /api/v1/users``, ``GET /api/v1/users/{id}/api-key``,
``DELETE /api/v1/users/{id}`` (admin keys).

A user is an API key (``api_keys``, migration 0013): ``tt_`` + 256 random bits, shown once at creation
and again by ``GET .../api-key``; stored as its keyed digest (what the gateway looks keys up by) and
Fernet-encrypted under ``TRACKGATE_SECRET_KEY`` (what ``api-key`` decrypts). Keys are never logged. Keys
made by ``trackgate admin create-key`` are users too (an admin key made there has no account).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from cryptography.fernet import InvalidToken
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackgate.gateway.api_access import database, endpoint, json_body, ok, principal, uuid_param
from trackgate.gateway.api_keys import ADMIN, INSERT_KEY, USER, new_api_key
from trackgate.gateway.auth import key_digest, read_secret_async
from trackgate.gateway.errors import GatewayError, InvalidPayload, NotFound
from trackgate.gateway.runtime import Runtime
from trackgate.gateway.websites import sources_changed
from trackgate.schemas.api_time import api_time
from trackgate.schemas.destinations import SecretKeyMissing, fernet

log = logging.getLogger(__name__)

MAX_EMAIL = 320
_COLUMNS = "id, account_id, email, role, created_at"


class NoSecretKey(GatewayError):
    """The gateway has no (or another) ``TRACKGATE_SECRET_KEY``: keys cannot be stored or shown."""

    status = 500
    code = "no_secret_key"


def user_json(row: tuple[Any, ...]) -> dict[str, Any]:
    user_id, account_id, email, role, created_at = row
    return {
        "id": user_id,
        "accountId": account_id,
        "email": email,
        "role": role,
        "createdAt": api_time(created_at),
    }


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@endpoint
async def list_users(request: Request) -> Response:
    """GET /api/v1/users (admin): every user, without keys."""
    await principal(request, admin=True)
    async with database(request).connection() as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id"
        )
        rows = await cur.fetchall()
    return ok([user_json(row) for row in rows])


def _fields(body: dict[str, Any]) -> tuple[str, str, str | None]:
    account_id = body.get("account_id")
    if not isinstance(account_id, str):
        raise InvalidPayload("account_id is required: the UUID of an account", path="account_id")
    account_id = uuid_param(account_id, "account_id")
    role = body.get("role")
    if role not in (ADMIN, USER):
        raise InvalidPayload('role is required: "admin" or "user"', path="role")
    email = body.get("email")
    if email is not None and (not isinstance(email, str) or len(email) > MAX_EMAIL):
        raise InvalidPayload(f"email must be a string of at most {MAX_EMAIL} characters", path="email")
    return account_id, role, email


@endpoint
async def create_user(request: Request) -> Response:
    """POST /api/v1/users (admin) {account_id, role, email?}: a user and its key, shown once (201)."""
    await principal(request, admin=True)
    account_id, role, email = _fields(await json_body(request))
    settings = _runtime(request).settings
    key = new_api_key()
    try:
        encrypted = fernet(settings.secret_key).encrypt(key.encode()).decode()
    except SecretKeyMissing as exc:
        raise NoSecretKey("the gateway has no TRACKGATE_SECRET_KEY: API keys cannot be stored") from exc
    user_id = str(uuid.uuid4())
    async with database(request).connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT 1 FROM accounts WHERE id = %s FOR SHARE", (account_id,))
        if await cur.fetchone() is None:
            raise InvalidPayload("account_id names no account", path="account_id")
        digest = key_digest(key, await read_secret_async(conn, settings.key_pepper))
        cur = await conn.execute(INSERT_KEY, (user_id, role, account_id, email, digest, encrypted, None))
        row = await cur.fetchone()
    assert row is not None
    created: datetime = row[0]
    log.info("user_created user_id=%s role=%s account_id=%s", user_id, role, account_id)
    data = user_json((user_id, account_id, email, role, created))
    data = {**data, "apiKey": key, "createdAt": data.pop("createdAt")}  # the document's order
    return ok(data, status=201)


@endpoint
async def user_api_key(request: Request) -> Response:
    """GET /api/v1/users/{id}/api-key (admin): the user's key, decrypted."""
    await principal(request, admin=True)
    user_id = uuid_param(request.path_params["id"], "id")
    async with database(request).connection() as conn:
        cur = await conn.execute(
            "SELECT key_encrypted FROM api_keys WHERE id = %s AND revoked_at IS NULL", (user_id,)
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound("user not found")
    try:
        key = fernet(_runtime(request).settings.secret_key).decrypt(row[0].encode()).decode()
    except (SecretKeyMissing, InvalidToken) as exc:
        raise NoSecretKey(
            "the key cannot be decrypted: TRACKGATE_SECRET_KEY is unset or not the one it was stored with"
        ) from exc
    return ok({"id": user_id, "apiKey": key})


@endpoint
async def delete_user(request: Request) -> Response:
    """DELETE /api/v1/users/{id} (admin): the user; its key stops working."""
    await principal(request, admin=True)
    user_id = uuid_param(request.path_params["id"], "id")
    async with database(request).connection() as conn:
        cur = await conn.execute(f"DELETE FROM api_keys WHERE id = %s RETURNING {_COLUMNS}", (user_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound("user not found")
    await sources_changed(request)  # its keys fail at once on every gateway
    log.info("user_deleted user_id=%s", user_id)
    return ok(user_json(row))


PATH = "/api/v1/users"
ROUTES: list[BaseRoute] = [
    Route(PATH, list_users, methods=["GET"]),
    Route(PATH, create_user, methods=["POST"]),
    Route(PATH + "/{id}/api-key", user_api_key, methods=["GET"]),
    Route(PATH + "/{id}", delete_user, methods=["DELETE"]),
]
