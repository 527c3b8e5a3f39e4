"""``/api/v1/websites`` (any key; a user sees its own account): websites are sources, a new one collects
at once (every gateway reloads), other dialects' sources are websites too, and every bad input is a 400
that names its field and stores nothing."""

from __future__ import annotations

import uuid

from starlette.testclient import TestClient

from tests.helpers import assert_document_shape, new_account
from trackgate import api_keys
from trackgate.gateway.app import create_app
from trackgate.schemas.websites import DEFAULT_ACCOUNT_ID
from trackgate.sources import add_source

BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}


def page(website_id: str) -> dict:
    return {"website_id": website_id, "event_type": "page_view", "url": "https://example.com/", "path": "/"}


def user_headers(api_settings, account_id: str) -> dict[str, str]:
    key = api_keys.create_key(api_settings, api_settings.database_url, role="user", account_id=account_id).key
    return {"X-API-KEY": key}


def test_a_user_creates_a_website_that_collects_on_every_gateway_at_once(api_settings, api, db, drain):
    mine = user_headers(api_settings, DEFAULT_ACCOUNT_ID)
    with TestClient(create_app(api_settings)) as other_gateway:
        body = {
            "domain": "example.com",
            "content_groups": [{"name": "Blog", "pattern": "/blog/*"}],
            "excluded_ips": ["10.0.0.0/8", "192.0.2.7"],
        }
        created = api.post("/api/v1/websites", json=body, headers=mine)
        assert created.status_code == 201
        assert_document_shape("websites_create", created.json())
        website = created.json()["data"]
        assert website["accountId"] == DEFAULT_ACCOUNT_ID and website["domain"] == "example.com"
        assert website["contentGroups"] == [{"name": "Blog", "pattern": "/blog/*"}]
        assert website["excludedIps"] == ["10.0.0.0/8", "192.0.2.7"]
        # no refresh interval waited: the other gateway heard the change
        assert (
            other_gateway.post("/api/v1/collect", json=page(website["id"]), headers=BROWSER).status_code
            == 202
        )
    drain()
    source_id, dialect, name = db.execute(
        "SELECT id, dialect, name FROM sources WHERE website_id = %s", (website["id"],)
    ).fetchone()
    assert (dialect, name) == ("tinytrail", "example.com")
    assert db.execute("SELECT source_id FROM events").fetchall() == [(source_id,)]
    listed = api.get("/api/v1/websites", headers=mine)
    assert_document_shape("websites_list", listed.json())
    assert listed.json()["data"] == [website]


def test_other_dialects_sources_are_websites_of_their_account(api_settings, api, admin_headers, db):
    shop = new_account(db, "Shop")
    segment, _ = add_source(api_settings.database_url, "segment", "web", workspace=shop)
    openpanel, _ = add_source(
        api_settings.database_url, "openpanel", "app", settings={"domain": "app.example"}, workspace=shop
    )
    listed = api.get("/api/v1/websites", headers=user_headers(api_settings, shop)).json()["data"]
    assert_document_shape("websites_list", {"status": "success", "data": listed})
    assert [(w["domain"], w["accountId"]) for w in listed] == [("web", shop), ("app.example", shop)]
    ids = db.execute(
        "SELECT website_id::text FROM sources WHERE id = ANY(%s) ORDER BY created_at",
        ([segment.id, openpanel.id],),
    ).fetchall()
    assert [w["id"] for w in listed] == [r[0] for r in ids]
    # an admin sees every account's; the Default account's user none of Shop's
    assert len(api.get("/api/v1/websites", headers=admin_headers).json()["data"]) == 2
    assert (
        api.get("/api/v1/websites", headers=user_headers(api_settings, DEFAULT_ACCOUNT_ID)).json()["data"]
        == []
    )


def test_an_admin_places_a_website_in_an_account(api_settings, api, admin_headers, db):
    shop = new_account(db, "Shop")
    placed = api.post(
        "/api/v1/websites", json={"domain": "shop.example", "account_id": shop}, headers=admin_headers
    )
    assert placed.status_code == 201 and placed.json()["data"]["accountId"] == shop
    default = api.post("/api/v1/websites", json={"domain": "d.example"}, headers=admin_headers)
    assert default.json()["data"]["accountId"] == DEFAULT_ACCOUNT_ID  # an admin key without an account
    unknown = api.post(
        "/api/v1/websites",
        json={"domain": "x.example", "account_id": str(uuid.uuid4())},
        headers=admin_headers,
    )
    assert unknown.status_code == 400 and "account_id" in unknown.json()["error"]["message"]
    # a user naming another account: as if it did not exist
    other = api.post(
        "/api/v1/websites",
        json={"domain": "y.example", "account_id": shop},
        headers=user_headers(api_settings, DEFAULT_ACCOUNT_ID),
    )
    assert other.status_code == 404
    # the same domain in two accounts is fine; twice in one is not
    again = api.post("/api/v1/websites", json={"domain": "shop.example"}, headers=admin_headers)
    assert again.status_code == 201
    twice = api.post(
        "/api/v1/websites", json={"domain": "SHOP.example", "account_id": shop}, headers=admin_headers
    )
    assert twice.status_code == 400 and "domain" in twice.json()["error"]["message"]
    assert db.execute("SELECT count(*) FROM sources").fetchone()[0] == 3


def test_create_refuses_bad_fields_and_stores_nothing(api, admin_headers, db):
    cases = [
        ({}, "domain"),
        ({"domain": ""}, "domain"),
        ({"domain": "bad domain"}, "domain"),
        ({"domain": "a" * 256}, "domain"),
        ({"domain": 5}, "domain"),
        ({"domain": "ok.example", "content_groups": "Blog"}, "content_groups"),
        ({"domain": "ok.example", "content_groups": [{"name": "Blog"}]}, "content_groups[0].pattern"),
        ({"domain": "ok.example", "content_groups": [3]}, "content_groups[0]"),
        ({"domain": "ok.example", "excluded_ips": "10.0.0.1"}, "excluded_ips"),
        ({"domain": "ok.example", "excluded_ips": ["10.0.0.300"]}, "excluded_ips[0]"),
        ({"domain": "ok.example", "account_id": "acme"}, "account_id"),
    ]
    for body, field in cases:
        answer = api.post("/api/v1/websites", json=body, headers=admin_headers)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == "INVALID_PAYLOAD"
        assert field in answer.json()["error"]["message"], (body, answer.json())
    assert api.post("/api/v1/websites", content=b"[", headers=admin_headers).status_code == 400
    assert db.execute("SELECT count(*) FROM sources").fetchone()[0] == 0


def test_patch_changes_what_collect_uses_at_once(api_settings, api, db, drain):
    mine = user_headers(api_settings, DEFAULT_ACCOUNT_ID)
    website = api.post("/api/v1/websites", json={"domain": "example.com"}, headers=mine).json()["data"]
    patched = api.patch(
        f"/api/v1/websites/{website['id']}",
        json={"domain": "example.org", "excluded_ips": ["testclient"]},
        headers=mine,
    )
    assert patched.status_code == 400 and "excluded_ips[0]" in patched.json()["error"]["message"]
    patched = api.patch(
        f"/api/v1/websites/{website['id']}",
        json={"domain": "example.org", "excluded_ips": ["127.0.0.0/8"]},
        headers=mine,
    )
    assert patched.status_code == 200
    assert_document_shape("websites_update", patched.json())
    assert patched.json()["data"] == {**website, "domain": "example.org", "excludedIps": ["127.0.0.0/8"]}
    with TestClient(create_app(api_settings), client=("127.0.0.1", 50000)) as local:
        # the TestClient's peer is now an excluded IP: stored flagged, answered with the silent 204
        assert local.post("/api/v1/collect", json=page(website["id"]), headers=BROWSER).status_code == 204
    drain()
    assert db.execute("SELECT is_excluded FROM events").fetchall() == [(True,)]
    assert db.execute("SELECT name FROM sources").fetchall() == [("example.org",)]


def test_patch_refuses_bad_input_and_other_accounts(api_settings, api, admin_headers, db):
    theirs = new_account(db, "Theirs")
    website = api.post(
        "/api/v1/websites", json={"domain": "b.example", "account_id": theirs}, headers=admin_headers
    ).json()["data"]
    before = db.execute("SELECT settings, name FROM sources").fetchall()
    mine = user_headers(api_settings, DEFAULT_ACCOUNT_ID)
    assert (
        api.patch(f"/api/v1/websites/{website['id']}", json={"domain": "x.example"}, headers=mine).status_code
        == 404
    )
    assert (
        api.patch(
            f"/api/v1/websites/{uuid.uuid4()}", json={"domain": "x.example"}, headers=admin_headers
        ).status_code
        == 404
    )
    bad_id = api.patch("/api/v1/websites/123", json={"domain": "x.example"}, headers=admin_headers)
    assert bad_id.status_code == 400 and "id" in bad_id.json()["error"]["message"]
    empty = api.patch(f"/api/v1/websites/{website['id']}", json={}, headers=admin_headers)
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "INVALID_PAYLOAD"
    bad = api.patch(f"/api/v1/websites/{website['id']}", json={"domain": "no spaces"}, headers=admin_headers)
    assert bad.status_code == 400 and "domain" in bad.json()["error"]["message"]
    assert db.execute("SELECT settings, name FROM sources").fetchall() == before


def test_delete_answers_the_website_drops_collect_and_deletes_its_events(api_settings, api, db, drain):
    mine = user_headers(api_settings, DEFAULT_ACCOUNT_ID)
    gone = api.post("/api/v1/websites", json={"domain": "gone.example"}, headers=mine).json()["data"]
    kept = api.post("/api/v1/websites", json={"domain": "kept.example"}, headers=mine).json()["data"]
    for website in (gone, kept, gone):
        assert api.post("/api/v1/collect", json=page(website["id"]), headers=BROWSER).status_code == 202
    drain()
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 3
    deleted = api.delete(f"/api/v1/websites/{gone['id']}", headers=mine)
    assert deleted.status_code == 200
    assert_document_shape("websites_delete", deleted.json())
    assert deleted.json()["data"] == gone
    assert api.post("/api/v1/collect", json=page(gone["id"]), headers=BROWSER).status_code == 204
    assert [w["id"] for w in api.get("/api/v1/websites", headers=mine).json()["data"]] == [kept["id"]]
    drain()
    kept_source = db.execute("SELECT id FROM sources").fetchone()[0]
    assert db.execute("SELECT DISTINCT source_id FROM events").fetchall() == [(kept_source,)]
    assert (
        db.execute("SELECT count(*) FROM event_dedupe WHERE source_id <> %s", (kept_source,)).fetchone()[0]
        == 0
    )
    assert api.delete(f"/api/v1/websites/{gone['id']}", headers=mine).status_code == 404
    assert api.delete("/api/v1/websites/gone", headers=mine).status_code == 400


def test_a_body_over_64_kb_is_refused_unread(api, admin_headers, db):
    body = {"domain": "big.example", "excluded_ips": ["10.0.0.1"] * 7000}
    answer = api.post("/api/v1/websites", json=body, headers=admin_headers)
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": "INVALID_PAYLOAD",
        "message": "the body is larger than 65536 bytes",
    }
    assert db.execute("SELECT count(*) FROM sources").fetchone()[0] == 0


def test_delete_takes_the_websites_aggregates_at_once(api_settings, api, admin_headers, db, drain):
    import datetime as dt

    website = api.post("/api/v1/websites", json={"domain": "agg.example"}, headers=admin_headers).json()[
        "data"
    ]
    kept = api.post("/api/v1/websites", json={"domain": "kept.example"}, headers=admin_headers).json()["data"]
    for site in (website, kept):
        assert api.post("/api/v1/collect", json=page(site["id"]), headers=BROWSER).status_code == 202
    drain()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert api.post("/api/v1/admin/aggregate", json={"date": today}, headers=admin_headers).status_code == 200
    source_of = dict(db.execute("SELECT website_id::text, id FROM sources").fetchall())
    aggregated = "SELECT DISTINCT source_id FROM report_days ORDER BY 1"
    assert db.execute(aggregated).fetchall() == sorted((source_of[w["id"]],) for w in (website, kept))
    assert api.delete(f"/api/v1/websites/{website['id']}", headers=admin_headers).status_code == 200
    for table in ("report_days", "report_rows"):  # before any job ran
        assert db.execute(f"SELECT DISTINCT source_id FROM {table}").fetchall() == [(source_of[kept["id"]],)]


def test_include_dialect_tells_websites_of_the_same_name_apart(api_settings, api, admin_headers, db):
    """``?include=dialect`` (the dashboard's picker): each website with its source's dialect; the
    document's shape without it; any other ``include`` is a 400 naming it."""
    add_source(api_settings.database_url, "segment", "demo")
    add_source(api_settings.database_url, "openpanel", "demo", settings={})
    plain = api.get("/api/v1/websites", headers=admin_headers).json()
    assert_document_shape("websites_list", plain)
    listed = api.get("/api/v1/websites", params={"include": "dialect"}, headers=admin_headers)
    assert listed.status_code == 200
    data = listed.json()["data"]
    assert [(w["domain"], w["dialect"]) for w in data] == [("demo", "segment"), ("demo", "openpanel")]
    assert [{k: v for k, v in w.items() if k != "dialect"} for w in data] == plain["data"]
    bad = api.get("/api/v1/websites", params={"include": "planets"}, headers=admin_headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_PAYLOAD"
    assert "include" in bad.json()["error"]["message"]
