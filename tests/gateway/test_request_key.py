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
