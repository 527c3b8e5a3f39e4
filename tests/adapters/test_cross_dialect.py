"""Cross-dialect: a Segment track and identify in, each destination kind's request out, as that
vendor's own SDK sends it, and read back by trackgate's own adapter for that dialect."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from trackgate.adapters import transports
from trackgate.adapters.registry import ADAPTERS
from trackgate.adapters.transports import TRANSPORTS, plan, render
from trackgate.schemas.request import RequestMeta

NOW = 1_900_000_000.0
RECEIVED = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
TRACK = {
    "type": "track",
    "userId": "u-42",
    "event": "Order Completed",
    "messageId": "m-1",
    "properties": {"revenue": 19.99, "currency": "EUR", "plan": "pro"},
    "context": {
        "ip": "203.0.113.9",
        "userAgent": "Mozilla/5.0",
        "page": {"url": "https://shop.example.com/checkout?x=1", "path": "/checkout", "title": "Checkout"},
    },
    "timestamp": "2026-03-14T15:09:20.000Z",
}
IDENTIFY = {
    "type": "identify",
    "userId": "u-42",
    "messageId": "m-2",
    "traits": {"email": "ann@example.com", "firstName": "Ann"},
    "timestamp": "2026-03-14T15:09:21.000Z",
}
CREDS = {
    "openpanel": {"client_id": "2e3c0f4e-8d4e-4b3a-9d7e-1c2b3a4d5e6f", "client_secret": "sec"},
    "bucket": {"secret_key": "sk_" + "x" * 30},
    "commandersact": {"site_id": "1234", "source_key": "key"},
    "spectacle": {"workspace_id": "ws_example"},
    "tinytrail": {"website_id": "550e8400-e29b-41d4-a716-446655440000"},
}


def segment_in():
    meta = RequestMeta(
        source_id="src_1",
        dialect="segment",
        call="batch",
        received_at=RECEIVED,
        request_id="r",
        ip="198.51.100.7",
    )
    segment = ADAPTERS["segment"]
    return segment.decode(meta, segment.parse("batch", json.dumps({"batch": [TRACK, IDENTIFY]}).encode()))


def requests_for(kind: str):
    transport = TRANSPORTS[kind]
    base = transport.default_base
    assert base is not None, f"{kind} has no vendor host"  # only webhooks have none
    items = transports.encode(transport, ADAPTERS, segment_in())
    return [render(transport, base, CREDS[kind], part, NOW) for part in plan(transport, items)]


def read_back(dialect: str, call: str, request) -> list:
    adapter = ADAPTERS[dialect]
    meta = RequestMeta(
        source_id="src_2",
        dialect=dialect,
        call=call,
        received_at=RECEIVED,
        request_id="back",
        headers={k.lower(): v for k, v in request.headers.items()},
    )
    envelope = adapter.parse(call, request.content)
    if hasattr(adapter, "decode_partial"):
        decoded = adapter.decode_partial(meta, envelope)
        assert decoded.refused == []
        return decoded.events
    return adapter.decode(meta, envelope)


def test_openpanel_gets_one_track_call_per_event():
    track, identify = requests_for("openpanel")
    assert track.url == identify.url == "https://api.openpanel.dev/track"
    assert track.headers["openpanel-client-id"] == CREDS["openpanel"]["client_id"]
    assert track.headers["openpanel-client-secret"] == "sec"
    body = json.loads(track.content)
    assert body["type"] == "track"
    assert body["payload"]["name"] == "Order Completed" and body["payload"]["profileId"] == "u-42"
    assert body["payload"]["properties"]["__revenue"] == 1999  # OpenPanel takes minor units
    assert json.loads(identify.content)["type"] == "identify"
    (back,) = read_back("openpanel", "track", track)
    assert (back.type, back.name, back.user_id, back.properties["revenue"]) == (
        "track",
        "Order Completed",
        "u-42",
        19.99,
    )


def test_bucket_gets_one_bulk_with_an_event_and_a_user():
    (bulk,) = requests_for("bucket")
    assert bulk.url == "https://front.reflag.com/bulk"
    assert bulk.headers["authorization"] == "Bearer " + CREDS["bucket"]["secret_key"]
    items = json.loads(bulk.content)
    assert [i["type"] for i in items] == ["event", "user"]
    assert items[0]["event"] == "Order Completed" and items[0]["userId"] == "u-42"
    assert items[1]["attributes"]["email"] == "ann@example.com"
    back = read_back("bucket", "bulk", bulk)
    assert [(e.type, e.user_id) for e in back] == [("track", "u-42"), ("identify", "u-42")]


def test_commandersact_gets_one_v2_batch():
    (batch,) = requests_for("commandersact")
    assert batch.url == "https://collect.commander1.com/events/batch?tc_s=1234"
    assert batch.headers["authorization"] == "Bearer key"
    events = json.loads(batch.content)["batch"]
    assert events[0]["event_name"] == "Order Completed"
    assert events[0]["context"]["event_id"] == "m-1"
    assert events[0]["user"]["id"] == "u-42"
    back = read_back("commandersact", "batch", batch)
    assert back[0].name == "Order Completed" and back[0].message_id == "m-1"


def test_spectacle_gets_rest_calls_with_the_workspace_id():
    track, identify = requests_for("spectacle")
    assert track.url == "https://api.spectaclehq.com/tracking/track"
    assert identify.url == "https://api.spectaclehq.com/tracking/identify"
    body = json.loads(track.content)
    assert body["workspaceId"] == "ws_example" and body["event"] == "Order Completed"
    assert body["properties"]["revenue"] == 1999  # Spectacle takes the smallest currency unit
    (back,) = read_back("spectacle", "track", track)
    assert (back.name, back.user_id, back.properties["revenue"]) == ("Order Completed", "u-42", 19.99)


def test_tinytrail_gets_a_collect_call_with_the_website_id():
    requests = requests_for("tinytrail")
    assert {r.url for r in requests} == {"http://localhost:8000/api/v1/collect"}
    body = json.loads(requests[0].content)
    assert body["website_id"] == CREDS["tinytrail"]["website_id"]
    assert body["url"] == "https://shop.example.com/checkout?x=1" and body["path"] == "/checkout"
    (back,) = read_back("tinytrail", "collect", requests[0])
    assert back.context.page.path == "/checkout"
