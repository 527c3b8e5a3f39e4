"""Golden replay of Spectacle-dialect requests (``tests/golden/spectacle/*.json``).

Sources: the REST API page (``/work/shared/seeds/spectacle-rest-api.txt``, ``docs_*``), the official
GTM server-side template (Spectacle-HQ/spectacle-gtm-server-side-template@50c3a89 ``template.tpl``,
``gtm_*``: the bytes its ``JSON.stringify(payload)`` produces, key order included) and stape's
(stape-io/spectacle-tag-server@500bb72, ``stape_*``), and refusals (``error_*``).

Same fixture format as ``test_segment_golden.py`` (``call`` is the path's last segment: ``track`` for
REST, ``t`` for the pixel). Regenerate after a deliberate change, then review the diff by hand::

    TRACKGATE_REGEN_GOLDEN=1 pytest tests/adapters/test_spectacle_golden.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.datastructures import Headers

from tests.adapters.golden import REGEN, body_bytes, fixtures, load, regenerate, request_meta
from trackgate.adapters import spectacle
from trackgate.adapters.base import AdapterError
from trackgate.schemas.event import Event
from trackgate.schemas.request import RequestMeta

FIXTURES = fixtures("spectacle")
SUCCESSES = [p for p in FIXTURES if not p.stem.startswith("error_")]


def replay(fixture: dict[str, Any]) -> dict[str, Any]:
    headers = Headers(headers=fixture["headers"])
    try:
        envelope = spectacle.parse(fixture["call"], body_bytes(fixture))
        key = spectacle.credentials(headers, envelope)
        events = spectacle.decode(request_meta(fixture, "spectacle", headers), envelope)
    except AdapterError as exc:
        return {"error": {"code": exc.code, "path": exc.path}}
    return {"write_key": key, "expected": msgspec.to_builtins(events)}


def test_there_are_fixtures():
    names = {p.stem for p in FIXTURES}
    assert len(names) >= 25
    for prefix in ("docs_", "rest_", "gtm_", "stape_", "error_"):
        assert any(n.startswith(prefix) for n in names), prefix
    # every pixel path and every REST call has a recorded success
    calls = {load(p)["call"] for p in FIXTURES if not p.stem.startswith("error_")}
    assert set(spectacle.CALLS) <= calls


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_golden(path: Path):
    fixture = load(path)
    result = replay(fixture)
    if REGEN:
        fixture = regenerate(path, fixture, result, ("expected", "error", "write_key"))
    if path.stem.startswith("error_"):
        assert "error" in fixture and fixture["error"], "an error_ fixture must name its refusal"
        assert result.get("error") == fixture["error"]
        return
    assert "error" not in result, f"refused: {result.get('error')}"
    assert result["write_key"] == fixture["write_key"]
    assert result["expected"] == fixture["expected"]


@pytest.mark.parametrize("path", SUCCESSES, ids=lambda p: p.stem)
def test_raw_is_the_body_verbatim(path: Path):
    fixture = load(path)
    assert [e["raw"] for e in fixture["expected"]] == [body_bytes(fixture).decode()]


@pytest.mark.parametrize("path", SUCCESSES, ids=lambda p: p.stem)
def test_encode_round_trips(path: Path):
    """What ``encode`` makes of the decoded event decodes (REST or pixel, as encode chose) back to the
    same canonical fields."""
    fixture = load(path)
    event = msgspec.convert(fixture["expected"][0], Event)
    (request,) = spectacle.encode([event], workspace_id="ws_round")
    call = request["path"].rsplit("/", 1)[1]
    envelope = spectacle.parse(call, json.dumps(request["body"]).encode())
    assert spectacle.credentials({}, envelope) == "ws_round"
    meta = RequestMeta(
        source_id=event.source_id,
        dialect="spectacle",
        call=call,
        received_at=event.received_at,
        request_id="other",
        ip=event.context.ip,
        user_agent=event.context.user_agent,
    )
    (again,) = spectacle.decode(meta, envelope)
    for field in ("type", "name", "user_id", "group_id", "message_id", "properties", "timestamp"):
        assert getattr(again, field) == getattr(event, field), field
    assert again.traits.items() >= {k: v for k, v in event.traits.items()}.items()
    if event.anonymous_id is not None:
        assert again.anonymous_id == event.anonymous_id
