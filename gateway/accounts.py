"""TinyTrail's accounts: ``GET/POST /api/v1/accounts``, ``DELETE /api/v1/accounts/{id}`` (admin keys).

An account is a workspace (``schemas/websites.py``): one created here has its id as its workspace.
The Default account (the workspace every source made on the command line or by ``trackgate up`` is in)
cannot be deleted: 400, delete its websites instead. Deleting another deletes, in one transaction, the
account, its users' keys and its websites' sources (collect
stops at once), and queues the deletion of their events, aggregates, profiles and groups
(``workers/deletes.py``); the answer is the deleted account, at once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackgate.gateway.api_access import database, endpoint, json_body, ok, principal, uuid_param
from trackgate.gateway.errors import InvalidPayload, NotFound
from trackgate.gateway.websites import queue_delete, sources_changed
from trackgate.schemas.api_time import api_time
from trackgate.schemas.websites import DEFAULT_ACCOUNT_ID

log = logging.getLogger(__name__)

MAX_NAME = 255


def account_json(account_id: str, name: str, created_at: datetime) -> dict[str, Any]:
    return {"id": account_id, "name": name, "createdAt": api_time(created_at)}


@endpoint
async def list_accounts(request: Request) -> Response:
    """GET /api/v1/accounts (admin): every account."""
    await principal(request, admin=True)
    async with database(request).connection() as conn:
        cur = await conn.execute("SELECT id, name, created_at FROM accounts ORDER BY created_at, id")
        rows = await cur.fetchall()
    return ok([account_json(*row) for row in rows])


@endpoint
async def create_account(request: Request) -> Response:
    """POST /api/v1/accounts (admin) {name}: a new account (201)."""
    await principal(request, admin=True)
    body = await json_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise InvalidPayload(
            f"name is required: a non-empty string of at most {MAX_NAME} characters", path="name"
        )
    account_id = str(uuid.uuid4())
    async with database(request).connection() as conn:
        cur = await conn.execute(
            "INSERT INTO accounts (id, name, workspace) VALUES (%s, %s, %s) RETURNING created_at",
            (account_id, name.strip(), account_id),
        )
        row = await cur.fetchone()
    assert row is not None
    log.info("account_created account_id=%s", account_id)
    return ok(account_json(account_id, name.strip(), row[0]), status=201)


@endpoint
async def delete_account(request: Request) -> Response:
    """DELETE /api/v1/accounts/{id} (admin): the account, its keys, websites and data."""
    await principal(request, admin=True)
    account_id = uuid_param(request.path_params["id"], "id")
    if account_id == DEFAULT_ACCOUNT_ID:
        raise InvalidPayload(
            "the Default account holds the sources made on the command line and by `trackgate up`:"
            " it cannot be deleted (delete its websites instead)",
            path="id",
        )
    async with database(request).connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM accounts WHERE id = %s RETURNING name, workspace, created_at", (account_id,)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound("account not found")
        name, workspace, created_at = row
        cur = await conn.execute("DELETE FROM sources WHERE workspace = %s RETURNING id", (workspace,))
        source_ids = [r[0] for r in await cur.fetchall()]
        await conn.execute("DELETE FROM api_keys WHERE account_id = %s", (account_id,))
        await queue_delete(request, source_ids, workspace, f"account {account_id}")
    await sources_changed(request)  # its keys fail at once on every gateway
    log.info("account_deleted account_id=%s n_sources=%d", account_id, len(source_ids))
    return ok(account_json(account_id, name, created_at))


PATH = "/api/v1/accounts"
ROUTES: list[BaseRoute] = [
    Route(PATH, list_accounts, methods=["GET"]),
    Route(PATH, create_account, methods=["POST"]),
    Route(PATH + "/{id}", delete_account, methods=["DELETE"]),
]
