"""Golden replay of recorded Segment-dialect requests (``tests/golden/segment/*.json``).

Each fixture is one HTTP request and what the adapter must make of it::

    {
      "description": "where it comes from",
      "call": "track" | "t" | "batch" | ...,     # the path's last segment
      "headers": {...},                          # as sent (names in any case)
      "body": {...} | "body_text": "...",        # "body" is sent as compact JSON (",", ":"; UTF-8),
                                                 # "body_text" verbatim (already inflated if gzipped)
      "received_at": "...", "request_id": "...", "source_id": "...", "ip": "...",
      "write_key": "...",                        # what credentials() must find (success cases)
      "expected": [...],                         # msgspec.to_builtins(events), every "id" ""
      "error": {"code": "...", "path": ...},     # ...or the refusal
      "xfail": "why"                             # optional: a known adapter bug; "expected" is the
                                                 # right answer, the test is a strict xfail
    }

The run mirrors ``gateway/ingest.py``: ``credentials(headers, None)``, ``parse``, ``credentials(headers,
envelope)`` when the header gave nothing, ``decode``. Pure: no network, no database.

Regenerate after a deliberate change (or after ``tests/capture/capture_segment.py``)::

    TRACKGATE_REGEN_GOLDEN=1 pytest tests/adapters/test_segment_golden.py

It rewrites ``expected``/``error``/``write_key`` of every fixture without ``xfail`` from what the
adapter does now. Review the diff by hand against the rules (reference/segment.md) before committing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.datastructures import Headers

from tests.adapters.golden import REGEN, body_bytes, fixtures, load, regenerate, request_meta
from trackgate.adapters import segment
from trackgate.adapters.base import AdapterError

FIXTURES = fixtures("segment")


def replay(fixture: dict[str, Any]) -> dict[str, Any]:
    """Run the fixture's request through the adapter: {"write_key", "expected"} or {"error"}."""
    headers = Headers(headers=fixture["headers"])  # case-insensitive, as the gateway passes them
    body = body_bytes(fixture)
    try:
        key = segment.credentials(headers, None)
        envelope = segment.parse(fixture["call"], body)
        if key is None:
            key = segment.credentials(headers, envelope)
        events = segment.decode(request_meta(fixture, "segment", headers), envelope)
    except AdapterError as exc:
        return {"error": {"code": exc.code, "path": exc.path}}
    return {"write_key": key, "expected": msgspec.to_builtins(events)}


def _params() -> list[Any]:
    params = []
    for path in FIXTURES:
        fixture = load(path)
        reason = fixture.get("xfail")
        # an xfail needs hand-written expected events; without them the test must fail, not xfail
        ready = fixture.get("expected") is not None or "error" in fixture
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason and ready else []
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def test_there_are_fixtures():
    names = {p.stem for p in FIXTURES}
    assert len(names) >= 20
    # one of each kind the brief asks for: docs, real SDKs, analytics.js, refusals
    for prefix in ("docs_", "segment_python_", "rudder_python_", "node_", "analyticsjs_", "error_"):
        assert any(n.startswith(prefix) for n in names), prefix


@pytest.mark.parametrize("path", _params())
def test_golden(path: Path):
    fixture = load(path)
    result = replay(fixture)
    if REGEN and "xfail" not in fixture:
        fixture = regenerate(path, fixture, result, ("expected", "error", "write_key"))

    if "error" in fixture:
        assert "error" in result, f"expected a refusal {fixture['error']}, got events"
        assert result["error"] == fixture["error"]
        return
    assert fixture.get("expected") is not None, f"{path.name} has no expected events: regenerate and review"
    assert "error" not in result, f"refused: {result.get('error')}"
    assert result["write_key"] == fixture["write_key"]
    assert result["expected"] == fixture["expected"]


@pytest.mark.parametrize("path", [p for p in FIXTURES if "error" not in load(p)], ids=lambda p: p.stem)
def test_raw_is_a_verbatim_slice_of_the_body(path: Path):
    """Every event's ``raw`` is its message's exact text: bytes the client sent, not a re-encoding."""
    fixture = load(path)
    body = body_bytes(fixture)
    for event in fixture["expected"]:
        assert event["raw"].encode() in body
    if fixture["call"] in segment.CALLS and segment.CALLS[fixture["call"]] != "batch":
        assert fixture["expected"][0]["raw"].encode() == body


@pytest.mark.parametrize("path", [p for p in FIXTURES if "body_text" in load(p)], ids=lambda p: p.stem)
def test_body_text_is_json(path: Path):
    fixture = load(path)
    if fixture.get("error", {}).get("code") == "invalid_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(fixture["body_text"])
    else:
        json.loads(fixture["body_text"])
