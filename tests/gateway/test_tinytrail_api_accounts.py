"""``/api/v1/accounts`` (admin): list, create, delete, in the document's shapes and errors; deleting an
account takes its users' keys and websites at once and its stored data through the delete job."""

from __future__ import annotations

import re
import uuid

from tests.helpers import assert_document_shape, new_account
from trackgate import api_keys
from trackgate.schemas.websites import DEFAULT_ACCOUNT_ID
from trackgate.sources import add_source

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}


def test_create_and_list(api, admin_headers):
    created = api.post("/api/v1/accounts", json={"name": "Acme Corp"}, headers=admin_headers)
    assert created.status_code == 201
    assert_document_shape("accounts_create", created.json())
    account = created.json()["data"]
    assert account["name"] == "Acme Corp" and ISO_MS.fullmatch(account["createdAt"])
    assert str(uuid.UUID(account["id"])) == account["id"]
    listed = api.get("/api/v1/accounts", headers=admin_headers)
    assert listed.status_code == 200
    assert_document_shape("accounts_list", listed.json())
    assert [(a["id"], a["name"]) for a in listed.json()["data"]] == [
        (DEFAULT_ACCOUNT_ID, "Default"),
        (account["id"], "Acme Corp"),
    ]


def test_create_refuses_a_missing_or_bad_name_and_stores_nothing(api, admin_headers, db):
    bodies: tuple[object, ...] = (
        {},
        {"name": ""},
        {"name": "  "},
        {"name": 5},
        {"name": "x" * 256},
        [],
        "Acme",
    )
    for body in bodies:
        answer = api.post("/api/v1/accounts", json=body, headers=admin_headers)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == "INVALID_PAYLOAD"
        assert_document_shape("error", answer.json())
    broken = api.post("/api/v1/accounts", content=b'{"name":', headers=admin_headers)
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]["message"]
    assert "name" in api.post("/api/v1/accounts", json={}, headers=admin_headers).json()["error"]["message"]
    assert db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 1  # Default only


def test_delete_answers_the_account_and_takes_its_keys_and_websites(
    api, api_settings, admin_headers, db, drain
):
    acme = api.post("/api/v1/accounts", json={"name": "Acme"}, headers=admin_headers).json()["data"]
    user = api.post(
        "/api/v1/users", json={"account_id": acme["id"], "role": "user"}, headers=admin_headers
    ).json()["data"]
    site = api.post(
        "/api/v1/websites", json={"domain": "acme.example", "account_id": acme["id"]}, headers=admin_headers
    ).json()["data"]
    kept = api.post("/api/v1/websites", json={"domain": "kept.example"}, headers=admin_headers).json()["data"]
    for website in (site, kept):
        page = {"website_id": website["id"], "event_type": "page_view", "url": "https://x/", "path": "/"}
        assert api.post("/api/v1/collect", json=page, headers=BROWSER).status_code == 202
    drain()
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 2

    deleted = api.delete(f"/api/v1/accounts/{acme['id']}", headers=admin_headers)
    assert deleted.status_code == 200
    assert_document_shape("accounts_delete", deleted.json())
    assert deleted.json()["data"] == acme
    # at once: the key fails, the website is gone and collect drops its events
    assert api.get("/api/v1/websites", headers={"X-API-KEY": user["apiKey"]}).status_code == 401
    page = {"website_id": site["id"], "event_type": "page_view", "url": "https://x/", "path": "/"}
    assert api.post("/api/v1/collect", json=page, headers=BROWSER).status_code == 204
    assert db.execute("SELECT count(*) FROM api_keys WHERE account_id = %s", (acme["id"],)).fetchone()[0] == 0
    assert [w["id"] for w in api.get("/api/v1/websites", headers=admin_headers).json()["data"]] == [
        kept["id"]
    ]
    drain()  # the delete job: the other account's event stays
    kept_source = db.execute("SELECT id FROM sources WHERE website_id = %s", (kept["id"],)).fetchone()[0]
    assert db.execute("SELECT source_id FROM events").fetchall() == [(kept_source,)]
    assert api.delete(f"/api/v1/accounts/{acme['id']}", headers=admin_headers).status_code == 404


def test_delete_takes_the_accounts_profiles(api, api_settings, admin_headers, db, drain):
    account = new_account(db, "Shop")
    other = new_account(db, "Other")
    for workspace in (account, other):
        add_source(api_settings.database_url, "segment", f"web-{workspace[:4]}", workspace=workspace)
        db.execute(
            "INSERT INTO profiles (id, workspace, user_id, first_seen) VALUES (%s, %s, 'u1', now())",
            (uuid.uuid4(), workspace),
        )
    assert api.delete(f"/api/v1/accounts/{account}", headers=admin_headers).status_code == 200
    drain()
    assert db.execute("SELECT workspace FROM profiles").fetchall() == [(other,)]
    assert db.execute("SELECT count(*) FROM sources WHERE workspace = %s", (account,)).fetchone()[0] == 0


def test_delete_refuses_a_bad_id_and_an_unknown_one(api, admin_headers, db):
    bad = api.delete("/api/v1/accounts/not-a-uuid", headers=admin_headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_PAYLOAD"
    unknown = api.delete(f"/api/v1/accounts/{uuid.uuid4()}", headers=admin_headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"
    default = api.delete(f"/api/v1/accounts/{DEFAULT_ACCOUNT_ID}", headers=admin_headers)
    assert default.status_code == 400 and default.json()["error"]["code"] == "INVALID_PAYLOAD"
    assert "Default account" in default.json()["error"]["message"]
    assert db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 1


def test_accounts_need_an_admin_key(api, api_settings, db):
    user = api_keys.create_key(
        api_settings, api_settings.database_url, role="user", account_id=DEFAULT_ACCOUNT_ID
    )
    for method, path in (("GET", ""), ("POST", ""), ("DELETE", f"/{DEFAULT_ACCOUNT_ID}")):
        anonymous = api.request(method, "/api/v1/accounts" + path, json={"name": "x"})
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "UNAUTHORIZED"
        forbidden = api.request(
            method, "/api/v1/accounts" + path, json={"name": "x"}, headers={"X-API-KEY": user.key}
        )
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "FORBIDDEN"
    assert db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 1
