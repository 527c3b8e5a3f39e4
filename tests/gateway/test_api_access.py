"""The TinyTrail API's access layer (gateway/api_access.py) on a real app, PostgreSQL and Redis: keys,
roles, the per-key rate limit shared in Redis, and the website scope."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from tests.helpers import SECRET_KEY, new_account
from trackgate import api_keys
from trackgate.gateway import api_access
from trackgate.gateway.app import create_app
from trackgate.gateway.errors import Forbidden, InvalidPayload, NotFound, RateLimited, Unauthorized
from trackgate.schemas.websites import DEFAULT_ACCOUNT_ID
from trackgate.sources import add_source


@pytest.fixture
def keyed(settings):
    return msgspec.structs.replace(settings, secret_key=SECRET_KEY, api_rate_limit=0)


@pytest.fixture
def app_client(keyed) -> Iterator[TestClient]:
    with TestClient(create_app(keyed)) as client:
        yield client


def call(client: TestClient, fn: Callable[[Request], Awaitable[Any]], key: str | None = None) -> Any:
    """``fn(request)`` in the app's event loop, on a request that carries ``key`` as X-API-KEY."""
    headers = [(b"x-api-key", key.encode())] if key else []
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers, "app": client.app.app}  # type: ignore[attr-defined]
    return client.portal.call(fn, Request(scope))  # type: ignore[union-attr]


def test_no_key_an_unknown_key_and_a_user_on_an_admin_route(app_client, keyed, db):
    admin = api_keys.create_key(keyed, keyed.database_url).key
    user = api_keys.create_key(keyed, keyed.database_url, role="user", account_id=DEFAULT_ACCOUNT_ID).key
    for key in (None, "tt_" + secrets.token_urlsafe(32), "no-prefix"):
        with pytest.raises(Unauthorized):
            call(app_client, api_access.principal, key)
    assert call(app_client, api_access.principal, admin).role == "admin"
    who = call(app_client, api_access.principal, user)
    assert (who.role, who.account_id) == ("user", DEFAULT_ACCOUNT_ID)

    async def admin_only(request: Request):
        return await api_access.principal(request, admin=True)

    with pytest.raises(Forbidden):
        call(app_client, admin_only, user)
    assert call(app_client, admin_only, admin).role == "admin"


def test_the_rate_limit_counts_per_key_in_redis(keyed, db, rdb):
    limited = msgspec.structs.replace(keyed, api_rate_limit=3)
    first = api_keys.create_key(limited, limited.database_url).key
    second = api_keys.create_key(limited, limited.database_url).key
    with TestClient(create_app(limited)) as one, TestClient(create_app(limited)) as other:
        for client in (one, other, one):  # two apps (two gateway processes): one count
            call(client, api_access.principal, first)
        with pytest.raises(RateLimited) as refused:
            call(other, api_access.principal, first)
        assert 55 <= int(refused.value.headers["Retry-After"]) <= 60
        assert call(one, api_access.principal, second).role == "admin"  # another key, its own window
    counters = [k.decode() for k in rdb.keys(api_access.RATE_KEY + "*")]
    assert len(counters) == 2  # counted by the key's id, never the key itself
    assert not any(first in c or second in c for c in counters)


def test_a_website_is_found_by_its_uuid_in_its_own_account_only(app_client, keyed, db):
    admin = api_keys.create_key(keyed, keyed.database_url).key
    other_account = new_account(db, "Other")
    mine = api_keys.create_key(keyed, keyed.database_url, role="user", account_id=DEFAULT_ACCOUNT_ID).key
    theirs = api_keys.create_key(keyed, keyed.database_url, role="user", account_id=other_account).key
    website_id = str(uuid.uuid4())
    source, _ = add_source(
        keyed.database_url,
        "tinytrail",
        "example.com",
        website_id,
        {"domain": "example.com", "excluded_ips": []},
    )
    segment, _ = add_source(keyed.database_url, "segment", "web")

    def lookup(key: str, value: str | None):
        async def run(request: Request):
            return await api_access.website(request, await api_access.principal(request), value)

        return call(app_client, run, key)

    found = lookup(mine, website_id.upper())
    assert (found.id, found.source_id, found.account_id, found.domain, found.dialect) == (
        website_id,
        source.id,
        DEFAULT_ACCOUNT_ID,
        "example.com",
        "tinytrail",
    )
    assert lookup(admin, website_id).source_id == source.id
    with pytest.raises(NotFound):
        lookup(theirs, website_id)  # another account's: as if it did not exist
    with pytest.raises(NotFound):
        lookup(mine, str(uuid.uuid4()))
    for bad in (None, "", "not-a-uuid", "550e8400-e29b-41d4-a716"):
        with pytest.raises(InvalidPayload) as refused:
            lookup(mine, bad)
        assert refused.value.path == "website_id"
    other_id = db.execute("SELECT website_id::text FROM sources WHERE id = %s", (segment.id,)).fetchone()[0]
    other = lookup(mine, other_id)  # a source of another dialect is a website too, domain = its name
    assert (other.source_id, other.dialect, other.domain) == (segment.id, "segment", "web")


def test_over_the_limit_the_api_answers_429_with_retry_after(api_settings, db):
    limited = msgspec.structs.replace(api_settings, api_rate_limit=2)
    key = {"X-API-KEY": api_keys.create_key(limited, limited.database_url).key}
    with TestClient(create_app(limited)) as client:
        assert [client.get("/api/v1/websites", headers=key).status_code for _ in range(2)] == [200, 200]
        refused = client.get("/api/v1/accounts", headers=key)  # every protected route shares the count
        assert refused.status_code == 429
        assert refused.json() == {
            "status": "error",
            "error": {"code": "RATE_LIMITED", "message": "rate limit exceeded: 2 requests per 60 seconds"},
        }
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert client.get("/api/v1/websites").status_code == 401  # no key: not counted, not limited


# --- paths and methods the API does not serve: its envelope too (gateway/api_fallback.py) -----------


@pytest.mark.parametrize(
    ("method", "path", "code", "allow"),
    [
        ("GET", "/api/v1/nothing", "NOT_FOUND", None),
        ("GET", "/api/v1/reports/planets", "NOT_FOUND", None),
        ("GET", "/api/v1/users//api-key", "NOT_FOUND", None),
        ("GET", "/api/v1/users/", "NOT_FOUND", None),  # not a redirect to /api/v1/users
        ("DELETE", "/api/v1/websites/", "NOT_FOUND", None),
        ("GET", "/api/v1", "NOT_FOUND", None),
        ("GET", "/api/v1/", "NOT_FOUND", None),
        ("GET", "/tinytrail/api/v1/reports/summary", "NOT_FOUND", None),
        ("PUT", "/api/v1/websites", "METHOD_NOT_ALLOWED", "GET, HEAD, POST"),
        ("POST", "/api/v1/reports/summary", "METHOD_NOT_ALLOWED", "GET, HEAD"),
        ("GET", "/api/v1/users/{id}", "METHOD_NOT_ALLOWED", "DELETE"),
        ("GET", "/api/v1/collect", "METHOD_NOT_ALLOWED", "OPTIONS, POST"),
        ("DELETE", "/tinytrail/api/v1/collect", "METHOD_NOT_ALLOWED", "OPTIONS, POST"),
    ],
)
def test_an_unknown_path_or_method_under_api_v1_is_answered_in_the_envelope(
    api, admin_headers, method, path, code, allow
):
    path = path.replace("{id}", str(uuid.uuid4()))
    r = api.request(method, path, headers=admin_headers, follow_redirects=False)
    status = 404 if code == "NOT_FOUND" else 405
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == "error" and body["error"]["code"] == code, body
    assert set(body) == {"status", "error"} and set(body["error"]) == {"code", "message"}
    assert r.headers.get("allow") == allow


def test_other_paths_and_collect_keep_their_answers(api):
    r = api.get("/no/such/path")
    assert (r.status_code, r.text) == (404, "Not Found")  # Starlette's own, as before, outside /api/v1
    assert api.get("/debugger/", follow_redirects=False).status_code == 307  # outside /api/v1: as before
    r = api.post("/api/v1/collect", json={"website_id": "not-a-uuid"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_PAYLOAD"
    assert api.options("/api/v1/collect").status_code == 204
