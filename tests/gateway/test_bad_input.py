"""Bad input found by probing every dialect: each gets a clear error in the vendor's shape (or, for
Commanders Act, a refusal in its 200 body) and nothing is stored from it."""

from __future__ import annotations

import base64

import pytest
from starlette.testclient import TestClient

from tests.helpers import stored
from trackgate.gateway import bucket, commandersact, openpanel, spectacle, tinytrail
from trackgate.gateway.app import create_app
from trackgate.sources import add_source

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
YEAR_ZERO = "0001-01-01T00:00:00+01:00"  # parses, but is year 0 in UTC
DEEP = "[" * 5000 + "]" * 5000


def _source(settings, module) -> dict:
    created = module.new_source(None, {"domain": "example.com", "origins": []})
    add_source(
        settings.database_url,
        module.DIALECT,
        "probe",
        created["key"],
        created["settings"],
        created["extra_keys"],
    )
    return {"key": created["key"], **created["extra_keys"]}


@pytest.fixture
def gw(settings):
    keys = {m.DIALECT: _source(settings, m) for m in (spectacle, openpanel, bucket, commandersact, tinytrail)}
    add_source(settings.database_url, "segment", "probe", "wk-probe")
    with TestClient(create_app(settings)) as client:
        yield client, keys


def _requests(keys: dict) -> list[tuple[str, str, dict, str | dict | list]]:
    op = {
        "openpanel-client-id": keys["openpanel"]["key"],
        "openpanel-client-secret": keys["openpanel"]["secret"],
    }
    reflag = {"Authorization": f"Bearer {keys['bucket']['secret']}"}
    segment = {"Authorization": "Basic " + base64.b64encode(b"wk-probe:").decode()}
    ws = keys["spectacle"]["key"]
    return [
        ("segment", "/v1/track", segment, {"userId": "v", "event": "E", "timestamp": YEAR_ZERO}),
        (
            "spectacle",
            "/tracking/track",
            {},
            {"workspaceId": ws, "userId": "v", "event": "E", "timestamp": YEAR_ZERO},
        ),
        ("bucket", "/bulk", reflag, [{"type": "event", "event": "E", "userId": "v", "timestamp": YEAR_ZERO}]),
        ("bucket", "/bulk", reflag, DEEP),
        ("bucket", "/bulk", reflag, '[{"type":"event","event":"E","userId":1e400}]'),
        ("openpanel", "/track", op, DEEP),
        (
            "tinytrail",
            "/api/v1/collect",
            {"User-Agent": BROWSER},
            {
                "website_id": keys["tinytrail"]["key"],
                "event_type": "page_view",
                "url": "http://[::1/",
                "path": "/",
            },
        ),
    ]


def test_each_is_a_400_naming_the_problem_and_stores_nothing(gw, drain, db):
    client, keys = gw
    for dialect, path, headers, body in _requests(keys):
        if isinstance(body, str):
            r = client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
        else:
            r = client.post(path, json=body, headers=headers)
        assert r.status_code == 400, (dialect, path, r.status_code, r.text)
        assert "internal" not in r.text.lower(), (dialect, r.text)
    drain()
    assert stored(db) == []


def test_openpanel_ignores_a_timestamp_it_cannot_use(gw, drain, db):
    """``__timestamp`` is ignored when invalid, as OpenPanel does: the event is dated on arrival."""
    client, keys = gw
    op = {
        "openpanel-client-id": keys["openpanel"]["key"],
        "openpanel-client-secret": keys["openpanel"]["secret"],
    }
    body = {
        "type": "track",
        "payload": {"name": "E", "profileId": "v", "properties": {"__timestamp": YEAR_ZERO}},
    }
    assert client.post("/track", json=body, headers=op).status_code == 200
    drain()
    (event,) = stored(db)
    assert event["timestamp"] == event["received_at"]


def test_commandersact_refuses_only_the_event_with_a_number_out_of_range(gw, drain, db):
    client, keys = gw
    good = '{"event_name":"search","context":{"event_id":"e-ok","event_timestamp":1639044446636}}'
    bad = good.replace('"e-ok"', '"e1"').replace(
        '{"event_name":"search",', '{"event_name":"search","user":{"id":1e400},'
    )
    r = client.post(
        f"/events/batch?tc_s=1&token={keys['commandersact']['key']}",
        content='{"batch":[' + good + "," + bad + "]}",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    (refused,) = r.json()["refused"]
    assert refused["index"] == 1 and refused["code"] == "invalid_json"
    drain()
    assert [e["message_id"] for e in stored(db)] == ["e-ok"]
