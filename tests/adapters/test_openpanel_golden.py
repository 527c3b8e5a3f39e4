"""Golden replay of OpenPanel-dialect requests (``tests/golden/openpanel/*.json``): from the docs
(``docs_*``, the seed), from OpenPanel's source (``legacy_*``, ``special_*``, ``error_*``), and captured
from the real SDKs (``npm_*``, ``pypi_*``, ``tests/capture/capture_openpanel.py``).

Each fixture::

    {
      "description": "where it comes from",
      "call": "track" | "event" | "profile" | "profile_increment" | "profile_decrement",
      "headers": {...}, "body": {...} | "body_text": "...",
      "received_at", "request_id", "source_id", "ip",
      "hints": {...},                 # what the gateway's prepare hook worked out (device, session, ip)
      "client_id": "...",             # what credentials() must find (success cases)
      "expected": [...],              # msgspec.to_builtins(events), every "id" ""
      "error": {"code", "path", "message"}   # ...or the refusal
    }

Regenerate after a deliberate change::

    TRACKGATE_REGEN_GOLDEN=1 pytest tests/adapters/test_openpanel_golden.py

and review the diff by hand against /work/shared/reference/vendors.md §1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.datastructures import Headers

from tests.adapters.golden import REGEN, body_bytes, fixtures, load, regenerate, request_meta
from trackgate.adapters import openpanel
from trackgate.adapters.base import AdapterError

FIXTURES = fixtures("openpanel")


def replay(fixture: dict[str, Any]) -> dict[str, Any]:
    headers = Headers(headers=fixture["headers"])
    try:
        envelope = openpanel.parse(fixture["call"], body_bytes(fixture))
        client_id = openpanel.credentials(headers, envelope)
        meta = request_meta(
            fixture,
            "openpanel",
            headers,
            headers={k.lower(): v for k, v in fixture["headers"].items()},
            hints=fixture.get("hints", {}),
        )
        events = openpanel.decode(meta, envelope)
    except AdapterError as exc:
        return {"error": {"code": exc.code, "path": exc.path, "message": exc.message}}
    return {"client_id": client_id, "expected": msgspec.to_builtins(events)}


def test_fixtures_exist():
    names = {p.stem.split("_")[0] for p in FIXTURES}
    assert {"docs", "npm", "pypi", "error", "legacy"} <= names


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_golden(path: Path):
    fixture = load(path)
    got = replay(fixture)
    if REGEN:
        regenerate(path, fixture, got, ("expected", "error"))
        return
    if "error" in fixture:
        assert got == {"error": fixture["error"]}
    else:
        assert fixture.get("expected"), f"{path.name}: no expected events (regenerate and review)"
        assert got == {"client_id": fixture["client_id"], "expected": fixture["expected"]}


SDK_FIXTURES = [p for p in FIXTURES if p.stem.startswith("npm_")]


@pytest.mark.parametrize("path", SDK_FIXTURES, ids=[p.stem for p in SDK_FIXTURES])
def test_encode_gives_the_npm_sdk_body(path: Path):
    """``encode`` of what a captured ``@openpanel/sdk`` request decodes to is that request's body;
    track calls additionally carry the canonical time, device id and IP in OpenPanel's special
    properties (``__timestamp``, ``__deviceId``, ``__ip``), as ``op.track(name, props)`` sends them."""
    fixture = load(path)
    sent = json.loads(fixture["body_text"])
    events = msgspec.convert(fixture["expected"], list[openpanel.Event])
    (encoded,) = openpanel.encode(events)
    if sent["type"] == "track":
        props = encoded["payload"]["properties"]
        assert props.pop("__deviceId") == fixture["hints"]["device_id"]
        assert props.pop("__ip") == fixture["hints"]["ip"]
        assert props.pop("__timestamp").endswith("Z")
    assert encoded == sent
