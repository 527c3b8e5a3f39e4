"""TinyTrail's websites: ``GET/POST /api/v1/websites``, ``PATCH/DELETE /api/v1/websites/{id}`` (any
valid key; a ``user`` key sees its own account only, and another account's website is 404).

A website is a source (``schemas/websites.py``). One created here is a TinyTrail source whose key is its
id (the ``website_id`` tracker.js sends), named after its domain; every gateway reloads its sources at
once (``source_changes.changed``), so it collects on the next request. A source of any other dialect in
the account is listed as a website too (its domain: its ``domain`` setting, else its name) and can be
patched and deleted the same way. Deleting one removes its source at once (collect answers 204 for its
id) and queues the deletion of its stored data (``workers/deletes.py``).
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from rq import Retry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackgate.gateway import background, source_changes, tinytrail
from trackgate.gateway.api_access import (
    database,
    endpoint,
    is_admin,
    json_body,
    ok,
    principal,
    uuid_param,
    website,
)
from trackgate.gateway.api_keys import Principal
from trackgate.gateway.auth import HMAC, key_digest, read_secret_async
from trackgate.gateway.errors import InvalidPayload, NotFound, Unavailable
from trackgate.gateway.runtime import Runtime
from trackgate.schemas.jobs import DELETE_FUNC, PERSIST_QUEUE, DeleteData
from trackgate.schemas.websites import DEFAULT_ACCOUNT_ID, WEBSITE_COLUMNS, Website, website_from_row

log = logging.getLogger(__name__)

DIALECT = tinytrail.DIALECT
DELETE_RETRY = Retry(max=5, interval=[2, 10, 60, 300, 1800])
"""A delete job that ran before its transaction committed finds its sources still there: it retries."""

_LIST = f"SELECT {WEBSITE_COLUMNS} FROM sources s JOIN accounts a ON a.workspace = s.workspace"
_ORDER = " ORDER BY s.created_at, s.id"
_INSERT = (
    "INSERT INTO sources (id, dialect, name, key_hash, settings, workspace, digest_kind, website_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


# --- what a request may say -------------------------------------------------------------------------------


def domain_field(body: dict[str, Any]) -> str:
    value = body.get("domain")
    if not isinstance(value, str) or not tinytrail.DOMAIN.fullmatch(value):
        raise InvalidPayload(
            "domain is required: letters, digits, hyphens and dots, at most 255 characters", path="domain"
        )
    return value


def content_groups_field(body: dict[str, Any]) -> list[dict[str, str]]:
    value = body.get("content_groups")
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPayload("content_groups must be an array of {name, pattern}", path="content_groups")
    groups = []
    for i, group in enumerate(value):
        if not isinstance(group, dict):
            raise InvalidPayload(
                f"content_groups[{i}] must be an object {{name, pattern}}", path="content_groups"
            )
        for field in ("name", "pattern"):
            if not isinstance(group.get(field), str) or not group[field].strip():
                raise InvalidPayload(
                    f"content_groups[{i}].{field} must be a non-empty string",
                    path=f"content_groups[{i}].{field}",
                )
        groups.append({"name": group["name"], "pattern": group["pattern"]})
    return groups


def excluded_ips_field(body: dict[str, Any]) -> list[str]:
    value = body.get("excluded_ips")
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPayload(
            "excluded_ips must be an array of IP addresses or CIDR ranges", path="excluded_ips"
        )
    out = []
    for i, entry in enumerate(value):
        try:
            ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            raise InvalidPayload(
                f"excluded_ips[{i}] is not an IP address or CIDR range", path=f"excluded_ips[{i}]"
            ) from None
        if not isinstance(entry, str):
            raise InvalidPayload(f"excluded_ips[{i}] must be a string", path=f"excluded_ips[{i}]")
        out.append(entry.strip())
    return out


# --- shared with the accounts' routes ---------------------------------------------------------------------


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def queue_delete(request: Request, source_ids: list[str], workspace: str | None, reason: str) -> None:
    """Queue the deletion of the data of ``source_ids`` (and of ``workspace``'s profiles): called inside
    the transaction that deletes them, so that a Redis that does not take the job fails the request
    (503) and nothing is deleted."""
    runtime = _runtime(request)
    if runtime.redis is None:
        raise Unavailable("the gateway is starting; retry")
    payload = DeleteData(source_ids=source_ids, workspace=workspace, reason=reason)
    await background.enqueue(
        runtime.redis,
        DELETE_FUNC,
        [payload],
        queue=PERSIST_QUEUE,
        description=f"delete_data {reason} n_sources={len(source_ids)}",
        retry=DELETE_RETRY,
        timeout=runtime.settings.redis_timeout_seconds,
    )


async def sources_changed(request: Request) -> None:
    """Sources or API keys changed: here at once, and announced to every other gateway."""
    runtime = _runtime(request)
    keys = runtime.api_keys
    await source_changes.changed(runtime.sources, runtime.redis, keys.forget if keys is not None else None)


async def _workspace_of(conn: psycopg.AsyncConnection, account_id: str) -> str | None:
    """The account's workspace, its row locked until the transaction ends: an account deleted meanwhile
    gets no website (the delete waits, or this finds no account)."""
    cur = await conn.execute("SELECT workspace FROM accounts WHERE id = %s FOR SHARE", (account_id,))
    row = await cur.fetchone()
    return row[0] if row else None


async def _domain_taken(
    conn: psycopg.AsyncConnection, workspace: str, domain: str, but: str | None = None
) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM sources WHERE workspace = %s"
        " AND lower(coalesce(settings ->> 'domain', name)) = lower(%s) AND id IS DISTINCT FROM %s",
        (workspace, domain, but),
    )
    return await cur.fetchone() is not None


async def _fetch(conn: psycopg.AsyncConnection, source_id: str) -> Website:
    cur = await conn.execute(f"{_LIST} WHERE s.id = %s", (source_id,))
    row = await cur.fetchone()
    assert row is not None
    return website_from_row(row)


# --- the routes ---------------------------------------------------------------------------------------------


@endpoint
async def list_websites(request: Request) -> Response:
    """GET /api/v1/websites: the caller's account's websites (an admin's: all). ``?include=dialect``
    (ours, for the dashboard's picker) adds each one's ``dialect``: the sources ``trackgate up`` makes
    share names across dialects."""
    who = await principal(request)
    include = request.query_params.get("include") or None
    if include not in (None, "dialect"):
        raise InvalidPayload("include must be dialect (or left out)", path="include")
    async with database(request).connection() as conn:
        if is_admin(who):
            cur = await conn.execute(_LIST + _ORDER)
        else:
            cur = await conn.execute(f"{_LIST} WHERE a.id = %s{_ORDER}", (who.account_id,))
        rows = await cur.fetchall()
    found = [website_from_row(row) for row in rows]
    if include == "dialect":
        return ok([{**site.to_api(), "dialect": site.dialect} for site in found])
    return ok([site.to_api() for site in found])


def _account_for_new(who: Principal, body: dict[str, Any]) -> str:
    """The account a new website goes to: a ``user``'s own (another one named is 404, as if it did not
    exist); an admin's ``account_id``, else the admin key's own account, else ``Default``."""
    named = body.get("account_id")
    if named is not None:
        if not isinstance(named, str):
            raise InvalidPayload("account_id must be a UUID", path="account_id")
        named = uuid_param(named, "account_id")
    if not is_admin(who):
        if named is not None and named != who.account_id:
            raise NotFound("account not found")
        assert who.account_id is not None
        return who.account_id
    return named or who.account_id or DEFAULT_ACCOUNT_ID


@endpoint
async def create_website(request: Request) -> Response:
    """POST /api/v1/websites {domain, content_groups?, excluded_ips?, account_id?}: a new website (201)."""
    who = await principal(request)
    body = await json_body(request)
    domain = domain_field(body)
    groups = content_groups_field(body)
    excluded = excluded_ips_field(body)
    account_id = _account_for_new(who, body)
    runtime = _runtime(request)
    website_id = str(uuid.uuid4())
    source_id = "src_" + secrets.token_hex(8)
    settings = {"domain": domain, "excluded_ips": excluded, "content_groups": groups}
    async with database(request).connection() as conn, conn.transaction():
        workspace = await _workspace_of(conn, account_id)
        if workspace is None:
            if is_admin(who):
                raise InvalidPayload("account_id names no account", path="account_id")
            raise NotFound("account not found")
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("websites:" + workspace,))
        if await _domain_taken(conn, workspace, domain):
            raise InvalidPayload(f"domain {domain} is a website of this account already", path="domain")
        secret = await read_secret_async(conn, runtime.settings.key_pepper)
        try:
            await conn.execute(
                _INSERT,
                (
                    source_id,
                    DIALECT,
                    domain,
                    key_digest(website_id, secret),
                    Jsonb(settings),
                    workspace,
                    HMAC,
                    website_id,
                ),
            )
        except psycopg.errors.UniqueViolation:
            raise InvalidPayload(
                f"domain {domain} is a website of this account already", path="domain"
            ) from None
        created = await _fetch(conn, source_id)
    await sources_changed(request)
    log.info("website_created website_id=%s source_id=%s account_id=%s", website_id, source_id, account_id)
    return ok(created.to_api(), status=201)


@endpoint
async def update_website(request: Request) -> Response:
    """PATCH /api/v1/websites/{id} {domain?, content_groups?, excluded_ips?}: the updated website."""
    who = await principal(request)
    website_id = uuid_param(request.path_params["id"], "id")
    body = await json_body(request)
    fields = [f for f in ("domain", "content_groups", "excluded_ips") if f in body]
    if not fields:
        raise InvalidPayload("give at least one of domain, content_groups, excluded_ips")
    changes: dict[str, Any] = {}
    if "domain" in body:
        changes["domain"] = domain_field(body)
    if "content_groups" in body:
        changes["content_groups"] = content_groups_field(body)
    if "excluded_ips" in body:
        changes["excluded_ips"] = excluded_ips_field(body)
    found = await website(request, who, website_id)
    async with database(request).connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("websites:" + found.workspace,))
        if "domain" in changes and await _domain_taken(
            conn, found.workspace, changes["domain"], found.source_id
        ):
            raise InvalidPayload(
                f"domain {changes['domain']} is a website of this account already", path="domain"
            )
        # a TinyTrail website's name is its domain; another dialect's source keeps its name
        rename = "domain" in changes and found.dialect == DIALECT
        try:
            cur = await conn.execute(
                "UPDATE sources SET settings = settings || %s, updated_at = now(),"
                " name = CASE WHEN %s THEN %s ELSE name END WHERE id = %s",
                (Jsonb(changes), rename, changes.get("domain", ""), found.source_id),
            )
        except psycopg.errors.UniqueViolation:
            raise InvalidPayload(
                f"domain {changes['domain']} is a website of this account already", path="domain"
            ) from None
        if cur.rowcount == 0:
            raise NotFound("website not found")  # deleted meanwhile
        updated = await _fetch(conn, found.source_id)
    await sources_changed(request)
    log.info("website_updated website_id=%s fields=%s", found.id, ",".join(sorted(changes)))
    return ok(updated.to_api())


@endpoint
async def delete_website(request: Request) -> Response:
    """DELETE /api/v1/websites/{id}: the website and its data."""
    who = await principal(request)
    website_id = uuid_param(request.path_params["id"], "id")
    found = await website(request, who, website_id)
    async with database(request).connection() as conn, conn.transaction():
        cur = await conn.execute("DELETE FROM sources WHERE id = %s", (found.source_id,))
        if cur.rowcount == 0:
            raise NotFound("website not found")  # deleted meanwhile
        await queue_delete(request, [found.source_id], None, f"website {found.id}")
    await sources_changed(request)
    log.info("website_deleted website_id=%s source_id=%s", found.id, found.source_id)
    return ok(found.to_api())


PATH = "/api/v1/websites"
ROUTES: list[BaseRoute] = [
    Route(PATH, list_websites, methods=["GET"]),
    Route(PATH, create_website, methods=["POST"]),
    Route(PATH + "/{id}", update_website, methods=["PATCH"]),
    Route(PATH + "/{id}", delete_website, methods=["DELETE"]),
]
