"""The real Bucket/Reflag npm SDKs against the real gateway (uvicorn on a socket), then a real RQ worker
into PostgreSQL.

- ``@bucketco/tracking-sdk`` 2.4.0, ``init(key, {host})``: one request per call, the key in the path;
- ``@reflag/node-sdk`` 1.7.1, ``new ReflagClient({secretKey, apiBaseUrl, flagsSyncMode: "polling"})``:
  ``GET /features`` on start, ``POST /bulk`` on ``flush()``, ``GET /features/evaluated`` for remote flags.

Both are driven by ``tests/e2e/bucket/send.mjs`` (skipped when node or its node_modules are missing:
``npm ci --prefix tests/e2e/bucket``). Every call must be one row in ``events``, with the canonical type,
ids, traits and properties the call meant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import live_gateway, stored
from trackgate.gateway import bucket
from trackgate.sources import add_source

BUCKET_DIR = Path(__file__).resolve().parent / "bucket"
MODULES = BUCKET_DIR / "node_modules"


@pytest.fixture
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Bucket/Reflag end-to-end tests need node >= 20")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    if int(version.strip().lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"the Reflag node SDK needs node >= 20, this is {version.strip()}")
    for package in ("@bucketco/tracking-sdk", "@reflag/node-sdk"):
        if not (MODULES / package).is_dir():
            pytest.skip(f"{package} is missing: install the npm SDKs with `npm ci --prefix tests/e2e/bucket`")
    return node


@pytest.fixture
def keys(settings) -> dict[str, str]:
    created = bucket.new_source(None, {})
    add_source(settings.database_url, "bucket", "web", created["key"], {}, created["extra_keys"])
    return {"publishable": created["key"], "secret": created["extra_keys"][bucket.SECRET]}


@pytest.fixture
def gateway(settings, keys) -> Iterator[str]:
    with live_gateway(settings) as base:
        yield base


def send(node: str, sdk: str, base: str, key: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"}  # NODE_ENV=test: the node SDK is offline
    proc = subprocess.run(
        [node, "send.mjs", sdk, base, key, "--calls", json.dumps(calls)],
        cwd=BUCKET_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = proc.stdout.strip().splitlines()
    log = json.loads(lines[-1]) if lines else {}
    assert proc.returncode == 0, f"send.mjs failed:\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return log


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# --- @bucketco/tracking-sdk ---------------------------------------------------------------------------

TRACKING_CALLS: list[dict[str, Any]] = [
    {"call": "user", "userId": 1234567890, "attributes": {"name": "Rasmus Makwarth", "some_number": 12}},
    {
        "call": "company",
        "companyId": 101112231415,
        "userId": 1234567890,
        "attributes": {"name": "Acme Corp", "monthly_spend": 99},
    },
    {
        "call": "track",
        "event": "Sent message",
        "userId": "1234567890",
        "companyId": "my_company_id",
        "attributes": {"position": "popover", "version": 3},
        "context": {"active": False},
    },
    {
        "call": "feedback",
        "featureId": "my_feature_id",
        "userId": 1234567890,
        "companyId": 101112231415,
        "score": 4,
        "comment": "It's pretty nice",
    },
]


@pytest.mark.parametrize("prefix", ["", "/bucket"], ids=["root", "bucket-prefix"])
def test_tracking_sdk(node, gateway, keys, drain, db, prefix):
    log = send(node, "tracking", gateway + prefix, keys["publishable"], TRACKING_CALLS)
    assert [r["url"] for r in log["responses"]] == [
        f"{gateway}{prefix}/{keys['publishable']}/{path}" for path in ("user", "company", "event", "feedback")
    ]
    assert [r["status"] for r in log["responses"]] == [200] * 4
    assert all(r["body"]["success"] is True for r in log["responses"])
    feedback_id = log["responses"][3]["body"]["feedbackId"]
    drain()
    rows = stored(db)
    assert [row["type"] for row in rows] == ["identify", "group", "track", "feedback"]
    assert len({row["message_id"] for row in rows}) == 4
    identify, group, track, feedback = rows
    for row in rows:
        assert row["dialect"] == "bucket" and row["dialect_version"] == "tracking"
        assert row["user_id"] == "1234567890"  # a number in the request: stored as a string
        assert row["context"]["library"] == {"name": "@bucketco/tracking-sdk", "version": "2.4.0"}
        assert row["context"]["ip"] == "127.0.0.1"
    assert identify["traits"] == {"name": "Rasmus Makwarth", "some_number": 12}
    assert identify["raw"] == {"userId": 1234567890, "attributes": identify["traits"]}
    assert "active" not in identify["context"]
    assert group["group_id"] == "101112231415"
    assert group["traits"] == {"name": "Acme Corp", "monthly_spend": 99}
    assert (track["name"], track["group_id"]) == ("Sent message", "my_company_id")
    assert track["properties"] == {"position": "popover", "version": 3}
    assert track["context"]["active"] is False
    assert feedback["group_id"] == "101112231415"
    assert feedback["properties"] == {
        "feature_id": "my_feature_id",
        "score": 4,
        "comment": "It's pretty nice",
        "source": "sdk",
    }
    assert feedback_id == str(feedback["id"])  # the id the widget sends back with its comment


# --- @reflag/node-sdk -----------------------------------------------------------------------------------

NODE_CALLS: list[dict[str, Any]] = [
    {"call": "user", "userId": "u-42", "attributes": {"name": "Ada", "email": "ada@example.com"}},
    {
        "call": "company",
        "companyId": "acme",
        "userId": "u-42",
        "attributes": {"name": "Acme", "plan": "enterprise"},
        "context": {"active": False},
    },
    {"call": "track", "userId": 7, "event": "Huddle started", "companyId": "acme", "attributes": {"n": 3}},
    {"call": "flag", "key": "huddle", "user": {"id": "u-42"}, "company": {"id": "acme"}},
    {"call": "remote", "userId": "u-42", "companyId": "acme"},
]


def assert_bulk_stored(db, items: list[dict[str, Any]]) -> None:
    """Each item the SDK posted is one row (matched by its verbatim ``raw``), mapped as it should be."""
    rows = stored(db)
    assert len(rows) == len(items), "an item was stored more than once, or not at all"
    assert Counter(canonical(row["raw"]) for row in rows) == Counter(canonical(item) for item in items)
    by_raw = {canonical(row["raw"]): row for row in rows}
    for item in items:
        row = by_raw[canonical(item)]
        where = f"{item['type']} {item}"
        assert row["dialect"] == "bucket" and row["dialect_version"] == "bulk", where
        assert row["context"]["library"] == {"name": "@reflag/node-sdk", "version": "1.7.1"}, where
        active = (item.get("context") or {}).get("active")
        assert row["context"].get("active") == active, where
        match item["type"]:
            case "user":
                assert row["type"] == "identify", where
                assert row["user_id"] == str(item["userId"]), where
                assert row["traits"] == item.get("attributes", {}), where
            case "company":
                assert row["type"] == "group", where
                assert (row["group_id"], row["user_id"]) == (item["companyId"], item.get("userId")), where
                assert row["traits"] == item.get("attributes", {}), where
            case "event":
                assert row["type"] == "track", where
                assert (row["name"], row["user_id"]) == (item["event"], str(item["userId"])), where
                assert row["group_id"] == item.get("companyId"), where
                assert row["properties"] == item.get("attributes", {}), where
            case "feature-flag-event":
                assert (row["type"], row["name"]) == ("track", "feature-flag-event"), where
                assert row["user_id"] == item["evalContext"]["user"]["id"], where
                assert row["group_id"] == item["evalContext"]["company"]["id"], where
                assert row["properties"] == {k: v for k, v in item.items() if k != "type"}, where
            case other:
                raise AssertionError(f"unexpected item type {other}")


@pytest.mark.parametrize("prefix", ["", "/bucket"], ids=["root", "bucket-prefix"])
def test_reflag_node_sdk(node, gateway, keys, drain, db, prefix):
    base = gateway + prefix
    log = send(node, "node", base, keys["secret"], NODE_CALLS)
    requests = log["requests"]
    assert [(r["method"], r["url"].split("?")[0]) for r in requests] == [
        ("GET", f"{base}/features"),
        ("GET", f"{base}/features/evaluated"),
        ("POST", f"{base}/bulk"),
    ]
    for request in requests:
        assert request["headers"]["Authorization"] == f"Bearer {keys['secret']}"
    assert [r["status"] for r in log["responses"]] == [200, 200, 200]
    assert log["responses"][0]["body"] == {"success": True, "features": [], "flagStateVersion": 0}
    assert log["results"] == [{"key": "huddle", "isEnabled": False}, {}]
    items = requests[2]["body"]
    types = Counter(item["type"] for item in items)
    # bindClient/getFlag also sends the user and the company of the flag's context
    assert types["user"] >= 1 and types["company"] >= 1 and types["event"] == 1
    assert types["feature-flag-event"] == 1
    drain()
    assert_bulk_stored(db, items)
    (track,) = stored(db, "type = 'track' AND name = 'Huddle started'")
    assert track["user_id"] == "7"  # the node SDK lets a number through: stored as a string


def test_reflag_node_sdk_with_a_bad_secret_key_stores_nothing(node, gateway, keys, drain, db):
    """The SDK sees the 403 (it logs the failed bulk); nothing is stored."""
    env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"}
    calls = [{"call": "track", "userId": "u-1", "event": "Nope"}]
    wrong = "sec_" + "x" * 30
    proc = subprocess.run(
        [node, "send.mjs", "node", gateway, wrong, "--calls", json.dumps(calls)],
        cwd=BUCKET_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1
    log = json.loads(proc.stdout.strip().splitlines()[-1])
    bulk = [r for r in log["responses"] if r["url"].endswith("/bulk")]
    assert [r["status"] for r in bulk] == [403]
    assert bulk[0]["body"]["success"] is False
    assert any("failed to send bulk events" in e or "invalid response" in e for e in log["errors"])
    drain()
    assert stored(db) == []
