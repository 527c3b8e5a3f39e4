"""``POST /event`` is both OpenPanel's (legacy) and Reflag's: the credentials decide, per request."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.helpers import stored
from trackgate.gateway import bucket as bucket_gateway
from trackgate.gateway import openpanel as openpanel_gateway
from trackgate.gateway.app import create_app
from trackgate.sources import add_source


def _source(settings, module, name: str) -> dict:
    created = module.new_source(None, {"origins": []})
    source, _ = add_source(
        settings.database_url,
        module.DIALECT,
        name,
        created["key"],
        created["settings"],
        created["extra_keys"],
    )
    return {"id": source.id, "key": created["key"], **created["extra_keys"]}


@pytest.fixture
def both(settings):
    reflag = _source(settings, bucket_gateway, "reflag")
    openpanel = _source(settings, openpanel_gateway, "op")
    with TestClient(create_app(settings)) as client:
        yield client, reflag, openpanel


def test_bearer_or_publishable_key_is_reflag_and_client_id_is_openpanel(both, drain, db):
    client, reflag, openpanel = both
    bearer = {"Authorization": f"Bearer {reflag['key']}"}
    r = client.post("/event", json={"userId": "u1", "event": "Bearer"}, headers=bearer)
    assert r.status_code == 200 and r.json()["success"] is True
    r = client.post(f"/event?publishableKey={reflag['key']}", json={"userId": "u1", "event": "Query"})
    assert r.status_code == 200 and r.json()["success"] is True
    r = client.post(
        "/event",
        json={"name": "Legacy", "timestamp": "2026-11-23T10:00:00Z", "profileId": "u1"},
        headers={"openpanel-client-id": openpanel["key"], "openpanel-client-secret": openpanel["secret"]},
    )
    assert r.status_code == 202, r.text
    drain()
    rows = {(e["dialect"], e["name"], e["source_id"]) for e in stored(db)}
    assert rows == {
        ("bucket", "Bearer", reflag["id"]),
        ("bucket", "Query", reflag["id"]),
        ("openpanel", "Legacy", openpanel["id"]),
    }


def test_no_credentials_is_openpanels_401_and_stores_nothing(both, drain, db):
    client, _, _ = both
    r = client.post("/event", json={"name": "Nobody", "timestamp": "2026-11-23T10:00:00Z"})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith("Ingestion: ")
    r = client.post("/event", json={"userId": "u1", "event": "x"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403 and r.json()["success"] is False
    drain()
    assert stored(db) == []
