"""First-party serving (gateway/first_party.py): with TRACKGATE_FIRST_PARTY_PREFIX every path is also
served under the prefix, and analytics.js's settings send it back through the prefix."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import msgspec
import pytest
from starlette.testclient import TestClient

from tests.helpers import stored
from trackgate.gateway.app import create_app
from trackgate.gateway.first_party import under_prefix


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
def prefixed(settings, write_key) -> Iterator[TestClient]:
    with TestClient(create_app(msgspec.structs.replace(settings, first_party_prefix="/t"))) as client:
        yield client


def test_settings_under_the_prefix_send_analytics_js_back_through_it(prefixed, write_key, drain, db):
    r = prefixed.get(f"/t/v1/projects/{write_key}/settings")
    assert r.status_code == 200, r.text
    segment_io = r.json()["integrations"]["Segment.io"]
    assert segment_io["apiHost"] == "testserver/t/v1"
    url = f"{segment_io['protocol']}://{segment_io['apiHost']}/t"  # analytics.js's track call
    body = {"type": "track", "event": "Signed Up", "messageId": "fp-1", "anonymousId": "a-1"}
    sent = prefixed.post(
        url, content=json.dumps(body), headers={**basic(write_key), "Content-Type": "text/plain"}
    )
    assert sent.status_code == 200, sent.text
    drain()
    rows = stored(db)
    assert [(row["message_id"], row["name"]) for row in rows] == [("fp-1", "Signed Up")]


def test_unprefixed_paths_still_answer_and_name_no_prefix(prefixed, write_key):
    r = prefixed.get(f"/v1/projects/{write_key}/settings")
    assert r.json()["integrations"]["Segment.io"]["apiHost"] == "testserver/v1"
    assert prefixed.get("/js/tracker.js").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/t/analytics.js/v1/wk_any/analytics.min.js",
        "/t/segment/analytics.js/v1/wk_any/analytics.min.js",
        "/t/js/tracker.js",
        "/t/tinytrail/js/tracker.js",
    ],
)
def test_scripts_under_the_prefix(prefixed, path):
    r = prefixed.get(path)
    assert r.status_code == 200, path
    assert r.headers["etag"] and r.headers["cache-control"].startswith("public")


def test_public_url_and_prefix(settings, write_key):
    public = msgspec.structs.replace(settings, public_url="https://shop.example.com", first_party_prefix="/t")
    with TestClient(create_app(public)) as client:
        segment_io = client.get(f"/t/v1/projects/{write_key}/settings").json()["integrations"]["Segment.io"]
    assert segment_io["apiHost"] == "shop.example.com/t/v1"
    assert segment_io["protocol"] == "https"


def test_only_the_whole_segment_is_the_prefix(prefixed, client, write_key):
    assert prefixed.get(f"/tx/v1/projects/{write_key}/settings").status_code == 404
    assert prefixed.post("/tx/v1/t", content=b"{}", headers=basic(write_key)).status_code == 404
    # without the setting, nothing is served under /t
    assert client.get(f"/t/v1/projects/{write_key}/settings").status_code == 404
    assert client.get("/t/js/tracker.js").status_code == 404


def test_only_paths_below_the_prefix_are_taken():
    scope = {"type": "http", "path": "/t", "root_path": ""}
    assert under_prefix(scope, "/t") is scope  # POST /t is Spectacle's pixel track call
    assert under_prefix(scope, None) is scope
    below = under_prefix({**scope, "path": "/t/v1/t"}, "/t")
    assert below["root_path"] == "/t" and below["path"] == "/t/v1/t"
    mounted = under_prefix({**scope, "path": "/app/t/v1/t", "root_path": "/app"}, "/t")
    assert mounted["root_path"] == "/app/t"


@pytest.mark.parametrize("prefix", ["/v1", "/segment", "/track", "/js", "/tinytrail", "/api/v1"])
def test_a_prefix_that_would_hide_served_paths_is_refused(settings, prefix):
    with pytest.raises(ValueError, match=f"TRACKGATE_FIRST_PARTY_PREFIX={prefix} would hide {prefix}/"):
        create_app(msgspec.structs.replace(settings, first_party_prefix=prefix))
