"""The Commanders Act surface over HTTP: v2 and v1, batch with partial success, token vs Bearer, 401,
400 (too large, not JSON), nothing stored on a refusal, refused items in quarantine, live gateway."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from tests.helpers import live_gateway, queued_jobs, stored
from trackgate.adapters import commandersact as ca
from trackgate.gateway import commandersact as gateway_ca
from trackgate.gateway.app import create_app
from trackgate.sources import add_source

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "commandersact"
V1_DOC = json.loads((GOLDEN / "docs_v1_event.json").read_text())["body"]
V2_DOC = json.loads((GOLDEN / "docs_v2_event.json").read_text())["body"]
BATCH_VERBATIM = json.loads((GOLDEN / "docs_v2_batch_verbatim.json").read_text())["body_text"]
BATCH_REPAIRED = json.loads((GOLDEN / "docs_v2_batch.json").read_text())["body_text"]
TS = 1639044446636


def event(event_id: str, **fields) -> dict:
    return {
        "event_name": "search",
        "search_term": "t-shirts",
        "user": {"id": "u1"},
        "context": {"event_id": event_id, "event_timestamp": TS},
        **fields,
    }


@pytest.fixture
def key(settings) -> str:
    key = "ca_" + secrets.token_hex(8)
    add_source(settings.database_url, "commandersact", "shop", key)
    return key


@pytest.fixture
def ca_source(db, key) -> str:
    return db.execute("SELECT id FROM sources WHERE dialect = 'commandersact'").fetchone()[0]


@pytest.fixture
def api(settings, key) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def quarantined(db) -> list[dict]:
    cur = db.execute("SELECT * FROM quarantine ORDER BY id")
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def assert_nothing_kept(rdb, db, drain) -> None:
    assert queued_jobs(rdb) == 0  # no job: nothing can reach events or quarantine (no drain needed)
    assert stored(db) == []
    assert quarantined(db) == []


# --- accepted ---------------------------------------------------------------------------------------


def test_v2_doc_example_with_token_is_stored(api, key, db, drain, ca_source):
    r = api.post(f"/events?tc_s=29&token={key}", json=V2_DOC)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "refused": []}
    assert r.headers["content-type"] == "application/json"
    drain()
    (row,) = stored(db)
    assert (row["source_id"], row["dialect"], row["dialect_version"]) == (ca_source, "commandersact", "v2")
    assert (row["type"], row["name"], row["message_id"]) == ("track", "search", "202110130000000000")
    assert (row["user_id"], row["anonymous_id"]) == ("12345", "67892")
    assert row["properties"] == {"search_term": "t-shirts"}
    assert row["context"]["ip"] == "102.3.4.56" and row["context"]["extra"]["tc_s"] == "29"
    assert row["raw"] == V2_DOC
    assert quarantined(db) == []


def test_v1_doc_example_with_bearer_is_stored_as_v1(api, key, db, drain):
    r = api.post("/events?tc_s=29", json=V1_DOC, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "refused": []}
    drain()
    (row,) = stored(db)
    assert row["dialect_version"] == "v1"
    assert row["context"]["page"] == {"url": "https://shop.com/search?q=...", "title": "Search page"}
    assert row["traits"] == {"email": "toto@domain.fr", "consent_categories": [1, 3]}


@pytest.mark.parametrize("prefix", ["", "/commandersact"])
def test_both_paths_at_the_root_and_under_the_prefix(api, key, db, drain, prefix):
    assert api.post(f"{prefix}/events?token={key}", json=event(f"single{prefix}")).status_code == 200
    r = api.post(
        f"{prefix}/events/batch?token={key}", json={"batch": [event(f"b1{prefix}"), event(f"b2{prefix}")]}
    )
    assert r.json() == {"accepted": 2, "refused": []}
    drain()
    assert len(stored(db)) == 3


def test_the_repaired_doc_batch_is_stored(api, key, db, drain):
    r = api.post(
        f"/events/batch?tc_s=29&token={key}",
        content=BATCH_REPAIRED,
        headers={"Content-Type": "application/json"},
    )
    assert r.json() == {"accepted": 2, "refused": []}
    drain()
    assert [(e["name"], e["anonymous_id"]) for e in stored(db)] == [
        ("add_payment_info", "67892"),
        ("generate_lead", "5689865"),
    ]


def test_a_resent_event_is_stored_once(api, key, db, drain):
    for _ in range(3):
        assert api.post(f"/events?token={key}", json=event("same")).status_code == 200
    drain()
    assert len(stored(db)) == 1


# --- partial success: 200, and the refused item kept ------------------------------------------


def test_batch_with_one_bad_event_answers_200_with_the_refusal_and_quarantines_it(
    api, key, db, drain, ca_source
):
    bad = {"event_name": "sign_up", "method": "email", "context": {"event_timestamp": TS}}
    r = api.post(f"/events/batch?tc_s=29&token={key}", json={"batch": [event("ok-0"), bad, event("ok-2")]})
    assert r.status_code == 200
    assert r.json() == {
        "accepted": 2,
        "refused": [
            {"index": 1, "code": "missing_event_id", "reason": "batch[1].context.event_id is required"}
        ],
    }
    drain()
    assert [e["message_id"] for e in stored(db)] == ["ok-0", "ok-2"]
    (row,) = quarantined(db)
    assert (row["source_id"], row["dialect"], row["dialect_version"]) == (ca_source, "commandersact", "v2")
    assert (row["code"], row["item_index"], row["status"]) == ("missing_event_id", 1, "pending")
    assert row["reason"] == "batch[1].context.event_id is required"
    assert json.loads(row["raw"]) == bad
    assert row["event"] is None and row["request_id"] and row["received_at"] is not None


def test_a_single_event_that_cannot_be_accepted_is_200_accepted_0_and_quarantined(api, key, db, drain):
    r = api.post(f"/events?token={key}", json={"event": "page_view", "properties": {"page_type": "home"}})
    assert r.status_code == 200
    assert r.json() == {
        "accepted": 0,
        "refused": [{"index": 0, "code": "missing_event_name", "reason": "event_name is required"}],
    }
    drain()
    assert stored(db) == []
    (row,) = quarantined(db)
    assert (row["dialect_version"], row["code"]) == ("v1", "missing_event_name")


def test_a_batch_body_without_batch_is_200_and_quarantined_whole(api, key, db, drain):
    r = api.post(f"/events/batch?token={key}", json=event("not-in-a-batch"))
    assert r.json()["accepted"] == 0
    assert r.json()["refused"][0]["code"] == "invalid_batch"
    drain()
    (row,) = quarantined(db)
    assert json.loads(row["raw"])["context"]["event_id"] == "not-in-a-batch"


def test_an_event_over_32_kb_inside_a_batch_is_refused_alone(api, key, db, drain):
    big = event("big", pad="x" * ca.MAX_EVENT_BYTES)
    r = api.post(f"/events/batch?token={key}", json={"batch": [big, event("small")]})
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    assert [x["code"] for x in r.json()["refused"]] == ["event_too_large"]
    drain()
    assert [e["message_id"] for e in stored(db)] == ["small"]
    assert len(quarantined(db)) == 1


# --- credentials: token or Bearer; 401 -----------------------------------------------------------


def test_bearer_wins_over_token(api, key, db, drain):
    good_bearer = api.post("/events?token=wrong", json=event("a"), headers={"Authorization": f"Bearer {key}"})
    assert good_bearer.status_code == 200
    bad_bearer = api.post(f"/events?token={key}", json=event("b"), headers={"Authorization": "Bearer wrong"})
    assert bad_bearer.status_code == 401
    drain()
    assert [e["message_id"] for e in stored(db)] == ["a"]


@pytest.mark.parametrize(
    ("query", "headers", "code"),
    [
        ("", {}, "missing_credentials"),
        ("?tc_s=29", {"Authorization": "Basic eDp5"}, "missing_credentials"),
        ("?token=", {}, "missing_credentials"),
        ("?token=nope", {}, "invalid_credentials"),
        ("", {"Authorization": "Bearer nope"}, "invalid_credentials"),
    ],
)
@pytest.mark.parametrize("path", ["/events", "/events/batch", "/commandersact/events"])
def test_a_bad_source_key_is_401_and_nothing_is_kept(api, key, rdb, db, drain, query, headers, code, path):
    body = {"batch": [event("x")]} if path.endswith("batch") else event("x")
    r = api.post(f"{path}{query}", json=body, headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == code
    assert_nothing_kept(rdb, db, drain)


def test_a_key_of_another_dialect_is_401(settings, key, rdb, db, drain):
    add_source(settings.database_url, "segment", "web", "seg-key")
    with TestClient(create_app(settings)) as api:
        assert api.post("/events?token=seg-key", json=event("x")).status_code == 401
        assert (
            api.post("/v1/track", json={"userId": "u", "event": "e"}, auth=("seg-key", "")).status_code == 200
        )
    assert queued_jobs(rdb) == 1  # the Segment call only
    rdb.flushdb()
    assert_nothing_kept(rdb, db, drain)


# --- 400: too large, not JSON ----------------------------------------------------------------------


def test_exactly_32_kb_is_accepted_and_one_byte_more_is_400(api, key, rdb, db, drain):
    body = json.dumps(event("edge", pad="")).encode()
    pad = ca.MAX_EVENT_BYTES - len(body)
    exact = json.dumps(event("edge", pad="x" * pad)).encode()
    assert len(exact) == ca.MAX_EVENT_BYTES
    assert api.post(f"/events?token={key}", content=exact).status_code == 200
    over = json.dumps(event("over", pad="x" * (pad + 1))).encode()
    r = api.post(f"/events?token={key}", content=over)
    assert r.status_code == 400
    assert r.json()["code"] == "request_too_large"
    drain()
    assert [e["message_id"] for e in stored(db)] == ["edge"]


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/events", b'{"event_name": "search",', "invalid_json"),
        ("/events", b"", "invalid_json"),
        ("/events", b"\xff", "invalid_json"),
        ("/events/batch", BATCH_VERBATIM.encode(), "invalid_json"),  # the vendor's own example, verbatim
        ("/events/batch", b'{"batch": [' + b"1," * (ca.MAX_BATCH_BYTES // 2) + b"1]}", "request_too_large"),
        ("/events", b"x" * (ca.MAX_EVENT_BYTES + 1), "request_too_large"),
        ("/commandersact/events/batch", b"{", "invalid_json"),
    ],
)
def test_too_large_or_not_json_is_400_and_nothing_is_kept(api, key, rdb, db, drain, path, body, code):
    r = api.post(f"{path}?token={key}", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code
    assert r.json()["message"]
    assert_nothing_kept(rdb, db, drain)


def test_a_body_larger_than_its_content_length_says_is_400(api, key, rdb, db, drain):
    big = b"x" * (ca.MAX_BATCH_BYTES + 10)
    r = api.post(f"/events/batch?token={key}", content=big)
    assert r.status_code == 400
    assert_nothing_kept(rdb, db, drain)


# --- the real gateway, as curl sends it ------------------------------------------------------------


def test_live_gateway_curl_equivalent(settings, key, db, drain):
    with live_gateway(settings) as base, httpx.Client(base_url=base) as http:
        v2 = http.post(
            f"/events?tc_s=29&token={key}",
            content=json.dumps(V2_DOC),
            headers={"Content-Type": "application/json"},
        )
        v1 = http.post(
            "/events?tc_s=29",
            content=json.dumps({**V1_DOC, "event_id": "live-v1"}),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        batch = http.post(
            f"/events/batch?tc_s=29&token={key}", json={"batch": [event("lb-1"), {"event_name": "x"}]}
        )
        too_large = http.post(f"/events?token={key}", content=b"{" + b" " * ca.MAX_EVENT_BYTES + b"}")
        unauthorized = http.post("/events?token=nope", json=event("never"))
    assert (v2.status_code, v1.status_code, batch.status_code) == (200, 200, 200)
    assert batch.json() == {
        "accepted": 1,
        "refused": [
            {"index": 1, "code": "missing_event_id", "reason": "batch[1].context.event_id is required"}
        ],
    }
    assert (too_large.status_code, unauthorized.status_code) == (400, 401)
    drain()
    rows = {r["message_id"]: r["dialect_version"] for r in stored(db)}
    assert rows == {"202110130000000000": "v2", "live-v1": "v1", "lb-1": "v2"}
    assert [q["item_index"] for q in quarantined(db)] == [1]


def test_the_demo_curl_line_works(settings, key, db, drain):
    """What ``trackgate up`` prints, run by bash with the real curl against the real gateway."""
    with live_gateway(settings) as base:
        (line,) = gateway_ca.demo_lines(base, {"key": key})
        result = subprocess.run(["bash", "-c", line.strip()], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"accepted": 1, "refused": []}
    drain()
    (row,) = stored(db)
    assert row["name"] == "search" and row["message_id"].startswith("demo-")


def test_new_source_shows_the_source_key():
    created = gateway_ca.new_source(None, {})
    assert created["show"] == {"source key": created["key"]} and len(created["key"]) >= 24
    assert gateway_ca.new_source("given", {})["key"] == "given"


def test_a_source_made_by_the_cli_accepts_events(cli, settings, db, drain):
    result = cli("sources", "add", "commandersact", "--name", "shop", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["dialect"] == "commandersact"
    with TestClient(create_app(settings)) as api:
        r = api.post(
            "/events", json=event("cli-1"), headers={"Authorization": f"Bearer {created['source_key']}"}
        )
    assert r.json() == {"accepted": 1, "refused": []}
    drain()
    assert [e["source_id"] for e in stored(db)] == [created["id"]]
