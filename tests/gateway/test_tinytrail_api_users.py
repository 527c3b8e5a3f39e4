"""``/api/v1/users`` (admin): a user is an API key, shown at creation and by ``GET .../api-key``, stored
as a digest and a Fernet token (never in clear), and working at once."""

from __future__ import annotations

import logging
import uuid

import msgspec
from starlette.testclient import TestClient

from tests.helpers import assert_document_shape, new_account
from trackgate.gateway.app import create_app
from trackgate.schemas.websites import DEFAULT_ACCOUNT_ID


def make_user(api, admin_headers, **body) -> dict:
    answer = api.post(
        "/api/v1/users",
        json={"account_id": DEFAULT_ACCOUNT_ID, "role": "user", **body},
        headers=admin_headers,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["data"]


def test_create_shows_the_key_once_and_stores_it_encrypted(api, admin_headers, db, caplog):
    caplog.set_level(logging.DEBUG)
    created = api.post(
        "/api/v1/users",
        json={"account_id": DEFAULT_ACCOUNT_ID, "role": "user", "email": "user@example.com"},
        headers=admin_headers,
    )
    assert created.status_code == 201
    assert_document_shape("users_create", created.json())
    user = created.json()["data"]
    assert (user["accountId"], user["email"], user["role"]) == (
        DEFAULT_ACCOUNT_ID,
        "user@example.com",
        "user",
    )
    key = user["apiKey"]
    assert key.startswith("tt_") and len(key) == 46
    hashed, encrypted = db.execute(
        "SELECT key_hash, key_encrypted FROM api_keys WHERE id = %s", (user["id"],)
    ).fetchone()
    assert key.encode() not in bytes(hashed) and key not in encrypted
    assert key not in caplog.text
    # the key works at once, as the user it is
    assert api.get("/api/v1/websites", headers={"X-API-KEY": key}).status_code == 200
    assert api.get("/api/v1/users", headers={"X-API-KEY": key}).status_code == 403

    listed = api.get("/api/v1/users", headers=admin_headers)
    assert_document_shape(
        "users_list", {**listed.json(), "data": [u for u in listed.json()["data"] if u["email"]]}
    )
    mine = [u for u in listed.json()["data"] if u["id"] == user["id"]]
    assert mine == [{k: v for k, v in user.items() if k != "apiKey"}]  # no key in the list

    shown = api.get(f"/api/v1/users/{user['id']}/api-key", headers=admin_headers)
    assert shown.status_code == 200
    assert_document_shape("users_api_key", shown.json())
    assert shown.json()["data"] == {"id": user["id"], "apiKey": key}


def test_an_admin_user_of_an_account(api, admin_headers, db):
    admin = make_user(api, admin_headers, role="admin")
    assert api.get("/api/v1/accounts", headers={"X-API-KEY": admin["apiKey"]}).status_code == 200


def test_create_refuses_bad_fields_and_stores_nothing(api, admin_headers, db):
    before = db.execute("SELECT count(*) FROM api_keys").fetchone()[0]
    cases = [
        ({"role": "user"}, "account_id"),
        ({"account_id": DEFAULT_ACCOUNT_ID}, "role"),
        ({"account_id": DEFAULT_ACCOUNT_ID, "role": "owner"}, "role"),
        ({"account_id": "nope", "role": "user"}, "account_id"),
        ({"account_id": 7, "role": "user"}, "account_id"),
        ({"account_id": str(uuid.uuid4()), "role": "user"}, "account_id"),  # no such account
        ({"account_id": DEFAULT_ACCOUNT_ID, "role": "user", "email": 5}, "email"),
    ]
    for body, field in cases:
        answer = api.post("/api/v1/users", json=body, headers=admin_headers)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == "INVALID_PAYLOAD"
        assert field in answer.json()["error"]["message"], (body, answer.json())
    assert db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == before


def test_without_a_secret_key_no_user_is_made(api_settings, admin_headers, db):
    keyless = msgspec.structs.replace(api_settings, secret_key=None)
    with TestClient(create_app(keyless)) as client:
        answer = client.post(
            "/api/v1/users", json={"account_id": DEFAULT_ACCOUNT_ID, "role": "user"}, headers=admin_headers
        )
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "TRACKGATE_SECRET_KEY" in answer.json()["error"]["message"]
    assert db.execute("SELECT count(*) FROM api_keys WHERE role = 'user'").fetchone()[0] == 0


def test_get_key_and_delete_refuse_bad_and_unknown_ids(api, admin_headers):
    for path in ("/api/v1/users/nope/api-key", "/api/v1/users/nope"):
        method = "GET" if path.endswith("api-key") else "DELETE"
        bad = api.request(method, path, headers=admin_headers)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_PAYLOAD"
        unknown = api.request(method, path.replace("nope", str(uuid.uuid4())), headers=admin_headers)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"


def test_delete_answers_the_user_and_its_key_stops_at_once(api, admin_headers, db):
    other = new_account(db, "Other")
    user = make_user(api, admin_headers, account_id=other, email="gone@example.com")
    assert api.get("/api/v1/websites", headers={"X-API-KEY": user["apiKey"]}).status_code == 200  # cached
    deleted = api.delete(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert deleted.status_code == 200
    assert_document_shape("users_delete", deleted.json())
    assert deleted.json()["data"] == {k: v for k, v in user.items() if k != "apiKey"}
    assert api.get("/api/v1/websites", headers={"X-API-KEY": user["apiKey"]}).status_code == 401
    assert db.execute("SELECT count(*) FROM api_keys WHERE id = %s", (user["id"],)).fetchone()[0] == 0
    assert api.delete(f"/api/v1/users/{user['id']}", headers=admin_headers).status_code == 404
