"""The Bucket/Reflag surface over HTTP: paths, keys, bodies, every documented error, flags, CORS.

Every test goes through the real app (TestClient, lifespan included) onto the real Redis and, where it
stores, through a real RQ worker (``drain``) into the real PostgreSQL. Every refusal is checked to store
nothing.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.helpers import live_gateway, queued_jobs, stored
from trackgate.adapters.bucket import MAX_BULK_BYTES, MAX_BULK_ITEMS, MAX_CALL_BYTES
from trackgate.gateway import bucket
from trackgate.gateway.app import create_app
from trackgate.sources import add_source

OK = b'{"success":true}'

BODIES: dict[str, dict[str, Any]] = {
    "user": {"userId": "u1", "attributes": {"name": "Ada"}},
    "company": {"companyId": "c1", "userId": "u1", "attributes": {"name": "Acme"}},
    "event": {"event": "Sent message", "userId": "u1", "companyId": "c1", "attributes": {"n": 1}},
    "feedback": {"featureId": "f1", "userId": "u1", "score": 5},
}
TYPES = {"user": "identify", "company": "group", "event": "track", "feedback": "feedback"}


@pytest.fixture
def keys(settings) -> dict[str, str]:
    created = bucket.new_source(None, {})
    add_source(settings.database_url, "bucket", "web", created["key"], {}, created["extra_keys"])
    return {"publishable": created["key"], "secret": created["extra_keys"][bucket.SECRET]}


@pytest.fixture
def client(settings, keys) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_refused(r, status: int, code: str, path: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["success"] is False
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["error"].get("path") == path, body
    return body


def assert_nothing_kept(rdb, db, drain, *, run_worker: bool = False) -> None:
    """Nothing was queued (the gateway answers only after the events are in Redis, so an empty queue
    after the answer means nothing will ever be stored) and nothing is in PostgreSQL."""
    assert queued_jobs(rdb) == 0
    if run_worker:
        drain()
    assert stored(db) == []


# --- paths and keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/bucket"])
@pytest.mark.parametrize("call", sorted(BODIES))
def test_tracking_api_key_in_the_path(client, keys, drain, db, call, prefix):
    r = client.post(f"{prefix}/{keys['publishable']}/{call}", json=BODIES[call])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    if call == "feedback":
        assert r.json() == {"success": True, "feedbackId": r.json()["feedbackId"]}
    else:
        assert r.content == OK
    drain()
    (row,) = stored(db)
    assert (row["type"], row["dialect"], row["dialect_version"]) == (TYPES[call], "bucket", "tracking")
    assert row["user_id"] == "u1"


@pytest.mark.parametrize("prefix", ["", "/bucket"])
@pytest.mark.parametrize("which", ["secret", "publishable"])
@pytest.mark.parametrize("call", sorted(BODIES))
def test_reflag_api_bearer_key(client, keys, drain, db, call, which, prefix):
    r = client.post(f"{prefix}/{call}", json=BODIES[call], headers=auth(keys[which]))
    assert r.status_code == 200, r.text
    drain()
    (row,) = stored(db)
    assert row["type"] == TYPES[call]


def test_publishable_key_in_the_query(client, keys, drain, db):
    """Reflag's docs: ``POST /user?publishableKey=...``."""
    r = client.post(f"/bulk?publishableKey={keys['publishable']}", json=[{"type": "user", "userId": "u1"}])
    assert r.status_code == 200, r.text
    drain()
    assert [row["type"] for row in stored(db)] == ["identify"]


@pytest.mark.parametrize("prefix", ["", "/bucket"])
def test_bulk_maps_every_item_type(client, keys, drain, db, prefix):
    items = [
        {"type": "user", "userId": 1, "attributes": {"name": "Ada"}, "context": {"active": False}},
        {"type": "company", "companyId": 2, "userId": 1, "attributes": {"plan": "pro"}},
        {"type": "event", "event": "Clicked", "userId": 1, "companyId": 2, "attributes": {"x": 1}},
        {
            "type": "feature-flag-event",
            "action": "check",
            "key": "huddle",
            "targetingVersion": 3,
            "evalContext": {"user": {"id": 1}, "company": {"id": "2"}},
            "evalResult": True,
        },
        {
            "type": "prompt-event",
            "action": "shown",
            "featureId": "f1",
            "promptId": "p1",
            "userId": 1,
            "promptedQuestion": "How do you like it?",
        },
        {"type": "feedback", "featureId": "f1", "userId": 1, "comment": "great"},
    ]
    r = client.post(f"{prefix}/bulk", json=items, headers=auth(keys["secret"]))
    assert r.status_code == 200, r.text
    assert r.content == OK
    drain()
    rows = stored(db)
    assert [(row["type"], row["name"]) for row in rows] == [
        ("identify", None),
        ("group", None),
        ("track", "Clicked"),
        ("track", "feature-flag-event"),
        ("track", "prompt-event"),
        ("feedback", None),
    ]
    assert all(row["dialect_version"] == "bulk" for row in rows)
    assert all(row["user_id"] == "1" for row in rows)
    assert [row["group_id"] for row in rows] == [None, "2", "2", "2", None, None]
    assert rows[0]["context"]["active"] is False and "active" not in rows[1]["context"]
    assert rows[3]["properties"] == {k: v for k, v in items[3].items() if k != "type"}
    assert rows[4]["properties"] == {
        "action": "shown",
        "featureId": "f1",
        "promptId": "p1",
        "promptedQuestion": "How do you like it?",
    }
    assert rows[5]["properties"] == {"feature_id": "f1", "comment": "great"}
    assert [row["raw"] for row in rows] == items


def test_unknown_bulk_item_type_is_kept_flagged(client, keys, drain, db):
    items = [
        {"type": "user", "userId": "u1"},
        {"type": "flag-opt-in", "userId": "u1", "companyId": "c1", "key": "huddle", "optedIn": True},
    ]
    r = client.post("/bulk", json=items, headers=auth(keys["secret"]))
    assert r.status_code == 200, r.text
    drain()
    _, row = stored(db)
    assert (row["type"], row["name"], row["user_id"], row["group_id"]) == ("track", "flag-opt-in", "u1", "c1")
    assert row["properties"] == {"userId": "u1", "companyId": "c1", "key": "huddle", "optedIn": True}
    assert row["enrichment"]["unknown_type"] is True  # the adapter's flag, beside the workers' enrichment


@pytest.mark.parametrize("path", ["/feedback/prompt-events", "/bucket/feedback/prompt-events", "KEY"])
def test_prompt_events_path(client, keys, drain, db, path):
    path = f"/{keys['publishable']}/feedback/prompt-events" if path == "KEY" else path
    body = {"action": "received", "featureId": "f1", "promptId": "p1", "userId": "u1"}
    r = client.post(path, json=body, headers=auth(keys["publishable"]))
    assert r.status_code == 200, r.text
    drain()
    (row,) = stored(db)
    assert (row["type"], row["name"], row["user_id"]) == ("track", "prompt-event", "u1")


def test_features_events_path(client, keys, drain, db):
    """Reflag's documented ``POST /features/events`` (a flag check event, one per request)."""
    body = {"action": "evaluate", "key": "f1", "evalContext": {"user": {"id": "u1"}}, "evalResult": False}
    r = client.post("/features/events", json=body, headers=auth(keys["publishable"]))
    assert r.status_code == 200, r.text
    drain()
    (row,) = stored(db)
    assert (row["name"], row["user_id"], row["group_id"]) == ("feature-flag-event", "u1", None)


def test_numbers_as_ids_are_stored_as_strings(client, keys, drain, db):
    r = client.post(
        f"/{keys['publishable']}/company",
        content=b'{"companyId": 101112231415, "userId": 1234567890, "attributes": {"n": 1.0}}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    drain()
    (row,) = stored(db)
    assert (row["group_id"], row["user_id"]) == ("101112231415", "1234567890")


def test_timestamp_context_and_library(client, keys, drain, db):
    body = {**BODIES["event"], "timestamp": "2024-03-01T10:00:00Z", "context": {"active": False, "x": 1}}
    headers = {"bucket-sdk-version": "browser-sdk/3.3.3", "User-Agent": "Mozilla/5.0"}
    r = client.post(f"/{keys['publishable']}/event", json=body, headers=headers)
    assert r.status_code == 200, r.text
    drain()
    (row,) = stored(db)
    assert row["timestamp"] == datetime(2024, 3, 1, 10, tzinfo=UTC) == row["original_timestamp"]
    assert row["context"]["active"] is False
    assert row["context"]["extra"] == {"x": 1}
    assert row["context"]["library"] == {"name": "@bucketco/browser-sdk", "version": "3.3.3"}
    assert row["context"]["user_agent"] == "Mozilla/5.0"


def test_without_timestamp_it_happened_when_received(client, keys, drain, db):
    r = client.post(f"/{keys['publishable']}/user", json={"userId": "u1"})
    assert r.status_code == 200
    drain()
    (row,) = stored(db)
    assert row["timestamp"] == row["received_at"] and row["original_timestamp"] is None
    assert row["traits"] == {}


def test_feedback_reply_echoes_the_clients_feedback_id(client, keys, drain, db):
    body = {**BODIES["feedback"], "feedbackId": "fb-1", "comment": "more", "source": "widget"}
    r = client.post(f"/{keys['publishable']}/feedback", json=body)
    assert r.json() == {"success": True, "feedbackId": "fb-1"}
    drain()
    (row,) = stored(db)
    assert row["properties"] == {
        "feature_id": "f1",
        "score": 5,
        "comment": "more",
        "feedbackId": "fb-1",
        "source": "widget",
    }


def test_feedback_by_flag_key(client, keys, drain, db):
    """Reflag's docs and browser SDK name the feature by its flag ``key``."""
    body = {"key": "flag_key", "userId": 1234567890, "companyId": 101112231415, "score": 4, "comment": "ok"}
    r = client.post("/feedback", json=body, headers=auth(keys["publishable"]))
    assert r.status_code == 200, r.text
    drain()
    (row,) = stored(db)
    assert row["properties"] == {"flag_key": "flag_key", "score": 4, "comment": "ok"}
    assert row["group_id"] == "101112231415"


# --- bad keys: 403, nothing stored --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/nope/event", {}, "invalid_credentials"),
        ("/bucket/nope/event", {}, "invalid_credentials"),
        ("/event", {"Authorization": "Bearer nope"}, "invalid_credentials"),
        ("/bulk", {"Authorization": "Bearer nope"}, "invalid_credentials"),
        ("/bulk", {}, "missing_credentials"),
        ("/bulk", {"Authorization": "Basic dTE6"}, "missing_credentials"),
        ("/bulk?publishableKey=nope", {}, "invalid_credentials"),
        ("SECRET_IN_QUERY", {}, "invalid_credentials"),
        ("SECRET_IN_PATH", {}, "invalid_credentials"),
    ],
)
def test_bad_key_is_403_and_stores_nothing(client, keys, rdb, db, drain, path, headers, code):
    if path == "SECRET_IN_QUERY":  # secret keys are never accepted in a URL
        path = f"/bulk?publishableKey={keys['secret']}"
    elif path == "SECRET_IN_PATH":
        path = f"/{keys['secret']}/event"
    body = BODIES["event"] if path.endswith("event") else [{"type": "event", **BODIES["event"]}]
    r = client.post(path, json=body, headers=headers)
    assert_refused(r, 403, code)
    assert_nothing_kept(rdb, db, drain, run_worker=code == "missing_credentials")


def test_bad_key_is_checked_before_the_body(client, keys, rdb, db, drain):
    r = client.post("/nope/event", content=b"not json", headers={"Content-Type": "application/json"})
    assert_refused(r, 403, "invalid_credentials")
    assert_nothing_kept(rdb, db, drain)


# --- bad requests: 400 that says what is wrong, nothing stored -------------------------------------------

ERRORS = [
    # (call, body, code, path) -- the seed's required fields and types
    ("user", {"attributes": {"a": 1}}, "missing_user_id", "userId"),
    ("user", {"userId": ""}, "missing_user_id", "userId"),
    ("user", {"userId": True}, "invalid_field_type", "userId"),
    ("user", {"userId": {"id": 1}}, "invalid_field_type", "userId"),
    ("user", {"userId": "u1", "attributes": ["a"]}, "invalid_field_type", "attributes"),
    ("user", {"userId": "u1", "context": "active"}, "invalid_field_type", "context"),
    ("user", {"userId": "u1", "context": {"active": "false"}}, "invalid_field_type", "context.active"),
    ("user", {"userId": "u1", "timestamp": "yesterday"}, "invalid_timestamp", "timestamp"),
    ("company", {"userId": "u1"}, "missing_company_id", "companyId"),
    ("company", {"companyId": "c1", "userId": [1]}, "invalid_field_type", "userId"),
    ("event", {"userId": "u1"}, "missing_event", "event"),
    ("event", {"event": 42, "userId": "u1"}, "invalid_field_type", "event"),
    ("event", {"event": "e"}, "missing_user_id", "userId"),
    ("event", {"event": "e", "userId": "u1", "attributes": "x"}, "invalid_field_type", "attributes"),
    ("feedback", {"userId": "u1", "score": 3}, "missing_feature_id", "featureId"),
    ("feedback", {"featureId": "f1", "score": 3}, "missing_user_id", "userId"),
    ("feedback", {"featureId": "f1", "userId": "u1"}, "missing_score_or_comment", "score"),
    ("feedback", {"featureId": "f1", "userId": "u1", "comment": ""}, "missing_score_or_comment", "score"),
    ("feedback", {"featureId": "f1", "userId": "u1", "score": 0}, "invalid_score", "score"),
    ("feedback", {"featureId": "f1", "userId": "u1", "score": 6}, "invalid_score", "score"),
    ("feedback", {"featureId": "f1", "userId": "u1", "score": "4"}, "invalid_score", "score"),
    ("feedback", {"featureId": "f1", "userId": "u1", "score": True}, "invalid_score", "score"),
    ("feedback", {"featureId": "f1", "userId": "u1", "comment": 5}, "invalid_field_type", "comment"),
]


@pytest.mark.parametrize(("call", "body", "code", "path"), ERRORS, ids=[f"{e[0]}-{e[2]}" for e in ERRORS])
def test_documented_errors_are_400_and_store_nothing(client, keys, rdb, db, drain, call, body, code, path):
    r = client.post(f"/{keys['publishable']}/{call}", json=body)
    error = assert_refused(r, 400, code, path)["error"]
    assert path.split(".")[0] in error["message"]
    # the same item in a bulk: refused with its index
    r = client.post(
        "/bulk", json=[{"type": "user", "userId": "ok"}, {"type": call, **body}], headers=auth(keys["secret"])
    )
    error = assert_refused(r, 400, code, f"[1].{path}")["error"]
    assert error["message"].startswith("[1].")
    assert_nothing_kept(rdb, db, drain)


@pytest.mark.parametrize(
    ("path", "content", "code", "error_path"),
    [
        ("/KEY/event", b'{"event": "e", "userId": ', "invalid_json", None),
        ("/KEY/event", b"\xff\xfe", "invalid_json", None),
        ("/KEY/event", b'["event"]', "invalid_body", None),
        ("/KEY/event", b"", "invalid_json", None),
        ("/bulk", b'{"type": "user", "userId": "u1"}', "invalid_body", None),
        ("/bulk", b"[]", "empty_bulk", None),
        ("/bulk", b'[{"type": "user", "userId": "u1"}, 7]', "invalid_item", "[1]"),
        ("/bulk", b'[{"userId": "u1"}]', "missing_type", "[0].type"),
        ("/bulk", b'[{"type": 3, "userId": "u1"}]', "invalid_type", "[0].type"),
        (
            "/bulk",
            b'[{"type": "prompt-event", "userId": "u1", "action": "shown"}]',
            "missing_prompt_id",
            "[0].promptId",
        ),
        ("/bulk", b'[{"type": "feature-flag-event", "action": "check"}]', "missing_key", "[0].key"),
        ("/bulk", b'[{"type": "feature-flag-event", "key": "k"}]', "missing_action", "[0].action"),
    ],
)
def test_malformed_bodies(client, keys, rdb, db, drain, path, content, code, error_path):
    path = path.replace("KEY", keys["publishable"])
    r = client.post(
        path, content=content, headers={"Content-Type": "application/json", **auth(keys["secret"])}
    )
    assert_refused(r, 400, code, error_path)
    assert_nothing_kept(rdb, db, drain)


def test_one_bad_item_refuses_the_whole_bulk(client, keys, rdb, db, drain):
    items = [{"type": "user", "userId": f"u{i}"} for i in range(5)]
    items[3] = {"type": "event", "userId": "u3"}
    r = client.post("/bulk", json=items, headers=auth(keys["secret"]))
    assert_refused(r, 400, "missing_event", "[3].event")
    assert_nothing_kept(rdb, db, drain, run_worker=True)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_json_only(client, keys, rdb, db, drain, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(f"/{keys['publishable']}/user", content=b'{"userId":"u1"}', headers=headers)
    body = assert_refused(r, 400, "invalid_content_type")
    assert "application/json" in body["error"]["message"]
    assert_nothing_kept(rdb, db, drain)


def test_json_with_charset_is_json(client, keys, drain, db):
    headers = {"Content-Type": "application/json; charset=utf-8"}
    r = client.post(f"/{keys['publishable']}/user", content=b'{"userId":"u1"}', headers=headers)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("path", "size", "code"),
    [
        ("/KEY/event", MAX_CALL_BYTES + 1, "request_too_large"),
        ("/bulk", MAX_BULK_BYTES + 1, "request_too_large"),
    ],
)
def test_over_the_size_limit(client, keys, rdb, db, drain, path, size, code):
    path = path.replace("KEY", keys["publishable"])
    body = b'{"pad":"' + b"x" * size + b'"}'
    r = client.post(path, content=body, headers={"Content-Type": "application/json", **auth(keys["secret"])})
    assert_refused(r, 400, code)
    assert_nothing_kept(rdb, db, drain)


def test_too_many_bulk_items(client, keys, rdb, db, drain):
    items = [{"type": "user", "userId": "u"}] * (MAX_BULK_ITEMS + 1)
    r = client.post("/bulk", json=items, headers=auth(keys["secret"]))
    assert_refused(r, 400, "too_many_items")
    assert_nothing_kept(rdb, db, drain)


# --- flags and prompting: answered, never stored --------------------------------------------------------

FEATURES = {"success": True, "features": [], "flagStateVersion": 0}
EVALUATED = {"success": True, "features": {}}


@pytest.mark.parametrize("prefix", ["", "/bucket"])
def test_get_features_needs_the_secret_key(client, keys, prefix):
    r = client.get(f"{prefix}/features", headers=auth(keys["secret"]))
    assert r.status_code == 200 and r.json() == FEATURES
    assert_refused(
        client.get(f"{prefix}/features", headers=auth(keys["publishable"])), 403, "secret_key_required"
    )
    assert_refused(client.get(f"{prefix}/features", headers=auth("nope")), 403, "invalid_credentials")
    assert_refused(client.get(f"{prefix}/features"), 403, "missing_credentials")
    q = f"{prefix}/features?publishableKey={keys['publishable']}"
    assert_refused(client.get(q), 403, "invalid_credentials")


@pytest.mark.parametrize("prefix", ["", "/bucket"])
@pytest.mark.parametrize("endpoint", ["evaluated", "enabled"])
def test_get_evaluated_flags(client, keys, prefix, endpoint):
    path = f"{prefix}/features/{endpoint}?context.user.id=u1"
    for headers, query in (
        (auth(keys["secret"]), ""),
        (auth(keys["publishable"]), ""),
        ({}, f"&publishableKey={keys['publishable']}&reflag-sdk-version=browser-sdk/1.6.1"),
    ):
        r = client.get(path + query, headers=headers)
        assert r.status_code == 200 and r.json() == EVALUATED, r.text
    assert_refused(client.get(path, headers=auth("nope")), 403, "invalid_credentials")
    assert_refused(client.get(path + "&publishableKey=nope"), 403, "invalid_credentials")
    assert_refused(client.get(path), 403, "missing_credentials")


@pytest.mark.parametrize("prefix", ["", "/bucket"])
def test_live_channel_is_204_so_the_event_source_stops(client, keys, prefix):
    path = f"{prefix}/sse/client?publishableKey={keys['publishable']}&reflag-sdk-version=browser-sdk/1.6.1"
    r = client.get(path, headers={"Origin": "https://app.example.com"})
    assert r.status_code == 204 and r.content == b""
    assert r.headers["access-control-allow-origin"] == "*"
    assert_refused(client.get(f"{prefix}/sse/client?publishableKey=nope"), 403, "invalid_credentials")
    assert_refused(client.get(f"{prefix}/sse/client"), 403, "missing_credentials")


def test_old_sdk_feature_flags(client, keys):
    r = client.get(f"/{keys['publishable']}/features/enabled?context.user.id=u1")
    assert r.status_code == 200 and r.json() == {"success": True, "flags": {}}
    assert_refused(client.get("/nope/features/enabled"), 403, "invalid_credentials")


@pytest.mark.parametrize("form", ["bearer", "bucket-prefix", "path-key", "prefixed-path-key"])
def test_prompting_init(client, keys, rdb, db, drain, form):
    path, headers = {
        "bearer": ("/feedback/prompting-init", auth(keys["publishable"])),
        "bucket-prefix": ("/bucket/feedback/prompting-init", auth(keys["secret"])),
        "path-key": (f"/{keys['publishable']}/feedback/prompting-init", {}),
        "prefixed-path-key": (f"/bucket/{keys['publishable']}/feedback/prompting-init", {}),
    }[form]
    r = client.post(path, json={"userId": "u1"}, headers=headers)
    assert r.status_code == 200 and r.content == OK
    bad = path.replace(keys["publishable"], "nope") if "path-key" in form else path
    r = client.post(bad, json={"userId": "u1"}, headers={} if "path-key" in form else auth("nope"))
    assert_refused(r, 403, "invalid_credentials")
    assert_nothing_kept(rdb, db, drain)


# --- CORS (browser SDKs) ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/bulk",
        "/event",
        "/user",
        "/feedback/prompting-init",
        "/bucket/bulk",
        "/KEY/user",
        "/features/evaluated",
    ],
)
def test_preflight(client, keys, path):
    path = path.replace("KEY", keys["publishable"])
    r = client.options(
        path,
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    # /event is OpenPanel's too: its preflight (Starlette's CORS, 200) answers for both dialects
    assert r.status_code == (200 if path == "/event" else 204), r.text
    assert r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "authorization,content-type"


def test_cors_headers_on_answers(client, keys):
    origin = {"Origin": "https://app.example.com"}
    r = client.post("/event", json=BODIES["event"], headers={**auth(keys["publishable"]), **origin})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    r = client.post("/event", json={}, headers={**auth(keys["publishable"]), **origin})
    assert r.status_code == 400 and r.headers["access-control-allow-origin"] == "*"
    r = client.get(f"/features/evaluated?publishableKey={keys['publishable']}", headers=origin)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    r = client.get("/features/evaluated?publishableKey=nope", headers=origin)
    assert r.status_code == 403 and r.headers["access-control-allow-origin"] == "*"


# --- sources add / up -------------------------------------------------------------------------


def test_new_source_keys():
    created = bucket.new_source(None, {})
    secret = created["extra_keys"]["secret"]
    assert len(secret) > 22  # @reflag/node-sdk refuses shorter ones
    assert created["show"] == {"publishable key": created["key"], "secret key": secret}
    assert bucket.new_source("trCqx4DGo1lk3Lcct5NHLjWy", {})["key"] == "trCqx4DGo1lk3Lcct5NHLjWy"
    with pytest.raises(ValueError, match="path"):
        bucket.new_source("a/b", {})
    with pytest.raises(ValueError, match="prefixed"):
        bucket.new_source("bucket", {})


def test_demo_lines_work_as_printed(settings, drain, db):
    created = bucket.new_source(None, {})
    add_source(settings.database_url, "bucket", "demo", created["key"], {}, created["extra_keys"])
    with live_gateway(settings) as base:
        lines = bucket.demo_lines(base, created)
        assert len(lines) == 2
        for line in lines:
            argv = shlex.split(line)
            assert argv[0] == "curl"
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
            assert json.loads(out) == {"success": True}
    drain()
    assert [(row["type"], row["user_id"]) for row in stored(db)] == [
        ("track", "user-1"),
        ("identify", "user-1"),
        ("group", "user-1"),
    ]


def test_segment_paths_are_not_taken_for_tracking_keys(settings, keys, write_key, drain, db):
    """``/{tracking_key}/event`` is a pattern: Segment's exact paths still win."""
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/track", json={"userId": "u1", "event": "e"}, auth=(write_key, ""))
        assert r.status_code == 200, r.text
        r = client.post(f"/{keys['publishable']}/event", json=BODIES["event"])
        assert r.status_code == 200, r.text
    drain()
    assert sorted(row["dialect"] for row in stored(db)) == ["bucket", "segment"]


def test_cli_sources_add_bucket_prints_both_keys_once(cli, database_url, db):
    from trackgate.sources import stored_digest

    result = cli("sources", "add", "bucket", "--name", "app", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    source_id = created["id"]
    (key_hash,) = db.execute("SELECT key_hash FROM sources WHERE id = %s", (source_id,)).fetchone()
    assert bytes(key_hash) == stored_digest(database_url, created["publishable_key"])
    (kind, secret_hash) = db.execute(
        "SELECT kind, key_hash FROM source_keys WHERE source_id = %s", (source_id,)
    ).fetchone()
    assert (kind, bytes(secret_hash)) == ("secret", stored_digest(database_url, created["secret_key"]))
    assert len(created["secret_key"]) > 22
    bad = cli("sources", "add", "bucket", "--name", "x", "--key", "a/b")
    assert bad.exit_code == 2 and "path" in bad.output
