"""The Spectacle surface over HTTP: every path (root and /spectacle), content types, the workspace id,
every refusal (which stores nothing), CORS, the success body, money and dedupe into PostgreSQL.

Responses (Spectacle documents none; chosen and kept stable here): 200 ``{"success":true}``; errors
``{"success":false,"code","message","path"?}``: 400 bad body or a missing ``workspaceId``/``writeKey``,
401 a workspace id no source has, 413 over 32 KB, 415 a REST call that is not ``application/json``.
"""

from __future__ import annotations

import gzip
import json
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from tests.helpers import live_gateway, queued_jobs, stored
from trackgate.adapters import spectacle as adapter
from trackgate.gateway import spectacle
from trackgate.gateway.app import create_app
from trackgate.sources import add_source

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "spectacle"
OK = b'{"success":true}'
WS = "ws_http_test"
PREFIXES = ("", "/spectacle")
REST = {"identify": "identify", "track": "track", "page": "page", "group": "group"}
PIXEL = {"p": "page", "i": "identify", "t": "track", "g": "group"}
PIXEL_HEADERS = {"Content-Type": "text/plain", "User-Agent": "Mozilla/5.0 GTM"}


def path_of(prefix: str, call: str) -> str:
    return f"{prefix}/{call}" if call in PIXEL else f"{prefix}/tracking/{call}"


def as_json(body) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def body_for(call: str, **fields) -> dict:
    """A body every call of its format accepts."""
    if call in PIXEL:
        base = {"type": PIXEL[call], "writeKey": WS, "userId": None, "anonymousId": "anon-1"}
    else:
        base = {"workspaceId": WS, "userId": "u1", "anonymousId": "anon-1"}
    return {**base, "event": "Signed Up", "groupId": "g1", **fields}


def headers_for(call: str) -> dict:
    return PIXEL_HEADERS if call in PIXEL else {"Content-Type": "application/json"}


@pytest.fixture
def workspace(settings) -> str:
    add_source(settings.database_url, "spectacle", "spectacle-web", WS)
    return WS


@pytest.fixture
def sclient(settings, workspace, write_key):
    """The app, with a Spectacle source (and the conftest's Segment one)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def assert_refused(r: httpx.Response, status: int, code: str | None = None, path: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["success"] is False
    assert isinstance(body.get("code"), str) and body["code"]
    assert isinstance(body.get("message"), str) and body["message"]
    if code is not None:
        assert body["code"] == code, body
    if path is not None:
        assert body.get("path") == path, body
    return body


def assert_nothing_kept(rdb, db, drain) -> None:
    assert queued_jobs(rdb) == 0
    drain()
    assert stored(db) == []


# --- success and paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("call", [*REST, *PIXEL])
def test_every_path(sclient, drain, db, rdb, prefix, call):
    data = as_json(body_for(call))
    r = sclient.post(path_of(prefix, call), content=data, headers=headers_for(call))
    assert r.status_code == 200, r.text
    assert r.content == OK
    assert r.headers["content-type"] == "application/json"
    assert queued_jobs(rdb) == 1
    drain()
    (row,) = stored(db)
    assert row["dialect"] == "spectacle"
    assert row["type"] == adapter.CALLS[call]
    assert row["dialect_version"] == ("pixel" if call in PIXEL else "rest")
    assert row["anonymous_id"] == "anon-1"
    assert row["raw"] == json.loads(data)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"]
)
def test_rest_accepts_json(sclient, drain, db, content_type):
    r = sclient.post(
        "/tracking/track", content=as_json(body_for("track")), headers={"Content-Type": content_type}
    )
    assert r.status_code == 200, r.text
    drain()
    assert len(stored(db)) == 1


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/json", None]
)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_rest_refuses_other_content_types_415(sclient, rdb, db, drain, content_type, prefix):
    headers = {"Content-Type": content_type} if content_type else {}
    r = sclient.post(f"{prefix}/tracking/track", content=as_json(body_for("track")), headers=headers)
    body = assert_refused(r, 415, "unsupported_media_type", "Content-Type")
    assert "application/json" in body["message"]
    assert_nothing_kept(rdb, db, drain)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/json", "application/x-www-form-urlencoded", None],
)
def test_pixel_reads_any_content_type_as_json(sclient, drain, db, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    r = sclient.post("/t", content=as_json(body_for("t")), headers=headers)
    assert r.status_code == 200, r.text
    drain()
    assert len(stored(db)) == 1


def test_gzip_body(sclient, drain, db):
    data = gzip.compress(as_json(body_for("track")))
    r = sclient.post(
        "/tracking/track",
        content=data,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    drain()
    assert len(stored(db)) == 1


# --- credentials ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "field"), [("track", "workspaceId"), ("t", "writeKey")])
@pytest.mark.parametrize("value", [None, "", 42])
def test_missing_workspace_id_is_400_naming_it(sclient, rdb, db, drain, call, field, value):
    body = body_for(call)
    body.pop("workspaceId", None)
    body.pop("writeKey", None)
    if value is not None:
        body[field] = value
    r = sclient.post(path_of("", call), content=as_json(body), headers=headers_for(call))
    assert_refused(r, 400, "missing_field", field)
    assert_nothing_kept(rdb, db, drain)


@pytest.mark.parametrize(("call", "field"), [("track", "workspaceId"), ("t", "writeKey"), ("g", "writeKey")])
def test_unknown_workspace_is_401(sclient, rdb, db, drain, write_key, call, field):
    for key in ("ws_nobody", write_key):  # a Segment write key is no Spectacle workspace
        body = {**body_for(call), field: key}
        r = sclient.post(path_of("", call), content=as_json(body), headers=headers_for(call))
        assert_refused(r, 401, "invalid_credentials", field)
    assert_nothing_kept(rdb, db, drain)


def test_source_is_the_workspace(sclient, drain, db):
    assert sclient.post("/tracking/page", json=body_for("page")).status_code == 200
    drain()
    (row,) = stored(db)
    source = db.execute("SELECT id FROM sources WHERE name = 'spectacle-web'").fetchone()[0]
    assert row["source_id"] == source


# --- refusals store nothing -----------------------------------------------------------------------


def _error_fixtures() -> list:
    return [pytest.param(p, id=p.stem) for p in sorted(GOLDEN.glob("error_*.json"))]


@pytest.mark.parametrize("fixture_path", _error_fixtures())
def test_every_golden_refusal_over_http(sclient, rdb, db, drain, fixture_path):
    fixture = json.loads(fixture_path.read_text())
    if "body" in fixture:
        body = {**fixture["body"], "workspaceId": WS}
        data = as_json(body)
    else:
        data = fixture["body_text"].replace('"ws_golden"', f'"{WS}"').encode()
    r = sclient.post(path_of("", fixture["call"]), content=data, headers=fixture["headers"])
    assert_refused(r, 400, fixture["error"]["code"], fixture["error"]["path"])
    assert_nothing_kept(rdb, db, drain)


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    ("call", "body", "code", "path"),
    [
        ("track", {"workspaceId": WS, "anonymousId": "a", "event": "E"}, "missing_field", "userId"),
        ("identify", {"workspaceId": WS, "userId": "u"}, "missing_field", "anonymousId"),
        ("page", {"workspaceId": WS}, "missing_field", "userId"),
        (
            "track",
            {"workspaceId": WS, "userId": "u", "event": "E", "properties": {"revenue": "1.5"}},
            "invalid_amount",
            "properties.revenue",
        ),
        (
            "t",
            {"writeKey": WS, "anonymousId": "a", "event": "E", "properties": {"currency": "euro"}},
            "invalid_currency",
            "properties.currency",
        ),
        ("t", {"writeKey": WS, "anonymousId": "a"}, "missing_field", "event"),
        ("g", {"writeKey": WS, "anonymousId": "a"}, "missing_field", "groupId"),
        ("i", {"writeKey": WS, "anonymousId": "a", "traits": "x"}, "invalid_field_type", "traits"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(sclient, rdb, db, drain, prefix, call, body, code, path):
    r = sclient.post(path_of(prefix, call), content=as_json(body), headers=headers_for(call))
    assert_refused(r, 400, code, path)
    assert_nothing_kept(rdb, db, drain)


@pytest.mark.parametrize("data", [b"", b"{", b"[1]", b"null", b"\xff"])
@pytest.mark.parametrize("call", ["track", "t"])
def test_not_json_objects_are_400(sclient, rdb, db, drain, data, call):
    r = sclient.post(path_of("", call), content=data, headers=headers_for(call))
    assert_refused(r, 400)
    assert_nothing_kept(rdb, db, drain)


@pytest.mark.parametrize("call", ["track", "t"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_over_32kb_is_413(sclient, rdb, db, drain, call, gzipped):
    data = as_json(body_for(call, properties={"pad": "x" * adapter.MAX_EVENT_BYTES}))
    headers = dict(headers_for(call))
    if gzipped:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    r = sclient.post(path_of("", call), content=data, headers=headers)
    assert_refused(r, 413)
    assert_nothing_kept(rdb, db, drain)


def test_broken_gzip_is_400(sclient, rdb, db, drain):
    data = gzip.compress(as_json(body_for("t")))[:20]
    r = sclient.post("/t", content=data, headers=PIXEL_HEADERS)
    assert_refused(r, 400, "invalid_body")
    assert_nothing_kept(rdb, db, drain)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_unknown_tracking_call_is_404_json(sclient, rdb, prefix):
    r = sclient.post(f"{prefix}/tracking/alias", json=body_for("track"))
    assert_refused(r, 404, "unknown_call")
    assert queued_jobs(rdb) == 0


# --- CORS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(spectacle.ingest_routes()))
def test_preflight_on_every_path(sclient, path):
    r = sclient.options(
        path,
        headers={
            "Origin": "https://shop.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "content-type" in r.headers["access-control-allow-headers"].lower()


def test_cors_on_answers(sclient):
    origin = {"Origin": "https://shop.example.com"}
    ok = sclient.post("/p", content=as_json(body_for("p")), headers={**PIXEL_HEADERS, **origin})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "*"
    refused = sclient.post("/p", content=b"{", headers={**PIXEL_HEADERS, **origin})
    assert refused.status_code == 400 and refused.headers["access-control-allow-origin"] == "*"
    wrong_type = sclient.post(
        "/tracking/track", content=b"{}", headers={"Content-Type": "text/plain", **origin}
    )
    assert wrong_type.status_code == 415 and wrong_type.headers["access-control-allow-origin"] == "*"


# --- money and dedupe in PostgreSQL ---------------------------------------------------------------


def test_money_is_stored_exactly_in_major_units(sclient, drain, db):
    cases = [
        ("1599", "USD", "15.99"),
        ("-2599", "EUR", "-25.99"),
        ("1599", "JPY", "1599"),
        ("15990", "KWD", "15.99"),
    ]
    for i, (revenue, currency, _) in enumerate(cases):
        body = body_for(
            "track", messageId=f"m-{i}", properties={"revenue": revenue, "currency": currency, "mrr": "4999"}
        )
        assert sclient.post("/tracking/track", json=body).status_code == 200
    drain()
    for i, (_, currency, major) in enumerate(cases):
        row = db.execute(
            "SELECT properties->>'revenue', properties->'revenue' = %s::jsonb, properties->>'currency',"
            " properties->'refund', raw->'properties'->>'revenue' FROM events WHERE message_id = %s",
            (major, f"m-{i}"),
        ).fetchone()
        assert row[0] == major and row[1] is True and row[2] == currency
        assert row[3] == (True if major.startswith("-") else None)
        assert row[4] == cases[i][0]


def test_a_purchase_sent_twice_is_stored_once(sclient, drain, db, rdb):
    body = body_for("t", properties={"revenue": "2599", "currency": "EUR", "transactionId": "T-1"})
    for _ in range(2):
        assert sclient.post("/t", content=as_json(body), headers=PIXEL_HEADERS).status_code == 200
    # its refund carries the same transaction id: another event, stored too
    refund = {**body, "event": "Order Refunded", "properties": {**body["properties"], "revenue": "-2599"}}
    assert sclient.post("/t", content=as_json(refund), headers=PIXEL_HEADERS).status_code == 200
    drain()
    paid, refunded = sorted(stored(db), key=lambda r: r["properties"]["revenue"], reverse=True)
    assert paid["message_id"] == f"txn:{body['event']}:T-1"
    assert refunded["message_id"] == "txn:Order Refunded:T-1"
    assert refunded["properties"]["refund"] is True


def test_company_traits_land_as_company_and_group(sclient, drain, db):
    body = body_for("identify", traits={"email": "a@b.c", "companyId": "c-9", "companyName": "Acme"})
    assert sclient.post("/spectacle/tracking/identify", json=body).status_code == 200
    drain()
    (row,) = stored(db)
    assert row["group_id"] == "c-9"
    assert row["traits"]["company"] == {"id": "c-9", "name": "Acme"}


# --- sources and demo -----------------------------------------------------------------------------


def test_new_source_key_is_a_workspace_id():
    made = spectacle.new_source(None, {})
    assert made["key"].startswith("ws_") and len(made["key"]) > 10
    assert made["key"] != spectacle.new_source(None, {})["key"]
    assert spectacle.new_source("ws_mine", {})["key"] == "ws_mine"
    assert made["show"] == {"workspace id": made["key"]}


def test_demo_curls_work_as_printed(settings, drain, db):
    made = spectacle.new_source(None, {"domain": "localhost", "origins": ["*"]})
    add_source(settings.database_url, "spectacle", "demo", made["key"], extra_keys=made["extra_keys"])
    with live_gateway(settings) as base:
        lines = spectacle.demo_lines(base, made)
        assert len(lines) == 2
        for line in lines:
            args = shlex.split(line.strip())
            assert args[0] == "curl"
            done = subprocess.run(["bash", "-c", line.strip()], capture_output=True, text=True, timeout=10)
            assert done.returncode == 0, done.stderr
            assert done.stdout == OK.decode(), done.stdout
    drain()
    rows = stored(db)
    assert sorted((r["type"], r["dialect_version"]) for r in rows) == [("page", "pixel"), ("track", "rest")]
    (track,) = [r for r in rows if r["type"] == "track"]
    assert track["properties"] == {"revenue": 15.99, "currency": "USD"}
