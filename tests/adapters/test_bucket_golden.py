"""Golden replay of Bucket/Reflag requests (``tests/golden/bucket/*.json``): the vendors' documented
examples, and what the real SDKs sent (``tests/capture/capture_bucket.py``).

Each fixture is one HTTP request and what must become of it::

    {
      "description": "where it comes from",
      "path": "/{tracking_key}/user" | "/bulk" | "/user?publishableKey=..." ...,  # as requested
      "headers": {...},
      "body": ... | "body_text": "...",        # "body" is sent as compact JSON, "body_text" verbatim
      "received_at": "...", "request_id": "...", "source_id": "...", "ip": "...",
      "key": "...",                            # the key the request presents (success cases)
      "expected": [...],                       # msgspec.to_builtins(events), every "id" ""
      "error": {"code": "...", "path": ...}    # ...or the refusal
    }

The run mirrors the gateway: the path is looked up in the real route table (``gateway.routes``), which
names the call; the key comes from the path, the ``Authorization: Bearer`` header or ``publishableKey``;
then ``parse`` and ``decode``. Pure: no network, no database.

Regenerate after a deliberate change (or after ``tests/capture/capture_bucket.py``)::

    TRACKGATE_REGEN_GOLDEN=1 pytest tests/adapters/test_bucket_golden.py

and review the diff by hand before committing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import pytest

from tests.adapters.golden import REGEN, body_bytes, fixtures, load, regenerate, request_meta
from trackgate.adapters import bucket
from trackgate.adapters.base import AdapterError
from trackgate.gateway.ingest import RouteTable, SharedRoute
from trackgate.gateway.routes import ingest_routes
from trackgate.schemas.event import Event

FIXTURES = fixtures("bucket")
ROUTES = RouteTable(ingest_routes())


def replay(fixture: dict[str, Any]) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in fixture["headers"].items()}  # as the gateway passes them
    path, _, query_string = fixture["path"].partition("?")
    query = dict(parse_qsl(query_string))
    found = ROUTES.match(path)
    assert found is not None, f"no route for {path}"
    route, params = found
    if isinstance(route, SharedRoute):
        route = route.choose(headers, query)
    assert route.adapter is bucket, f"{path} is not a Bucket path"
    key = params.get("tracking_key") or bucket.credentials(headers, None) or query.get("publishableKey")
    try:
        envelope = bucket.parse(route.call, body_bytes(fixture))
        meta = request_meta(fixture, "bucket", headers, route.call, headers=headers, query=query)
        events = bucket.decode(meta, envelope)
    except AdapterError as exc:
        return {"error": {"code": exc.code, "path": exc.path}}
    return {"key": key, "expected": msgspec.to_builtins(events)}


def test_there_are_fixtures():
    names = {p.stem for p in FIXTURES}
    for prefix in ("docs_", "reflag_docs_", "tracking_sdk_", "node_sdk_", "browser_sdk_", "error_"):
        assert any(n.startswith(prefix) for n in names), prefix
    for call in ("user", "company", "event", "feedback"):
        assert f"tracking_sdk_{call}" in names and f"docs_{call}" in names


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_golden(path: Path):
    fixture = load(path)
    result = replay(fixture)
    if REGEN:
        fixture = regenerate(path, fixture, result, ("expected", "error", "key"))
    if "error" in fixture:
        assert result == {"error": fixture["error"]}
        return
    assert fixture.get("expected") is not None, f"{path.name} has no expected events: regenerate and review"
    assert "error" not in result, f"refused: {result.get('error')}"
    assert result["key"] == fixture["key"]
    assert result["expected"] == fixture["expected"]


@pytest.mark.parametrize("path", [p for p in FIXTURES if "error" not in load(p)], ids=lambda p: p.stem)
def test_raw_is_the_item_as_sent(path: Path):
    """Every event's ``raw`` is its item's exact text, and a bulk has one event per item, in order."""
    fixture = load(path)
    body = body_bytes(fixture)
    raws = [event["raw"] for event in fixture["expected"]]
    parsed = json.loads(body)
    if isinstance(parsed, list):
        assert [json.loads(raw) for raw in raws] == parsed
        for raw in raws:
            assert raw.encode() in body
    else:
        assert raws == [body.decode()]


@pytest.mark.parametrize("path", [p for p in FIXTURES if "node_sdk" in p.stem], ids=lambda p: p.stem)
def test_encode_gives_back_what_the_node_sdk_sent(path: Path):
    """``encode`` builds the node SDK's own items (plus the ``timestamp`` the API accepts)."""
    fixture = load(path)
    events = [msgspec.convert(e, Event) for e in fixture["expected"]]
    encoded = bucket.encode(events)
    for item, event in zip(encoded, events, strict=True):
        assert item.pop("timestamp") == event.timestamp.isoformat()
    assert encoded == json.loads(body_bytes(fixture))
