"""Real SDKs against the real gateway (uvicorn on a socket), then a real RQ worker into PostgreSQL.

The same calls go through each SDK: segment-analytics-python, rudder-sdk-python and the npm
``@segment/analytics-node`` (``tests/e2e/node/send.mjs``; skipped when node or its node_modules are
missing: ``npm ci --prefix tests/e2e/node``). Every message must be found in ``events`` exactly once,
with the SDK's own messageId, and stay once when the SDK's batch is delivered a second time.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.helpers import live_gateway, stored

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_SDK = NODE_DIR / "node_modules" / "@segment" / "analytics-node"

CONTEXT = {"ip": "203.0.113.50", "page": {"url": "https://example.com/pricing"}}
INTEGRATIONS = {"All": False, "Mixpanel": True}

# One of each call, in Segment's own (camelCase) terms. Python SDKs get them mapped to their
# positional/keyword arguments; send.mjs passes them to analytics-node as they are.
CALLS: list[dict[str, Any]] = [
    {
        "type": "identify",
        "userId": "user-42",
        "anonymousId": "anon-7",
        "traits": {"email": "ada@example.com", "name": "Ada Lovelace", "plan": "pro"},
    },
    {
        "type": "track",
        "userId": "user-42",
        "event": "Order Completed",
        "properties": {"order_id": "o-1001", "revenue": 14.99, "currency": "EUR"},
        "context": CONTEXT,
        "integrations": INTEGRATIONS,
    },
    {
        "type": "page",
        "anonymousId": "anon-7",
        "category": "Docs",
        "name": "Pricing",
        "properties": {"url": "https://example.com/pricing", "title": "Pricing"},
    },
    {
        "type": "group",
        "userId": "user-42",
        "groupId": "org-9",
        "traits": {"name": "Initech", "employees": 420},
    },
    {"type": "alias", "userId": "user-42", "previousId": "anon-7"},
]


def calls_with_ids(prefix: str) -> list[dict[str, Any]]:
    return [{**call, "messageId": f"{prefix}-{call['type']}"} for call in CALLS]


def python_call(client, call: dict[str, Any]) -> dict[str, Any]:
    """Make ``call`` through a segment/rudder Python client; returns the message it built."""
    call = copy.deepcopy(call)  # the SDKs write into the dicts they are given
    common = {
        "context": call.get("context"),
        "integrations": call.get("integrations"),
        "message_id": call.get("messageId"),
    }
    user_id, anonymous_id = call.get("userId"), call.get("anonymousId")
    match call["type"]:
        case "identify":
            result = client.identify(user_id, call["traits"], anonymous_id=anonymous_id, **common)
        case "track":
            result = client.track(
                user_id, call["event"], call["properties"], anonymous_id=anonymous_id, **common
            )
        case "page":
            result = client.page(
                user_id,
                call["category"],
                call["name"],
                call["properties"],
                anonymous_id=anonymous_id,
                **common,
            )
        case "group":
            result = client.group(
                user_id, call["groupId"], call["traits"], anonymous_id=anonymous_id, **common
            )
        case "alias":
            result = client.alias(call["previousId"], user_id, **common)
        case other:
            raise AssertionError(f"no such call {other}")
    ok, message = result
    assert ok
    return message


def assert_stored(db, sent: list[tuple[dict[str, Any], str]], library: str, sdk: str) -> None:
    """Every (call, messageId) the SDK sent is one row, and the row says what the call said."""
    rows = stored(db)
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["message_id"], []).append(row)
    assert sorted(by_id) == sorted(message_id for _, message_id in sent)
    assert len(rows) == len(sent), "a message was stored more than once"
    for call, message_id in sent:
        (row,) = by_id[message_id]
        kind = call["type"]
        where = f"{sdk} {kind}"
        assert row["dialect"] == "segment", where
        assert row["type"] == kind, where
        assert row["user_id"] == call.get("userId"), where
        assert row["anonymous_id"] == call.get("anonymousId"), where
        assert row["name"] == {"track": call.get("event"), "page": call.get("name")}.get(kind), where
        assert row["group_id"] == call.get("groupId"), where
        assert row["previous_id"] == call.get("previousId"), where
        if kind == "track":
            assert row["properties"] == call["properties"], where
        if kind == "page":  # the category travels in the properties, as analytics.js sends it
            assert row["properties"] == {**call["properties"], "category": call["category"]}, where
        if kind in ("identify", "group"):
            # (rudder-sdk-python sends identify traits in context.traits only)
            assert row["traits"] == call["traits"], where
        if kind == "track":
            assert row["context"]["ip"] == CONTEXT["ip"], where
            assert row["context"]["page"] == CONTEXT["page"], where
            assert row["integrations"] == INTEGRATIONS, where
        else:
            assert row["context"]["ip"] == "127.0.0.1", where  # the address the gateway saw
        if kind == "page":
            assert row["raw"]["category"] == call["category"], where  # the original, verbatim
        assert row["context"]["library"]["name"] == library, where
        assert row["context"]["library"].get("version"), where
        assert row["raw"]["messageId"] == message_id, where
        assert row["sent_at"] is not None, where
        # the SDK's clock is this machine's: the skew-corrected time is about when it arrived
        assert abs(row["timestamp"] - row["received_at"]) < timedelta(seconds=10), where


@contextmanager
def recorded(session: requests.Session) -> Iterator[list[requests.Response]]:
    """Every response the SDK's module-level requests session gets (with its request) while inside."""
    log: list[requests.Response] = []

    def hook(response: requests.Response, *args, **kwargs) -> None:
        log.append(response)

    session.hooks["response"].append(hook)
    try:
        yield log
    finally:
        session.hooks["response"].remove(hook)


def request_body(request: requests.PreparedRequest) -> dict[str, Any]:
    raw = request.body
    assert isinstance(raw, bytes | str), type(raw)
    body = raw if isinstance(raw, bytes) else raw.encode()
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return json.loads(body)


class WithoutAuthorization(HTTPAdapter):
    """Drop the Authorization header: segment-analytics-python 2.3.x sent the writeKey in the body only."""

    def send(self, request, *args, **kwargs):
        request.headers.pop("Authorization", None)
        return super().send(request, *args, **kwargs)


@contextmanager
def body_key_only(session: requests.Session, base: str) -> Iterator[None]:
    adapter = WithoutAuthorization()
    session.mount(base + "/", adapter)
    try:
        yield
    finally:
        session.adapters.pop(base + "/", None)
        adapter.close()


@pytest.fixture
def gateway(settings, write_key) -> Iterator[str]:
    with live_gateway(settings) as base:
        yield base


# --- segment-analytics-python ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode", ["plain", "gzip", "body-key-only"], ids=["plain", "gzip", "body-write-key-only"]
)
def test_segment_python(gateway, write_key, drain, db, mode):
    from segment.analytics import Client
    from segment.analytics import request as segment_request

    client = Client(write_key, host=gateway, sync_mode=True, gzip=mode == "gzip", max_retries=0)
    only_body = body_key_only(segment_request._session, gateway) if mode == "body-key-only" else None
    with recorded(segment_request._session) as log:
        if only_body:
            with only_body:
                sent = [(call, python_call(client, call)["messageId"]) for call in CALLS]
        else:
            sent = [(call, python_call(client, call)["messageId"]) for call in CALLS]
    assert [r.status_code for r in log] == [200] * len(CALLS)
    for response in log:
        assert response.request.url == f"{gateway}/v1/batch"
        assert request_body(response.request)["writeKey"] == write_key
        # 2.3.x sends the writeKey in the body only; 2.4 adds Basic auth (both: the header wins)
        authorization = response.request.headers.get("Authorization")
        if mode == "body-key-only":
            assert authorization is None
        elif authorization is not None:
            assert authorization == "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        assert (response.request.headers.get("Content-Encoding") == "gzip") is (mode == "gzip")
    drain()
    assert_stored(db, sent, "analytics-python", "segment-analytics-python")


@pytest.mark.parametrize(
    ("package", "sdk", "prefix"),
    [
        ("segment.analytics", "segment-analytics-python", "segpy"),
        ("rudderstack.analytics", "rudder-sdk-python", "rudpy"),
    ],
)
def test_python_sdk_batch_retried(gateway, write_key, drain, db, package, sdk, prefix):
    """Each Python SDK's background consumer posts /v1/batch; every batch is delivered twice (a retry
    after a lost answer) and each message is still stored once."""
    import importlib

    Client = importlib.import_module(package).Client
    sdk_request = importlib.import_module(f"{package}.request")

    calls = calls_with_ids(prefix)
    errors: list = []
    with recorded(sdk_request._session) as log:
        for _ in range(2):
            client = Client(write_key, host=gateway, upload_size=100, on_error=lambda e, b: errors.append(e))
            for call in calls:
                python_call(client, call)
            client.shutdown()
    assert errors == []
    assert all(r.status_code == 200 for r in log)
    batches = [request_body(r.request)["batch"] for r in log]
    assert sum(len(b) for b in batches) == 2 * len(calls)
    assert max(len(b) for b in batches) > 1, "expected the consumer to batch"
    drain()
    assert_stored(db, [(call, call["messageId"]) for call in calls], "analytics-python", sdk)


# --- rudder-sdk-python ------------------------------------------------------------------------------


def test_rudder_python(gateway, write_key, drain, db):
    from rudderstack.analytics import Client
    from rudderstack.analytics import request as rudder_request

    client = Client(write_key, host=gateway, sync_mode=True, max_retries=0)  # gzip is on by default
    with recorded(rudder_request._session) as log:
        sent = [(call, python_call(client, call)["messageId"]) for call in CALLS]
    assert [r.status_code for r in log] == [200] * len(CALLS)
    for response in log:
        assert response.request.url == f"{gateway}/v1/batch"
        assert response.request.headers["Content-Encoding"] == "gzip"
        authorization = response.request.headers["Authorization"]
        assert isinstance(authorization, str) and authorization.startswith("Basic ")
        assert "writeKey" not in request_body(response.request)
    drain()
    assert_stored(db, sent, "analytics-python", "rudder-sdk-python")


# --- @segment/analytics-node ------------------------------------------------------------------------


@pytest.fixture
def node() -> str:
    """The node binary, with @segment/analytics-node installed next to send.mjs; else skip."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the @segment/analytics-node end-to-end test needs node >= 20")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    if int(version.strip().lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"@segment/analytics-node needs node >= 20, this is {version.strip()}")
    if not NODE_SDK.is_dir():
        pytest.skip(
            "tests/e2e/node/node_modules is missing: install the npm SDK with"
            " `npm ci --prefix tests/e2e/node`"
        )
    return node


def run_node(
    node: str, base: str, write_key: str, calls: list[dict[str, Any]], *extra: str
) -> dict[str, Any]:
    proc = subprocess.run(
        [node, "send.mjs", base, write_key, "--calls", json.dumps(calls), *extra],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"send.mjs failed:\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("path", [None, "/segment/v1/batch"], ids=["v1", "segment-prefix"])
def test_analytics_node(node, gateway, write_key, drain, db, path):
    extra = ("--path", path) if path else ()
    log = run_node(node, gateway, write_key, CALLS, *extra)
    assert log["errors"] == []
    assert [r["status"] for r in log["responses"]] == [200] * len(log["requests"])
    (request,) = log["requests"]  # closeAndFlush sends the five calls as one batch
    assert request["url"] == gateway + (path or "/v1/batch")
    assert request["headers"]["Authorization"].startswith("Basic ")
    assert request["body"]["writeKey"] == write_key
    batch = request["body"]["batch"]
    assert [m["type"] for m in batch] == [call["type"] for call in CALLS]
    sent = [(call, message["messageId"]) for call, message in zip(CALLS, batch, strict=True)]
    assert all(message_id.startswith("node-next-") for _, message_id in sent)
    drain()
    assert_stored(db, sent, "@segment/analytics-node", "analytics-node")


def test_analytics_node_batch_retried(node, gateway, write_key, drain, db):
    calls = calls_with_ids("node")
    log = run_node(node, gateway, write_key, calls, "--repeat", "2")
    assert log["errors"] == []
    assert len(log["requests"]) == 2
    assert [r["status"] for r in log["responses"]] == [200, 200]
    for request in log["requests"]:
        assert [m["messageId"] for m in request["body"]["batch"]] == [c["messageId"] for c in calls]
    drain()
    assert_stored(
        db, [(call, call["messageId"]) for call in calls], "@segment/analytics-node", "analytics-node"
    )
