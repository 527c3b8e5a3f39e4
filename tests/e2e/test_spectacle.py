"""Spectacle end to end: real clients' bytes into the real gateway (uvicorn on a socket), a real RQ
worker, PostgreSQL; every event found exactly once.

1. The official GTM server-side template itself (``tests/e2e/spectacle/gtm_template.js``, verbatim from
   Spectacle-HQ/spectacle-gtm-server-side-template) run in Node with the GTM sandbox APIs shimmed
   (``run_gtm.mjs``): its own ``sendHttpRequest`` posts its own ``text/plain`` JSON to ``baseUrl`` + ``/p``,
   ``/i``, ``/t``, ``/g``, and it reports success only on a 2xx. Skipped without ``node`` (no npm packages).
2. The exact bytes of every golden success fixture (GTM/stape pixel bodies and the REST docs calls),
   sent with httpx as recorded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import live_gateway, stored
from trackgate.sources import add_source

HERE = Path(__file__).resolve().parent
GTM_RUNNER = HERE / "spectacle" / "run_gtm.mjs"
GOLDEN = HERE.parent / "golden" / "spectacle"
WS = "ws_e2e-Test_1"  # the template's own rule: ^ws_[a-zA-Z0-9-_]+$
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"
PAGE = "https://shop.example.com/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring#plans"


def gtm(base_url: str, calls: list[dict]) -> dict:
    spec = {
        "remoteAddress": "203.0.113.77",
        "requestHeaders": {"user-agent": UA},
        "cookies": {},
        "calls": [
            {
                "data": {"workspaceId": WS, "baseUrl": base_url, "lensEnabled": True, **c["data"]},
                "eventData": c["event"],
            }
            for c in calls
        ],
    }
    done = subprocess.run(
        ["node", str(GTM_RUNNER), json.dumps(spec)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


EVENT = {
    "page_location": PAGE,
    "page_referrer": "https://www.google.com/",
    "page_title": "Pricing",
    "language": "de-DE",
    "screen_resolution": "1512x982",
    "ga_session_data": {"timezone": "Europe/Berlin"},
}

CALLS: list[dict] = [
    {"data": {"methodType": "page"}, "event": EVENT},
    {
        "data": {
            "methodType": "identify",
            "userId": "user-42",
            "email": "ada@example.org",
            "firstName": "Ada",
            "userTraits": [
                {"key": "companyId", "value": "comp-7"},
                {"key": "companyName", "value": "Engines"},
            ],
        },
        "event": EVENT,
    },
    {  # GA4 ecommerce purchase: value in major units, the template sends cents as a string
        "data": {"methodType": "track", "useGA4EcomData": True},
        "event": {**EVENT, "event_name": "purchase", "transaction_id": "T-1001", "value": 25.99},
    },
    {  # manual revenue in major units, the template's default format
        "data": {
            "methodType": "track",
            "eventName": "Subscription Started",
            "revenueFormat": "majorUnits",
            "revenueMajorUnits": "99.95",
            "currency": "EUR",
            "eventProperties": [{"key": "plan", "value": "pro"}, {"key": "mrr", "value": "9995"}],
        },
        "event": EVENT,
    },
    {  # GA4 refund: "-" + cents
        "data": {"methodType": "track", "useGA4EcomData": True},
        "event": {**EVENT, "event_name": "refund", "transaction_id": "T-1001-R", "value": 25.99},
    },
    {
        "data": {
            "methodType": "group",
            "groupId": "comp-7",
            "groupTraits": [{"key": "name", "value": "Engines"}],
        },
        "event": EVENT,
    },
]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (no npm packages: tests/e2e/spectacle)")
@pytest.mark.parametrize("prefix", ["", "/spectacle"])
def test_official_gtm_template_delivers_exactly_once(settings, drain, db, prefix):
    add_source(settings.database_url, "spectacle", "gtm", WS)
    with live_gateway(settings) as base:
        out = gtm(base + prefix, CALLS)
    assert out["results"] == ["success"] * len(CALLS)
    anonymous_id = out["cookies"]["sp__anon_id"]
    assert out["cookies"]["sp__user_id"] == "user-42"
    drain()
    rows = stored(db)
    assert len(rows) == len(CALLS)
    assert {r["dialect_version"] for r in rows} == {"pixel"}
    assert all(r["anonymous_id"] == anonymous_id for r in rows)
    by_name = {(r["type"], r["name"]): r for r in rows}
    assert len(by_name) == len(CALLS)

    page = by_name[("page", None)]
    assert page["user_id"] is None  # before identify the template sends userId null
    assert page["properties"]["width"] == 1512 and page["properties"]["hash"] == "#plans"
    ctx = page["context"]
    assert ctx["ip"] == "203.0.113.77" and ctx["user_agent"] == UA  # the pixel's ip, the visitor's UA
    assert ctx["campaign"] == {"source": "newsletter", "medium": "email", "name": "spring"}
    assert ctx["timezone"] == "Europe/Berlin" and ctx["locale"] == "de-DE"
    assert ctx["page"]["path"] == "/pricing" and ctx["page"]["title"] == "Pricing"
    assert ctx["extra"] == {"lens": True}

    identify = by_name[("identify", None)]
    assert identify["user_id"] == "user-42" and identify["group_id"] == "comp-7"
    assert identify["traits"]["email"] == "ada@example.org"
    assert identify["traits"]["company"] == {"id": "comp-7", "name": "Engines"}

    purchase = by_name[("track", "purchase")]
    assert purchase["user_id"] == "user-42"  # from the cookie identify set
    assert purchase["message_id"] == "txn:purchase:T-1001"
    assert purchase["properties"] == {"transactionId": "T-1001", "revenue": 25.99}
    assert purchase["raw"]["properties"]["revenue"] == "2599"  # the template's cents string, kept in raw

    sub = by_name[("track", "Subscription Started")]
    assert sub["properties"] == {"revenue": 99.95, "currency": "EUR", "plan": "pro", "mrr": 99.95}

    refund = by_name[("track", "refund")]
    assert refund["properties"] == {"transactionId": "T-1001-R", "revenue": -25.99, "refund": True}

    group = by_name[("group", None)]
    assert group["group_id"] == "comp-7" and group["traits"] == {"name": "Engines"}


def _successes() -> list:
    return sorted(p for p in GOLDEN.glob("*.json") if not p.stem.startswith("error_"))


def _send(client: httpx.Client, fixture: dict, prefix: str = "") -> httpx.Response:
    call = fixture["call"]
    path = f"{prefix}/{call}" if len(call) == 1 else f"{prefix}/tracking/{call}"
    if "body_text" in fixture:
        data = fixture["body_text"].encode()
    else:
        data = json.dumps(fixture["body"], ensure_ascii=False, separators=(",", ":")).encode()
    return client.post(path, content=data, headers=fixture["headers"])


def test_golden_bytes_over_the_wire_exactly_once(settings, drain, db):
    fixtures = [json.loads(p.read_text()) for p in _successes()]
    for key in sorted({f["write_key"] for f in fixtures}):
        add_source(settings.database_url, "spectacle", f"golden-{key}", key)
    with live_gateway(settings) as base, httpx.Client(base_url=base) as client:
        for i, fixture in enumerate(fixtures):
            r = _send(client, fixture, "/spectacle" if i % 2 else "")
            assert r.status_code == 200, (fixture["description"], r.text)
            assert r.json() == {"success": True}
        # GTM retries a failed hit; a purchase carries its transaction id: stored once
        purchase = next(f for f in fixtures if f["request_id"] == "req-gtm_track_purchase")
        assert _send(client, purchase).status_code == 200
    drain()
    rows = stored(db)
    assert len(rows) == len(fixtures)
    for fixture in fixtures:
        (expected,) = fixture["expected"]
        matching = [
            r
            for r in db.execute(
                "SELECT type, name, user_id, anonymous_id, group_id, properties, traits, dialect_version"
                " FROM events WHERE raw::text = %s",
                (expected["raw"],),
            ).fetchall()
        ]
        assert len(matching) == 1, fixture["description"]
        (row,) = matching
        assert row == (
            expected["type"],
            expected.get("name"),
            expected.get("user_id"),
            expected.get("anonymous_id"),
            expected.get("group_id"),
            expected.get("properties", {}),
            expected.get("traits", {}),
            expected["dialect_version"],
        ), fixture["description"]
