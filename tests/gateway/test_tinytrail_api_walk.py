"""Issue 12's walk: every protected route of the document's Endpoint Summary, called

1. anonymously: 401 ``UNAUTHORIZED``, every time;
2. with a ``user`` key of account A on account B's resources: 404 ``NOT_FOUND`` (403 ``FORBIDDEN`` on an
   admin route; the websites list answers 200 with A's websites only);

with the database (every table a call could change) and the job queue checked unchanged afterwards and
none of B's data (ids, names, domains, emails, keys) in any of those answers; then the same call by B's
owner (B's user key, or an admin key on an admin route) succeeds, so the walk fails when a route is
missing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from rq import Queue

from tests.helpers import new_account
from trackgate import api_keys
from trackgate.schemas.jobs import PERSIST_QUEUE, MsgspecJSONSerializer

BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}
ADMIN, USER = "admin", "user"


def report(name: str, query: str = "") -> Any:
    path = f"/api/v1/reports/{name}"
    return pytest.param(("GET", path + "?website_id={website}" + query, None, USER), id=f"GET {path}")


ROUTES = [
    pytest.param(("GET", "/api/v1/accounts", None, ADMIN), id="GET /api/v1/accounts"),
    pytest.param(("POST", "/api/v1/accounts", {"name": "Walked"}, ADMIN), id="POST /api/v1/accounts"),
    pytest.param(("DELETE", "/api/v1/accounts/{account}", None, ADMIN), id="DELETE /api/v1/accounts/:id"),
    pytest.param(("GET", "/api/v1/users", None, ADMIN), id="GET /api/v1/users"),
    pytest.param(
        ("POST", "/api/v1/users", {"account_id": "{account}", "role": "user"}, ADMIN), id="POST /api/v1/users"
    ),
    pytest.param(("GET", "/api/v1/users/{user}/api-key", None, ADMIN), id="GET /api/v1/users/:id/api-key"),
    pytest.param(("DELETE", "/api/v1/users/{user}", None, ADMIN), id="DELETE /api/v1/users/:id"),
    pytest.param(("GET", "/api/v1/websites", None, USER), id="GET /api/v1/websites"),
    pytest.param(
        ("POST", "/api/v1/websites", {"domain": "walk.example", "account_id": "{account}"}, USER),
        id="POST /api/v1/websites",
    ),
    pytest.param(
        ("PATCH", "/api/v1/websites/{website}", {"domain": "walked.example"}, USER),
        id="PATCH /api/v1/websites/:id",
    ),
    pytest.param(("DELETE", "/api/v1/websites/{website}", None, USER), id="DELETE /api/v1/websites/:id"),
    pytest.param(
        ("POST", "/api/v1/admin/aggregate", {"date": "{yesterday}"}, ADMIN),
        id="POST /api/v1/admin/aggregate",
    ),
    report("summary", "&compare=previous_period"),
    report("pages"),
    report("sources", "&group_by=channel"),
    report("devices"),
    report("flow"),
    report("funnel", "&steps[]=/&steps[]=/pricing"),
    report("realtime"),
    report("custom-events"),
    report("timeseries", "&metric=pageviews"),
]

SNAPSHOT = {
    "accounts": "SELECT id, name, workspace, created_at FROM accounts ORDER BY id",
    "api_keys": "SELECT id, role, account_id, email, key_hash, key_encrypted, revoked_at FROM api_keys"
    " ORDER BY id",
    "sources": "SELECT id, name, settings, enabled, workspace, website_id FROM sources ORDER BY id",
    "events": "SELECT id, source_id FROM events ORDER BY id",
    "event_dedupe": "SELECT source_id, message_id FROM event_dedupe ORDER BY 1, 2",
    "profiles": "SELECT id, workspace FROM profiles ORDER BY id",
    "report_rows": "SELECT source_id, dim, scope, day, bots, key FROM report_rows ORDER BY 1, 2, 3, 4, 5, 6",
    "report_days": "SELECT * FROM report_days ORDER BY source_id, day",
}


def snapshot(db, rdb) -> dict[str, Any]:
    state: dict[str, Any] = {name: db.execute(sql).fetchall() for name, sql in SNAPSHOT.items()}
    state["queued"] = Queue(PERSIST_QUEUE, connection=rdb, serializer=MsgspecJSONSerializer).count
    return state


@pytest.fixture
def world(api, api_settings, db, rdb, drain) -> dict[str, Any]:
    """Accounts A and B; a user key of each; B's website with a stored event and a profile; B's second
    user; an admin key."""
    a, b = new_account(db, "Alpha Account"), new_account(db, "Bravo Account")
    admin = api_keys.create_key(api_settings, api_settings.database_url)
    user_a = api_keys.create_key(api_settings, api_settings.database_url, role="user", account_id=a)
    user_b = api_keys.create_key(api_settings, api_settings.database_url, role="user", account_id=b)
    other_b = api_keys.create_key(
        api_settings, api_settings.database_url, role="user", account_id=b, email="bravo-user@bravo.example"
    )
    owner = {"X-API-KEY": user_b.key}
    website = api.post("/api/v1/websites", json={"domain": "bravo.example"}, headers=owner).json()["data"]
    mine = api.post("/api/v1/websites", json={"domain": "alpha.example"}, headers={"X-API-KEY": user_a.key})
    assert mine.status_code == 201
    event = {
        "website_id": website["id"],
        "event_type": "page_view",
        "url": "https://bravo.example/",
        "path": "/",
    }
    assert api.post("/api/v1/collect", json=event, headers=BROWSER).status_code == 202
    drain()
    db.execute(
        "INSERT INTO profiles (id, workspace, user_id, first_seen)"
        " VALUES (gen_random_uuid(), %s, 'u', now())",
        (b,),
    )
    return {
        "ids": {
            "account": b,
            "user": other_b.id,
            "website": website["id"],
            "yesterday": (dt.date.today() - dt.timedelta(days=1)).isoformat(),
        },
        "secrets": [
            b,
            "Bravo Account",
            other_b.id,
            user_b.id,
            other_b.key,
            user_b.key,
            "bravo",
            website["id"],
        ],
        "headers": {"admin": {"X-API-KEY": admin.key}, "a": {"X-API-KEY": user_a.key}, "owner": owner},
    }


def fill(template: Any, ids: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    return template


@pytest.mark.parametrize("route", ROUTES)
def test_every_protected_route_refuses_strangers_and_serves_its_owner(route, api, world, db, rdb):
    method, path_template, body_template, role = route
    ids, secrets = world["ids"], world["secrets"]
    path, body = fill(path_template, ids), fill(body_template, ids)
    before = snapshot(db, rdb)

    def call(headers: dict[str, str] | None):
        return api.request(method, path, json=body, headers=headers)

    for _ in range(2):  # every time, not just the first
        anonymous = call(None)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["status"] == "error" and anonymous.json()["error"]["code"] == "UNAUTHORIZED"
        wrong = call({"X-API-KEY": "tt_" + "x" * 43})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UNAUTHORIZED"
    stranger = call(world["headers"]["a"])
    if role == ADMIN:
        assert stranger.status_code == 403, stranger.text
        assert stranger.json()["error"]["code"] == "FORBIDDEN"
    elif method == "GET" and path == "/api/v1/websites":
        assert stranger.status_code == 200
        assert [w["domain"] for w in stranger.json()["data"]] == ["alpha.example"]
    else:
        assert stranger.status_code == 404, stranger.text
        assert stranger.json()["error"]["code"] == "NOT_FOUND"
    for answer in (anonymous, wrong, stranger):
        leaked = [secret for secret in secrets if secret.lower() in answer.text.lower()]
        assert leaked == [], answer.text
    assert snapshot(db, rdb) == before

    owner = world["headers"]["admin" if role == ADMIN else "owner"]
    served = call(owner)
    assert 200 <= served.status_code < 300, served.text
    assert served.json()["status"] == "success"
