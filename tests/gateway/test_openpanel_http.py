# ruff: noqa: E501
"""The OpenPanel surface over HTTP: every call type, auth (secret, CORS, body credentials, legacy
headers), the error answers (nothing stored), device and session ids, bots, the client IP, the legacy
endpoints and the preflights. Real app, real Redis, and through a real worker into PostgreSQL."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from starlette.testclient import TestClient

from tests.helpers import live_gateway, queued_jobs, stored
from trackgate.gateway import openpanel as gw
from trackgate.gateway.app import create_app
from trackgate.sources import add_source

BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


class OP:
    def __init__(self, client_id: str, secret: str, source_id: str):
        self.client_id = client_id
        self.secret = secret
        self.source_id = source_id

    def server(self, **extra) -> dict[str, str]:
        return {
            "openpanel-client-id": self.client_id,
            "openpanel-client-secret": self.secret,
            "user-agent": "op-node/1.3.1",
            **extra,
        }

    def browser(self, origin: str = "https://app.example.com", **extra) -> dict[str, str]:
        return {"openpanel-client-id": self.client_id, "origin": origin, "user-agent": BROWSER_UA, **extra}


@pytest.fixture
def op(settings) -> OP:
    created = gw.new_source(None, {"origins": ["https://*.example.com", "shop.test"]})
    source, _ = add_source(
        settings.database_url, "openpanel", "web", created["key"], created["settings"], created["extra_keys"]
    )
    return OP(created["key"], created["extra_keys"]["secret"], source.id)


@pytest.fixture
def opc(settings, op) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def track(name: object = "signup", **payload) -> dict:
    """A track call; ``name`` of any JSON type, as a client may send it."""
    return {"type": "track", "payload": {"name": name, **payload}}


def test_track_stored_with_device_and_session(opc, op, drain, db):
    r = opc.post(
        "/track",
        json=track(properties={"plan": "pro"}, profileId="user-1", groups=["org-1"]),
        headers=op.server(**{"openpanel-sdk-name": "node", "openpanel-sdk-version": "1.3.1"}),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"deviceId", "sessionId"}
    assert len(body["deviceId"]) == 32 and body["sessionId"]
    drain()
    (row,) = stored(db)
    assert row["type"] == "track" and row["name"] == "signup"
    assert row["user_id"] == "user-1" and row["anonymous_id"] == body["deviceId"]
    assert row["group_ids"] == ["org-1"]
    assert row["properties"] == {"plan": "pro"}
    assert row["context"]["library"] == {"name": "node", "version": "1.3.1"}
    assert row["context"]["user_agent"] == "op-node/1.3.1"
    assert row["enrichment"]["session_id"] == body["sessionId"]
    assert row["dialect"] == "openpanel" and row["dialect_version"] == "track"
    assert row["source_id"] == op.source_id


def test_every_call_type(opc, op, drain, db):
    calls = [
        ({"type": "identify", "payload": {"profileId": "u1", "firstName": "Ada", "email": "ada@example.com",
                                          "properties": {"tier": "premium"}}}, "identify"),
        ({"type": "increment", "payload": {"profileId": "u1", "property": "stats.visits"}}, "increment"),
        ({"type": "decrement", "payload": {"profileId": 7, "property": "credits", "value": 2.5}}, "decrement"),
        ({"type": "group", "payload": {"id": "org_acme", "type": "company", "name": "Acme",
                                       "properties": {"seats": 25}}}, "group"),
        ({"type": "assign_group", "payload": {"profileId": "u1", "groupIds": ["org_acme"]}}, "assign_group"),
        ({"type": "assign_group", "payload": {"groupIds": ["org_b"]}}, "assign_group"),
        ({"type": "alias", "payload": {"profileId": "u1", "alias": "anon-9"}}, "alias"),
    ]  # fmt: skip
    device = None
    for body, _ in calls:
        r = opc.post("/track", json=body, headers=op.server())
        assert r.status_code == 200, r.text
        device = r.json()["deviceId"]
    drain()
    rows = stored(db)
    assert [r["type"] for r in rows] == [kind for _, kind in calls]
    ident, inc, dec, group, assign, assign_anon, alias = rows
    assert ident["user_id"] == "u1"
    assert ident["traits"] == {"tier": "premium", "firstName": "Ada", "email": "ada@example.com"}
    assert inc["user_id"] == "u1" and inc["properties"] == {"property": "stats.visits", "value": 1}
    assert dec["user_id"] == "7" and dec["properties"] == {"property": "credits", "value": 2.5}
    assert group["group_id"] == "org_acme"
    assert group["traits"] == {"seats": 25, "name": "Acme", "type": "company"}
    assert assign["user_id"] == "u1" and assign["group_ids"] == ["org_acme"]
    assert assign_anon["user_id"] is None and assign_anon["anonymous_id"] == device
    assert assign_anon["group_ids"] == ["org_b"]
    assert alias["user_id"] == "u1" and alias["previous_id"] == "anon-9"


def test_python_sdk_nulls_accepted(opc, op, drain, db):
    for body in (
        track(properties={}, profileId=None),
        {"type": "increment", "payload": {"profileId": "u1", "property": "visits", "value": None}},
    ):
        r = opc.post("/track", json=body, headers=op.server())
        assert r.status_code == 200, r.text
    drain()
    t, inc = stored(db)
    assert t["user_id"] is None and t["anonymous_id"]
    assert inc["properties"] == {"property": "visits", "value": 1}


def test_special_properties(opc, op, drain, db):
    when = "2026-01-02T03:04:05.678Z"
    props = {
        "__timestamp": when,
        "__ip": "8.8.4.4",
        "__deviceId": " dev-42 ",
        "__revenue": 1999,
        "currency": "EUR",
        "__identify": {"profileId": "u9", "email": "u9@example.com"},
        "__path": "https://example.com/pricing?x=1",
        "__title": "Pricing",
    }
    r = opc.post("/track", json=track("revenue", properties=props), headers=op.server())
    assert r.status_code == 200, r.text
    assert r.json()["deviceId"] == "dev-42"
    drain()
    ident, row = stored(db)
    assert ident["type"] == "identify" and ident["traits"] == {"email": "u9@example.com"}
    assert row["type"] == "track" and row["user_id"] == "u9" and row["anonymous_id"] == "dev-42"
    assert row["properties"] == {
        "currency": "EUR",
        "revenue": 19.99,
        "__path": "https://example.com/pricing?x=1",
        "__title": "Pricing",
    }
    assert row["timestamp"] == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert row["context"]["ip"] == "8.8.4.4"
    assert row["context"]["page"] == {
        "url": "https://example.com/pricing?x=1",
        "path": "/pricing",
        "search": "?x=1",
        "title": "Pricing",
    }
    assert json.loads(row["raw"]) if isinstance(row["raw"], str) else row["raw"]


def test_future_timestamp_ignored(opc, op, drain, db):
    future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    r = opc.post("/track", json=track(properties={"__timestamp": future}), headers=op.server())
    assert r.status_code == 200
    drain()
    (row,) = stored(db)
    assert row["original_timestamp"] is None
    assert abs(row["timestamp"] - row["received_at"]) < timedelta(seconds=1)


# --- auth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers_of, body_extra",
    [
        (lambda op: {"openpanel-client-id": op.client_id, "openpanel-client-secret": op.secret}, {}),
        (lambda op: {"mixan-client-id": op.client_id, "mixan-client-secret": op.secret}, {}),
        (lambda op: {}, "body"),
        (lambda op: {"openpanel-client-id": op.client_id, "origin": "https://a.example.com"}, {}),
        (lambda op: {"openpanel-client-id": op.client_id, "origin": "https://www.shop.test/"}, {}),
        (lambda op: {"openpanel-client-id": op.client_id, "origin": "http://shop.test"}, {}),
    ],
    ids=["headers", "mixan", "body-root", "cors-wildcard", "cors-www", "cors-scheme"],
)
def test_auth_accepted(opc, op, drain, db, headers_of, body_extra):
    body = track()
    if body_extra == "body":
        body.update(clientId=op.client_id, clientSecret=op.secret)
    r = opc.post("/track", json=body, headers={"user-agent": BROWSER_UA, **headers_of(op)})
    assert r.status_code == 200, r.text
    drain()
    assert len(stored(db)) == 1


@pytest.mark.parametrize(
    "headers_of, message",
    [
        (lambda op: {}, "Ingestion: Missing client id"),
        (lambda op: {"openpanel-client-id": "not-a-uuid"}, "Ingestion: Client ID must be a valid UUIDv4"),
        (
            lambda op: {"openpanel-client-id": op.client_id.upper()},
            "Ingestion: Client ID must be a valid UUIDv4",
        ),
        (lambda op: {"openpanel-client-id": str(uuid.uuid4())}, "Ingestion: Invalid client id"),
        (lambda op: {"openpanel-client-id": op.client_id}, "Ingestion: Invalid cors or secret"),
        (
            lambda op: {"openpanel-client-id": op.client_id, "openpanel-client-secret": "sec_wrong"},
            "Ingestion: Invalid cors or secret",
        ),
        (
            lambda op: {"openpanel-client-id": op.client_id, "origin": "https://example.com.evil.net"},
            "Ingestion: Invalid cors or secret",
        ),
        (
            lambda op: {"openpanel-client-id": op.client_id, "origin": "https://a.example.com.evil.net"},
            "Ingestion: Invalid cors or secret",
        ),
    ],
    ids=[
        "missing",
        "not-uuid",
        "uppercase",
        "unknown",
        "no-secret",
        "wrong-secret",
        "other-origin",
        "suffix",
    ],
)
def test_auth_refused(opc, op, rdb, db, headers_of, message):
    r = opc.post("/track", json=track(), headers={"user-agent": BROWSER_UA, **headers_of(op)})
    assert r.status_code == 401
    assert r.text == message
    assert r.headers["content-type"].startswith("text/plain")
    assert queued_jobs(rdb) == 0


def test_secret_of_another_source_refused(settings, opc, op, rdb):
    other = gw.new_source(None, {})
    add_source(settings.database_url, "openpanel", "other", other["key"], {}, other["extra_keys"])
    import time

    time.sleep(0.5)  # the source cache refreshes every 0.2 s in tests
    headers = {"openpanel-client-id": op.client_id, "openpanel-client-secret": other["extra_keys"]["secret"]}
    r = opc.post("/track", json=track(), headers=headers)
    assert r.status_code == 401 and r.text == "Ingestion: Invalid cors or secret"
    assert queued_jobs(rdb) == 0


def test_revenue_needs_a_secret(opc, op, rdb, drain, db):
    body = track("revenue", properties={"__revenue": 500})
    r = opc.post("/track", json=body, headers=op.browser())
    assert r.status_code == 401
    assert r.text == "Ingestion: Revenue tracking is not allowed without a client secret"
    r = opc.post("/track", json=body, headers=op.browser(**{"openpanel-client-secret": "sec_bogus"}))
    assert r.status_code == 401
    assert queued_jobs(rdb) == 0
    r = opc.post("/track", json=body, headers=op.server())
    assert r.status_code == 200
    drain()
    assert stored(db)[0]["properties"] == {"revenue": 5.0}


def test_validation_comes_before_auth(opc, rdb):
    r = opc.post("/track", json=track(""))
    assert r.status_code == 400
    assert r.json() == {
        "status": 400,
        "error": "Error",
        "message": "body/payload/name Too small: expected string to have >=1 characters",
    }
    assert queued_jobs(rdb) == 0


# --- validation errors: 400, nothing stored ----------------------------------------------------------

ERRORS = [
    (track(""), "body/payload/name Too small: expected string to have >=1 characters"),
    ({"type": "track", "payload": {}}, "body/payload/name Invalid input: expected string, received undefined"),
    (track(5), "body/payload/name Invalid input: expected string, received number"),
    (track("session_start"), "body/payload/name Event name cannot be one of the reserved names: session_start, session_end"),
    (track("/wp-login.php"), "body/payload/name Event name contains blocked content"),
    (track("x" * 81), "body/payload/name Event name contains blocked content"),
    (track(properties=[1]), "body/payload/properties Invalid input: expected record, received array"),
    (track(profileId=""), "body/payload/profileId Invalid input"),
    (track(profileId=True), "body/payload/profileId Invalid input"),
    (track(groups=[""]), "body/payload/groups/0 Too small: expected string to have >=1 characters"),
    (track(groups="g"), "body/payload/groups Invalid input: expected array, received string"),
    (track("revenue", properties={"__revenue": 19.99}), "body/payload/properties/__revenue __revenue must be an integer (no floats or strings)"),
    (track("revenue", properties={"__revenue": -1}), "body/payload/properties/__revenue __revenue must be an integer (no floats or strings)"),
    (track("revenue", properties={"__revenue": "100"}), "body/payload/properties/__revenue __revenue must be an integer (no floats or strings)"),
    ({"type": "identify", "payload": {"email": "a@b.co"}}, "body/payload/profileId Invalid input"),
    ({"type": "identify", "payload": {"profileId": "u", "email": "nope"}}, "body/payload/email Invalid email address"),
    ({"type": "identify", "payload": {"profileId": "u", "avatar": "not a url"}}, "body/payload/avatar Invalid URL"),
    ({"type": "increment", "payload": {"profileId": "u", "property": "v", "value": 0}}, "body/payload/value Too small: expected number to be >0"),
    ({"type": "decrement", "payload": {"profileId": "u", "property": "v", "value": -2}}, "body/payload/value Too small: expected number to be >0"),
    ({"type": "increment", "payload": {"profileId": "u", "property": "v", "value": "1"}}, "body/payload/value Invalid input: expected number, received string"),
    ({"type": "increment", "payload": {"profileId": "u"}}, "body/payload/property Invalid input: expected string, received undefined"),
    ({"type": "increment", "payload": {"profileId": "u", "property": "a..b"}}, "body/payload/property Invalid input: expected a dot path such as visits or stats.visits"),
    ({"type": "increment", "payload": {"property": "v"}}, "body/payload/profileId Invalid input"),
    ({"type": "group", "payload": {"id": "g", "type": "company"}}, "body/payload/name Invalid input: expected string, received undefined"),
    ({"type": "group", "payload": {"id": "", "type": "company", "name": "A"}}, "body/payload/id Too small: expected string to have >=1 characters"),
    ({"type": "assign_group", "payload": {"profileId": "u"}}, "body/payload/groupIds Invalid input: expected array, received undefined"),
    ({"type": "alias", "payload": {"profileId": "u"}}, "body/payload/alias Invalid input: expected string, received undefined"),
    ({"type": "nope", "payload": {}}, "body/type Invalid input"),
    ({"payload": {}}, "body/type Invalid input"),
    ({"type": "track"}, "body/payload Invalid input: expected object, received undefined"),
    ({"type": "replay", "payload": {}}, "body/type Session replay is not supported"),
    ([1, 2], "body Invalid input: expected object, received array"),
]  # fmt: skip


@pytest.mark.parametrize(
    "body, message", ERRORS, ids=[m.split(" ", 1)[0] + f"-{i}" for i, (_, m) in enumerate(ERRORS)]
)
def test_validation_errors(opc, op, rdb, body, message):
    r = opc.post("/track", json=body, headers=op.server())
    assert r.status_code == 400
    assert r.json() == {"status": 400, "error": "Error", "message": message}
    assert queued_jobs(rdb) == 0  # nothing published, so nothing can be stored


@pytest.mark.parametrize(
    "content, content_type, status, body",
    [
        (b"{nope", "application/json", 400,
         {"status": 400, "error": "FastifyError",
          "message": "Body is not valid JSON but content-type is set to 'application/json'"}),
        (b"", "application/json", 400,
         {"status": 400, "error": "FastifyError",
          "message": "Body cannot be empty when content-type is set to 'application/json'"}),
        (b"name=x", "text/plain", 415,
         {"status": 415, "error": "FastifyError", "message": "Unsupported Media Type: text/plain"}),
        (b'{"type":"track","payload":{"name":"' + b"x" * (3 * 1024 * 1024) + b'"}}', "application/json", 413,
         {"status": 413, "error": "FastifyError", "message": "Request body is too large"}),
    ],
    ids=["invalid-json", "empty", "media-type", "too-large"],
)  # fmt: skip
def test_body_errors(opc, op, rdb, content, content_type, status, body):
    r = opc.post("/track", content=content, headers={**op.server(), "content-type": content_type})
    assert r.status_code == status
    assert r.json() == body
    assert queued_jobs(rdb) == 0


# --- device and session ids ------------------------------------------------------------------------


def test_device_id_stable_and_session_kept(opc, op, rdb):
    h = op.browser()
    first = opc.post("/track", json=track(), headers=h).json()
    second = opc.post("/track", json=track(), headers=h).json()
    assert first == second
    other_ua = opc.post("/track", json=track(), headers={**h, "user-agent": BROWSER_UA + " X"}).json()
    assert other_ua["deviceId"] != first["deviceId"] and other_ua["sessionId"] != first["sessionId"]
    key = gw.SESSION_KEY.format(source=op.source_id, device=first["deviceId"])
    assert 0 < rdb.ttl(key) <= gw.SESSION_IDLE_SECONDS
    rdb.delete(key)  # 30 idle minutes later
    third = opc.post("/track", json=track(), headers=h).json()
    assert third["deviceId"] == first["deviceId"] and third["sessionId"] != first["sessionId"]


def test_device_id_matches_openpanel_formula(opc, op, rdb):
    r = opc.post("/track", json=track(), headers=op.browser())
    today = datetime.now(UTC).date().isoformat()
    salt = rdb.get(gw.SALT_KEY.format(day=today)).decode()
    assert r.json()["deviceId"] == gw.device_id(salt, BROWSER_UA, "testclient", op.source_id)


def test_salt_rotation_keeps_yesterdays_session(opc, op, rdb):
    """A session that began under yesterday's salt goes on after midnight with its device id."""
    today = datetime.now(UTC).date()
    yesterday_key = gw.SALT_KEY.format(day=(today - timedelta(days=1)).isoformat())
    rdb.set(yesterday_key, "old-salt")
    old_device = gw.device_id("old-salt", BROWSER_UA, "testclient", op.source_id)
    rdb.set(gw.SESSION_KEY.format(source=op.source_id, device=old_device), "sess-old", ex=600)
    r = opc.post("/track", json=track(), headers=op.browser()).json()
    assert r == {"deviceId": old_device, "sessionId": "sess-old"}


def test_get_device_id(opc, op):
    r = opc.get("/track/device-id", headers=op.browser())
    assert r.status_code == 200
    assert r.json()["sessionId"] == "" and r.json()["message"] == "No session exists for this device id"
    tracked = opc.post("/track", json=track(), headers=op.browser()).json()
    r = opc.get("/openpanel/track/device-id", headers=op.browser())
    assert r.json() == {**tracked, "message": "current session exists for this device id"}
    assert r.headers["access-control-allow-origin"] in ("*", "https://app.example.com")
    r = opc.get("/track/device-id", headers={"openpanel-client-id": op.client_id})
    assert r.status_code == 401 and r.text == "Ingestion: Invalid cors or secret"
    r = opc.get(
        "/track/device-id",
        headers={"openpanel-client-id": op.client_id, "openpanel-client-secret": op.secret, "user-agent": ""},
    )
    assert r.status_code == 400 and r.text == "Missing header: user-agent"


# --- bots, client IP -----------------------------------------------------------------------------------


def test_bot_without_secret_flagged(opc, op, drain, db):
    r = opc.post("/track", json=track(), headers=op.browser(**{"user-agent": BOT_UA}))
    assert r.status_code == 202
    assert r.json()["bot"]["name"]
    drain()
    (row,) = stored(db)
    assert row["enrichment"]["is_bot"] is True
    assert "session_id" not in row["enrichment"]


def test_bot_with_secret_is_not_a_bot(opc, op, drain, db):
    # with a verified secret the gateway answers as for anyone (no 202 {"bot"}); the workers'
    # enrichment still judges the user agent on its own
    r = opc.post("/track", json=track(), headers=op.server(**{"user-agent": BOT_UA}))
    assert r.status_code == 200 and set(r.json()) == {"deviceId", "sessionId"}
    drain()
    (row,) = stored(db)
    assert row["enrichment"]["session_id"]  # a bot answered 202 gets no session


def test_client_ip_header_needs_a_secret(opc, op, drain, db):
    opc.post("/track", json=track("a"), headers=op.server(**{"x-client-ip": "203.0.113.9"}))
    opc.post("/track", json=track("b"), headers=op.browser(**{"x-client-ip": "203.0.113.9"}))
    opc.post("/track", json=track("c"), headers=op.server(**{"x-client-ip": "10.0.0.1"}))
    opc.post("/track", json=track("d"), headers=op.server(**{"x-forwarded-for": "198.51.100.4, 10.0.0.1"}))
    drain()
    ips = {r["name"]: r["context"]["ip"] for r in stored(db)}
    assert ips == {"a": "203.0.113.9", "b": "testclient", "c": "testclient", "d": "198.51.100.4"}


def test_trusted_proxy_headers(settings, op, drain, db):
    proxied = msgspec.structs.replace(settings, trusted_proxies="127.0.0.0/8")
    with live_gateway(proxied) as base:
        r = httpx.post(
            base + "/track", json=track(), headers=op.browser(**{"x-forwarded-for": "198.51.100.7"})
        )
        assert r.status_code == 200
        r = httpx.post(base + "/track", json=track("no-header"), headers=op.browser())
        assert r.status_code == 200
    drain()
    ips = [r["context"]["ip"] for r in stored(db)]
    assert ips == ["198.51.100.7", "127.0.0.1"]


# --- legacy endpoints, prefix, preflight ---------------------------------------------------------------


def test_legacy_endpoints(opc, op, drain, db):
    r = opc.post("/event", json={"name": "old", "timestamp": "2026-01-01T00:00:00Z", "profileId": "u1",
                                 "properties": {"a": 1}}, headers=op.server())  # fmt: skip
    assert (r.status_code, r.text) == (202, "ok")
    r = opc.post("/profile", json={"profileId": "u1", "firstName": "Ada"}, headers=op.server())
    assert (r.status_code, r.text) == (202, "u1")
    r = opc.post(
        "/profile/increment", json={"profileId": "u1", "property": "n", "value": 3}, headers=op.server()
    )
    assert (r.status_code, r.text) == (202, "u1")
    r = opc.post("/openpanel/profile/decrement", json={"profileId": "u1", "property": "n", "value": 1},
                 headers=op.server())  # fmt: skip
    assert (r.status_code, r.text) == (202, "u1")
    r = opc.post("/openpanel/event", json={"name": ""}, headers=op.server())
    assert r.status_code == 400
    assert r.json()["message"] == "body/name Too small: expected string to have >=1 characters"
    drain()
    rows = stored(db)
    assert [(r["type"], r["dialect_version"]) for r in rows] == [
        ("track", "legacy"), ("identify", "legacy"), ("increment", "legacy"), ("decrement", "legacy")
    ]  # fmt: skip
    assert rows[0]["timestamp"] == datetime(2026, 1, 1, tzinfo=UTC) and rows[0]["user_id"] == "u1"
    assert rows[2]["properties"] == {"property": "n", "value": 3}


def test_prefix_and_preflight(opc, op, drain, db):
    r = opc.post("/openpanel/track", json=track(), headers=op.server())
    assert r.status_code == 200
    for path in ("/track", "/openpanel/track", "/event", "/profile", "/track/device-id"):
        r = opc.options(
            path,
            headers={
                "origin": "https://app.example.com",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type,openpanel-client-id",
            },
        )
        assert r.status_code == 200, path
        assert "openpanel-client-id" in r.headers["access-control-allow-headers"].lower()
    r = opc.post("/track", json=track(), headers=op.browser())
    assert r.headers["access-control-allow-origin"] == "*"
    drain()
    assert len(stored(db)) == 2


def test_demo_curl_works_as_printed(settings, drain, db):
    created = gw.new_source(None, {"origins": ["*"]})
    add_source(
        settings.database_url, "openpanel", "demo", created["key"], created["settings"], created["extra_keys"]
    )
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    with live_gateway(settings) as base:
        (line,) = gw.demo_lines(base, created)
        proc = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)) == {"deviceId", "sessionId"}
    drain()
    (row,) = stored(db)
    assert (row["name"], row["user_id"], row["properties"]) == ("signup", "user-1", {"plan": "pro"})


def test_new_source_and_demo_line(op):
    created = gw.new_source("6F9619FF-8B86-D011-B42D-00C04FC964FF", {"origins": ["https://a.com"]})
    assert created["key"] == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    assert created["settings"] == {"cors": ["https://a.com"]}
    assert created["extra_keys"]["secret"].startswith("sec_")
    with pytest.raises(ValueError):
        gw.new_source("not-a-uuid", {})
    (line,) = gw.demo_lines("http://127.0.0.1:8080", created)
    assert created["key"] in line and created["extra_keys"]["secret"] in line


def test_hung_redis_is_503_within_the_timeout(settings, op, silent_redis):
    import time

    hung = msgspec.structs.replace(settings, redis_url=silent_redis, redis_timeout_seconds=0.5)
    with TestClient(create_app(hung)) as client:
        started = time.perf_counter()
        r = client.post("/track", json=track(), headers=op.server())
        elapsed = time.perf_counter() - started
        d = client.get("/track/device-id", headers=op.server())
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["status"] == 503
    assert d.status_code == 503
    assert elapsed < 3, f"answered after {elapsed:.1f}s"


def test_sources_not_loaded_is_503(settings, op):
    app = create_app(settings)
    with TestClient(app) as client:
        app.runtime.sources._loaded = False
        r = client.post("/track", json=track(), headers=op.server())
    assert r.status_code == 503
