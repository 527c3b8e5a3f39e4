"""The real OpenPanel SDKs, pointed at a live gateway by their base-URL option alone: npm
``@openpanel/sdk`` (``apiUrl``; tests/e2e/openpanel/send.mjs) and PyPI ``openpanel`` (``api_url``).
Every call lands in PostgreSQL exactly once, with the right canonical type, ids, traits and properties."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import live_gateway, stored
from trackgate.gateway import openpanel as gw
from trackgate.sources import add_source

OP_DIR = Path(__file__).resolve().parent / "openpanel"
OP_SDK = OP_DIR / "node_modules" / "@openpanel" / "sdk"


@pytest.fixture
def client(settings) -> dict:
    created = gw.new_source(None, {"origins": []})
    add_source(
        settings.database_url, "openpanel", "sdk", created["key"], created["settings"], created["extra_keys"]
    )
    return {"id": created["key"], "secret": created["extra_keys"]["secret"]}


@pytest.fixture
def gateway(settings, client) -> Iterator[str]:
    with live_gateway(settings) as base:
        yield base


def by_type(rows: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for row in rows:
        found.setdefault(row["type"], []).append(row)
    return found


# --- npm @openpanel/sdk ---------------------------------------------------------------------------------


@pytest.fixture
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the @openpanel/sdk end-to-end test needs node >= 20")
    if not OP_SDK.is_dir():
        pytest.skip(
            "tests/e2e/openpanel/node_modules is missing: install the npm SDK with"
            " `npm ci --prefix tests/e2e/openpanel`"
        )
    return node


@pytest.mark.parametrize("prefix", ["", "/openpanel"], ids=["root", "openpanel-prefix"])
def test_openpanel_npm_sdk(node, gateway, client, drain, db, prefix):
    proc = subprocess.run(
        [node, "send.mjs", gateway + prefix, client["id"], client["secret"]],
        cwd=OP_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"send.mjs failed:\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    log = json.loads(proc.stdout.strip().splitlines()[-1])
    requests = log["requests"]
    assert [r["body"]["type"] for r in requests] == [
        "track", "identify", "track", "increment", "decrement", "group", "assign_group", "track"
    ]  # fmt: skip
    assert all(r["url"] == f"{gateway}{prefix}/track" for r in requests)
    assert requests[0]["headers"]["openpanel-client-id"] == client["id"]
    assert requests[0]["headers"]["openpanel-sdk-name"] == "node"
    assert [r["status"] for r in log["responses"]] == [200] * len(requests)
    device = log["results"][0]["deviceId"]
    assert device and all(result["deviceId"] == device for result in log["results"])
    assert requests[-1]["body"]["payload"]["properties"]["__revenue"] == 1999

    drain()
    rows = stored(db)
    assert len(rows) == len(requests)  # exactly once each
    kinds = by_type(rows)
    opened, signup, revenue = kinds["track"]
    assert (opened["name"], opened["user_id"], opened["anonymous_id"]) == ("app_opened", None, device)
    assert opened["properties"] == {"screen": "home"}
    assert opened["context"]["library"] == {"name": "node", "version": "1.3.1"}
    assert (signup["name"], signup["user_id"], signup["properties"]) == ("signup", "user-42", {"plan": "pro"})
    assert revenue["name"] == "revenue" and revenue["user_id"] == "user-42"
    assert revenue["properties"] == {"currency": "EUR", "revenue": 19.99}
    assert revenue["group_ids"] == ["org_acme"]  # setGroup adds the group to later track calls
    (identify,) = kinds["identify"]
    assert identify["user_id"] == "user-42"
    assert identify["traits"] == {
        "plan": "pro",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": "ada@example.com",
    }
    (inc,) = kinds["increment"]
    assert inc["user_id"] == "user-42" and inc["properties"] == {"property": "stats.logins", "value": 2}
    (dec,) = kinds["decrement"]
    assert dec["user_id"] == "user-42" and dec["properties"] == {"property": "credits", "value": 1}
    (group,) = kinds["group"]
    assert group["group_id"] == "org_acme"
    assert group["traits"] == {"seats": 25, "name": "Acme Inc", "type": "company"}
    (assign,) = kinds["assign_group"]
    assert assign["user_id"] == "user-42" and assign["group_ids"] == ["org_acme"]
    assert all(row["dialect"] == "openpanel" and row["context"]["ip"] == "127.0.0.1" for row in rows)


# --- PyPI openpanel ---------------------------------------------------------------------------------------


class Recorder:
    """Wraps ``requests.post`` as the SDK module sees it: the calls go out unchanged, their answers are
    kept so the test can wait for the SDK's background thread."""

    def __init__(self, real):
        self.real = real
        self.responses: list = []
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        response = self.real(*args, **kwargs)
        with self.lock:
            self.responses.append(response)
        return response

    def wait(self, n: int, timeout: float = 20) -> list:
        deadline = time.monotonic() + timeout
        while len(self.responses) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.responses)


def test_openpanel_python_sdk(gateway, client, drain, db, monkeypatch):
    openpanel_sdk = pytest.importorskip("openpanel.openpanel", reason="pip install openpanel==0.0.1")
    recorder = Recorder(openpanel_sdk.requests.post)
    monkeypatch.setattr(openpanel_sdk.requests, "post", recorder)
    op = openpanel_sdk.OpenPanel(client_id=client["id"], client_secret=client["secret"], api_url=gateway)
    op.set_global_properties({"app": "shop"})
    op.track("app_opened", {"screen": "home"})  # before identify: "profileId": null
    op.identify(
        "user-7", {"firstName": "Grace", "email": "grace@example.com", "properties": {"plan": "team"}}
    )
    op.track("checkout", {"items": 2})
    op.increment("user-7", "visits")  # "value": null
    op.decrement("user-7", "credits", 3)
    op.alias("user-7", "anon-abc")
    responses = recorder.wait(6)
    op._cleanup()
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    bodies = [json.loads(r.request.body) for r in responses]
    assert bodies[0]["payload"]["profileId"] is None
    assert bodies[3]["payload"]["value"] is None
    assert bodies[5]["type"] == "alias"
    assert responses[0].request.headers["openpanel-sdk-name"] == "python"

    drain()
    rows = stored(db)
    assert len(rows) == 6
    kinds = by_type(rows)
    opened, checkout = kinds["track"]
    assert opened["user_id"] is None and opened["anonymous_id"] == responses[0].json()["deviceId"]
    assert opened["properties"] == {"app": "shop", "screen": "home"}
    assert checkout["user_id"] == "user-7" and checkout["properties"] == {"app": "shop", "items": 2}
    (identify,) = kinds["identify"]
    assert identify["user_id"] == "user-7"
    assert identify["traits"] == {
        "app": "shop",
        "plan": "team",
        "firstName": "Grace",
        "email": "grace@example.com",
    }
    assert kinds["increment"][0]["properties"] == {"property": "visits", "value": 1}
    assert kinds["decrement"][0]["properties"] == {"property": "credits", "value": 3}
    (alias,) = kinds["alias"]
    assert (alias["user_id"], alias["previous_id"]) == ("user-7", "anon-abc")
    assert all(row["context"]["library"] == {"name": "python", "version": "0.0.1"} for row in rows)
