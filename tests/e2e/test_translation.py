"""Issue 6's done-when over HTTP, against the translation goldens (``tests/golden/translations/``):
a Commanders Act v1 client reaches a v2 endpoint with v2 payloads, and a Segment source fans out to a
webhook and an OpenPanel-compatible endpoint; each destination receives each event exactly once."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from tests.helpers import stored
from trackgate.adapters.transports import verify_signature
from trackgate.gateway.app import create_app
from trackgate.sources import add_source

TRANSLATIONS = Path(__file__).resolve().parent.parent / "golden" / "translations"
GOLDEN = TRANSLATIONS.parent
HOOK = "https://hooks.example.com/trackgate"


def translation(name: str) -> dict:
    return json.loads((TRANSLATIONS / f"{name}.json").read_text())


def only_request(route) -> httpx.Request:
    assert route.call_count == 1, route.call_count
    return route.calls[0].request


def assert_sent_as_golden(request, expected: dict) -> None:
    assert request.method == expected["method"]
    assert str(request.url) == expected["url"]
    for header, value in expected["headers"].items():
        assert request.headers[header] == value, header
    assert json.loads(request.content) == expected["body"]


@pytest.fixture
def ca_key(fsettings, db) -> tuple[str, str]:
    key = "ca_" + secrets.token_hex(8)
    add_source(fsettings.database_url, "commandersact", "shop", key)
    source_id = db.execute("SELECT id FROM sources WHERE dialect = 'commandersact'").fetchone()[0]
    return key, source_id


@pytest.fixture
def api(settings, ca_key) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_commandersact_v1_client_reaches_a_v2_endpoint_with_v2_payloads(
    api, ca_key, drain, drain_forward, add, clock, db
):
    golden = translation("commandersact_v1_to_v2")
    (expected,) = golden["expected"]
    destination = golden["destination"]
    key, source_id = ca_key
    add("commandersact", "ca-v2", destination["base_url"], destination["credentials"], source_ids=[source_id])
    v1 = json.loads((GOLDEN / golden["input"]["golden"]).read_text())
    # the v1 client as the vendor documents it: POST /events?tc_s=, Bearer source key, the v1 body
    r = api.post("/events?tc_s=29", json=v1["body"], headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    drain()
    (row,) = stored(db)
    assert (row["dialect"], row["dialect_version"], row["message_id"]) == (
        "commandersact",
        "v1",
        "202110130000000000",
    )
    with respx.mock(assert_all_called=True) as mock:
        v2 = mock.post(expected["url"]).respond(200)
        drain_forward()
    assert_sent_as_golden(only_request(v2), expected)
    assert "v2-source-key" not in str(only_request(v2).url)  # the key travels in the header only

    # the v1 client sends the same event again: stored once, so nothing new is forwarded
    r = api.post("/events?tc_s=29", json=v1["body"], headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    drain()
    assert len(stored(db)) == 1
    with respx.mock(assert_all_called=False) as mock:
        again = mock.post(url__startswith=destination["base_url"]).respond(200)
        drain_forward()
    assert again.call_count == 0
    assert db.execute("SELECT status, attempts, n_events FROM deliveries").fetchall() == [("delivered", 1, 1)]


def test_a_segment_source_fans_out_to_a_webhook_and_an_openpanel_compatible_endpoint(
    client, write_key, drain, drain_forward, add, clock, db
):
    golden = translation("segment_track_to_openpanel")
    (expected,) = golden["expected"]
    destination = golden["destination"]
    add("webhook", "audit", HOOK, {"secret": "whsec_e2e"})
    add("openpanel", "op", destination["base_url"], destination["credentials"])
    track = json.loads(golden["input"]["request"]["body_text"])
    # the golden's input arrived from 203.0.113.50; here the client says so itself (TestClient has no IP)
    track["context"]["ip"] = golden["input"]["request"]["ip"]
    r = client.post("/v1/track", json=track, auth=(write_key, ""))
    assert r.status_code == 200, r.text
    drain()
    with respx.mock(assert_all_called=True) as mock:
        hook = mock.post(HOOK).respond(204)
        op = mock.post(expected["url"]).respond(200, json={"deviceId": "d"})
        drain_forward()

    request = only_request(hook)
    signed = request.headers["trackgate-signature"]
    assert verify_signature("whsec_e2e", signed, request.content, now=clock())
    assert not verify_signature("other-secret", signed, request.content, now=clock())
    (event,) = json.loads(request.content)["events"]
    assert (event["message_id"], event["type"], event["name"], event["user_id"]) == (
        track["messageId"],
        "track",
        "signup",
        "user-42",
    )
    assert_sent_as_golden(only_request(op), expected)

    # the same message again (a client retry): stored once, forwarded once
    r = client.post("/v1/track", json=track, auth=(write_key, ""))
    assert r.status_code == 200, r.text
    drain()
    assert len(stored(db)) == 1
    with respx.mock(assert_all_called=False) as mock:
        hook_again = mock.post(HOOK).respond(204)
        op_again = mock.post(url__startswith=destination["base_url"]).respond(200)
        drain_forward()
    assert hook_again.call_count == 0 and op_again.call_count == 0
    assert sorted(db.execute("SELECT status, attempts, n_events FROM deliveries").fetchall()) == [
        ("delivered", 1, 1),
        ("delivered", 1, 1),
    ]
