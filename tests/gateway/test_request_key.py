"""A request sent again is deduplicated when it names itself (issue 11 item 5).

A client that got no answer (a dropped connection, a 503 after a timeout) sends the same request again.
Items that carry no message id of the client's take one derived from the request itself when the item
carries the client's own time or the request an ``Idempotency-Key``: then the retry is stored once. A
body with neither (TinyTrail's tracker) may be a second real event (the same page viewed twice): both
are kept. Real app, real Redis, a real worker into PostgreSQL.
"""

from __future__ import annotations

import base64

import msgspec
from starlette.testclient import TestClient

from tests.helpers import stored
from trackgate.gateway import openpanel
from trackgate.gateway.app import create_app
from trackgate.gateway.tinytrail import BROWSER_UA
from trackgate.gateway.tinytrail import new_source as new_website
from trackgate.sources import add_source

WEBSITE = "550e8400-e29b-41d4-a716-446655440000"
PAGE_VIEW = {"website_id": WEBSITE, "event_type": "page_view", "url": "https://example.com/a", "path": "/a"}


def _send_twice(settings, path: str, body: dict, headers: dict) -> None:
    with TestClient(create_app(settings)) as client:
        for _ in range(2):
            r = client.post(path, json=body, headers=headers)
            assert r.status_code < 300, r.text


def test_an_openpanel_retry_with_the_clients_time_is_stored_once(settings, drain, db):
    created = openpanel.new_source(None, {"origins": ["*"]})
    add_source(
        settings.database_url, "openpanel", "web", created["key"], created["settings"], created["extra_keys"]
    )
    headers = {
        "openpanel-client-id": created["key"],
        "openpanel-client-secret": created["extra_keys"]["secret"],
    }
    body = {
        "type": "track",
        "payload": {
            "name": "signup",
            "profileId": "u-1",
            "properties": {"__timestamp": "2026-05-04T09:58:00.000Z"},
        },
    }
    _send_twice(settings, "/track", body, headers)
    drain()
    assert [row["name"] for row in stored(db)] == ["signup"]


def test_a_segment_retry_without_message_id_but_with_its_time_is_stored_once(settings, write_key, drain, db):
    body = {"userId": "u-1", "event": "Retried", "timestamp": "2026-05-04T09:58:00.123Z"}
    _send_twice(settings, "/v1/track", body, {"authorization": "Basic " + _basic(write_key)})
    drain()
    assert [row["name"] for row in stored(db)] == ["Retried"]


def test_two_identical_bodies_without_a_time_are_two_events(settings, drain, db):
    settings = msgspec.structs.replace(settings, tinytrail_rate_limit=1000)
    created = new_website(WEBSITE, {"domain": "example.com"})
    add_source(settings.database_url, "tinytrail", "example.com", created["key"], created["settings"])
    _send_twice(settings, "/api/v1/collect", PAGE_VIEW, {"user-agent": BROWSER_UA})
    drain()
    assert len(stored(db)) == 2


def test_an_idempotency_key_makes_a_body_without_a_time_name_itself(settings, drain, db):
    settings = msgspec.structs.replace(settings, tinytrail_rate_limit=1000)
    created = new_website(WEBSITE, {"domain": "example.com"})
    add_source(settings.database_url, "tinytrail", "example.com", created["key"], created["settings"])
    headers = {"user-agent": BROWSER_UA, "idempotency-key": "view-1"}
    _send_twice(settings, "/api/v1/collect", PAGE_VIEW, headers)
    with TestClient(create_app(settings)) as client:  # another key: another request
        r = client.post("/api/v1/collect", json=PAGE_VIEW, headers={**headers, "idempotency-key": "view-2"})
        assert r.status_code == 202
    drain()
    assert len(stored(db)) == 2


def _basic(key: str) -> str:
    return base64.b64encode(f"{key}:".encode()).decode()


def test_the_key_is_worked_out_once_and_only_for_an_item_without_a_message_id(monkeypatch):
    """The gateway hands adapters a lazy key (``RequestMeta.lazy_key``): a request whose items carry
    their own message ids (every real SDK's) never digests its body; one that needs the key digests it
    once, however many of its items ask, and gets the same key as before."""
    from datetime import UTC, datetime

    from trackgate.adapters import segment
    from trackgate.schemas import request
    from trackgate.schemas.request import LazyRequestKey, RequestMeta

    digests: list[bytes] = []
    digest = request.request_key

    def counted(dialect: str, source_id: str, call: str, idempotency_key: str | None, body: bytes) -> str:
        digests.append(body)
        return digest(dialect, source_id, call, idempotency_key, body)

    monkeypatch.setattr(request, "request_key", counted)

    def decode(call: str, body: bytes) -> list[str]:
        meta = RequestMeta(
            source_id="src_1",
            dialect="segment",
            call=call,
            received_at=datetime(2026, 5, 4, 10, tzinfo=UTC),
            request_id="req-1",
            lazy_key=LazyRequestKey("segment", "src_1", call, None, body),
        )
        return [e.message_id for e in segment.decode(meta, segment.parse(call, body))]

    with_ids = msgspec.json.encode(
        {"userId": "u", "event": "E", "messageId": "m-1", "timestamp": "2026-05-04"}
    )
    assert decode("track", with_ids) == ["m-1"]
    assert digests == []

    item = {"type": "track", "userId": "u", "event": "E", "timestamp": "2026-05-04T09:58:00Z"}
    batch = msgspec.json.encode({"batch": [item, item, item]})
    key = digest("segment", "src_1", "batch", None, batch)
    assert decode("batch", batch) == [f"{key}-0", f"{key}-1", f"{key}-2"]
    assert digests == [batch]
