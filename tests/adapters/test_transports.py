"""Transports: request planning and rendering per kind, signatures, retry classification. Pure."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from trackgate.adapters import segment, transports
from trackgate.adapters.transports import (
    TRANSPORTS,
    plan,
    render,
    retry_after,
    retryable_status,
    verify_signature,
)
from trackgate.schemas.destinations import Part
from trackgate.schemas.request import RequestMeta

NOW = 1_900_000_000.0
RECEIVED = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


def segment_events(body: dict, call: str = "track"):
    meta = RequestMeta(
        source_id="src_1",
        dialect="segment",
        call=call,
        received_at=RECEIVED,
        request_id="req-1",
        ip="198.51.100.7",
    )
    return segment.decode(meta, segment.parse(call, json.dumps(body).encode()))


def test_segment_track_in_is_the_segment_batch_body_out():
    track = {
        "userId": "u-42",
        "event": "Order Completed",
        "messageId": "m-1",
        "properties": {"revenue": 19.99, "currency": "EUR"},
        "context": {"ip": "203.0.113.9", "library": {"name": "analytics-python", "version": "2.3.4"}},
        "timestamp": "2026-03-14T15:09:20.000Z",
        "sentAt": "2026-03-14T15:09:26.000Z",
    }
    events = segment_events(track)
    transport = TRANSPORTS["segment"]
    parts = plan(transport, transports.encode(transport, {"segment": segment}, events))
    assert len(parts) == 1
    request = render(transport, "https://api.segment.io/", {"write_key": "wk_123"}, parts[0], NOW)
    assert request.method == "POST"
    assert request.url == "https://api.segment.io/v1/batch"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"wk_123:").decode()
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "batch": [
            {
                "type": "track",
                "messageId": "m-1",
                "userId": "u-42",
                "event": "Order Completed",
                "properties": {"revenue": 19.99, "currency": "EUR"},
                "context": {
                    "ip": "203.0.113.9",
                    "library": {"name": "analytics-python", "version": "2.3.4"},
                },
                "timestamp": "2026-03-14T15:09:20+00:00",
            }
        ],
        "sentAt": "2030-03-17T17:46:40.000Z",
    }
    # and it reads back as the same event
    again = segment_events(json.loads(request.content), "batch")
    assert (again[0].message_id, again[0].name, again[0].properties) == (
        "m-1",
        "Order Completed",
        events[0].properties,
    )


def test_webhook_body_is_the_canonical_events_and_the_signature_verifies():
    events = segment_events({"userId": "u-1", "event": "Signed Up", "messageId": "m-9"})
    transport = TRANSPORTS["webhook"]
    parts = plan(transport, transports.encode(transport, {}, events))
    request = render(transport, "https://hooks.example.com/in?x=1", {"secret": "s3cret"}, parts[0], NOW)
    assert request.url == "https://hooks.example.com/in?x=1"
    body = json.loads(request.content)
    assert body["sent_at"] == "2030-03-17T17:46:40.000Z"
    assert body["events"] == [msgspec.to_builtins(events[0])]
    header = request.headers["trackgate-signature"]
    assert header.startswith(f"t={int(NOW)},v1=")
    assert verify_signature("s3cret", header, request.content, now=NOW + 10)
    assert not verify_signature("other", header, request.content, now=NOW)
    assert not verify_signature("s3cret", header, request.content + b" ", now=NOW)
    assert not verify_signature("s3cret", header, request.content, now=NOW + 3600)  # a replayed request
    assert not verify_signature("s3cret", "garbage", request.content, now=NOW)


def test_plan_splits_by_count_and_bytes_and_sends_an_oversized_item_alone():
    transport = TRANSPORTS["segment"]
    items = [{"type": "track", "event": f"e{i}"} for i in range(1203)]
    parts = plan(transport, items)
    assert [len(p.items) for p in parts] == [500, 500, 203]
    big = {"type": "track", "event": "big", "properties": {"blob": "x" * 480_000}}
    parts = plan(transport, [items[0], big, items[1]])
    assert [len(p.items) for p in parts] == [1, 1, 1]
    assert parts[1].items[0]["event"] == "big"
    medium = {"type": "track", "properties": {"blob": "x" * 200_000}}
    assert [len(p.items) for p in plan(transport, [medium, medium, medium])] == [2, 1]


def test_per_event_kinds_send_one_item_a_request():
    item = {"type": "track", "path": "/tracking/track", "body": {}}
    for kind in ("openpanel", "spectacle", "tinytrail"):
        assert [len(p.items) for p in plan(TRANSPORTS[kind], [item] * 3)] == [1, 1, 1]


def test_openpanel_request():
    item = {"type": "track", "payload": {"name": "signup", "properties": {"plan": "pro"}}}
    (part,) = plan(TRANSPORTS["openpanel"], [item])
    creds = {"client_id": "2e3c0f4e-8d4e-4b3a-9d7e-1c2b3a4d5e6f", "client_secret": "sec_1"}
    request = render(TRANSPORTS["openpanel"], "https://api.openpanel.dev", creds, part, NOW)
    assert request.url == "https://api.openpanel.dev/track"
    assert request.headers["openpanel-client-id"] == creds["client_id"]
    assert request.headers["openpanel-client-secret"] == "sec_1"
    assert json.loads(request.content) == item


def test_bucket_bulk_and_feedback_requests():
    transport = TRANSPORTS["bucket"]
    items: list[dict[str, Any]] = [
        {"type": "user", "userId": "u1", "attributes": {"name": "Ann"}},
        {"type": "event", "event": "Sent message", "userId": "u1", "companyId": "c1"},
        {"type": "feedback", "featureId": "f1", "userId": "u1", "score": 4},
        {"type": "feedback", "featureId": "f2", "userId": "u1", "comment": "nice"},
        {"type": "company", "companyId": "c1", "userId": "u1"},
    ]
    parts = plan(transport, items)
    assert [(p.route, len(p.items)) for p in parts] == [
        ("/bulk", 2),
        ("/feedback", 1),
        ("/feedback", 1),
        ("/bulk", 1),
    ]
    bulk = render(transport, "https://front.reflag.com/", {"secret_key": "sk_" + "x" * 30}, parts[0], NOW)
    assert bulk.url == "https://front.reflag.com/bulk"
    assert bulk.headers["authorization"] == "Bearer sk_" + "x" * 30
    assert json.loads(bulk.content) == items[:2]
    feedback = render(transport, "https://front.reflag.com", {"secret_key": "k"}, parts[1], NOW)
    assert feedback.url == "https://front.reflag.com/feedback"
    assert json.loads(feedback.content) == {"featureId": "f1", "userId": "u1", "score": 4}
    assert transport.success(200, b'{"success":true}')
    assert not transport.success(200, b'{"success":false}')
    assert not transport.success(200, b"ok")
    assert not transport.success(500, b'{"success":true}')


def test_commandersact_batch_request_keeps_the_key_out_of_the_url():
    transport = TRANSPORTS["commandersact"]
    item = {
        "event_name": "search",
        "search_term": "t-shirts",
        "context": {"event_id": "e1", "event_timestamp": 1},
    }
    (part,) = plan(transport, [item, item])
    request = render(
        transport, "https://collect.commander1.com", {"site_id": "1234", "source_key": "sk"}, part, NOW
    )
    assert request.url == "https://collect.commander1.com/events/batch?tc_s=1234"
    assert request.headers["authorization"] == "Bearer sk"
    assert json.loads(request.content) == {"batch": [item, item]}


def test_spectacle_requests_rest_and_pixel():
    transport = TRANSPORTS["spectacle"]
    rest: dict[str, Any] = {
        "path": "/tracking/track",
        "body": {"userId": "u1", "event": "Trial Started", "properties": {}},
    }
    pixel: dict[str, Any] = {"path": "/t", "body": {"type": "track", "anonymousId": "a1", "event": "Viewed"}}
    parts = plan(transport, [rest, pixel])
    assert [p.route for p in parts] == ["/tracking/track", "/t"]
    creds = {"workspace_id": "ws_1"}
    request = render(transport, "https://api.spectaclehq.com", creds, parts[0], NOW)
    assert request.url == "https://api.spectaclehq.com/tracking/track"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {**rest["body"], "workspaceId": "ws_1"}
    # the JS tag's pixel lives on its own host at Spectacle; on trackgate both share one
    request = render(transport, "https://api.spectaclehq.com", creds, parts[1], NOW)
    assert request.url == "https://t.spectaclehq.com/t"
    assert request.headers["content-type"] == "text/plain"
    assert json.loads(request.content) == {**pixel["body"], "writeKey": "ws_1"}
    assert (
        render(transport, "http://gw:8080/spectacle", creds, parts[1], NOW).url
        == "http://gw:8080/spectacle/t"
    )


def test_tinytrail_request():
    transport = TRANSPORTS["tinytrail"]
    item = {"event_type": "page_view", "url": "https://e.com/a", "path": "/a"}
    request = render(
        transport, "http://tt:8000", {"website_id": "site-uuid"}, Part("/api/v1/collect", [item]), NOW
    )
    assert request.url == "http://tt:8000/api/v1/collect"
    assert json.loads(request.content) == {"website_id": "site-uuid", **item}


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (413, False),
        (422, False),
        (501, False),
        (505, False),
    ],
)
def test_retryable_statuses(status, retryable):
    assert retryable_status(status) is retryable


def test_retry_after_seconds_and_http_date():
    assert retry_after("120", NOW) == 120
    assert retry_after(None, NOW) is None
    assert retry_after("soon", NOW) is None
    for unusable in ("inf", "nan", "-5"):  # would overflow or go back in time: use the backoff instead
        assert retry_after(unusable, NOW) is None
    date = "Sun, 17 Mar 2030 17:48:40 GMT"  # NOW + 120 s
    assert retry_after(date, NOW) == pytest.approx(120)
    assert retry_after("Sun, 17 Mar 2030 17:40:00 GMT", NOW) == 0
