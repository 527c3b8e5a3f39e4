"""Golden replay of Commanders Act requests (``tests/golden/commandersact/*.json``), from the vendor's docs.

Each fixture is one HTTP request and what the adapter makes of it::

    {
      "description": "where it comes from",
      "call": "event" | "batch",                  # POST /events or /events/batch
      "query": {...}, "headers": {...},
      "body": {...} | "body_text": "...",          # "body" is sent as compact JSON, "body_text" verbatim
      "received_at", "request_id", "source_id", "ip",
      "key": "...",                                # the source key found (Bearer, else ?token=)
      "expected": [...],                           # msgspec.to_builtins(events), every "id" ""
      "refused": [...],                            # the refused items (answered 200, quarantined)
      "error": {"code", "status"}                  # ...or the refusal of the whole request (400)
    }

Pure: no network, no database. ``TRACKGATE_REGEN_GOLDEN=1`` rewrites ``key``/``expected``/``refused``/
``error`` from what the adapter does now; review the diff against vendors.md §3 before committing.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.datastructures import Headers

from adapters import commandersact
from adapters.base import AdapterError
from schemas.request import RequestMeta

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "commandersact"
REGEN = os.environ.get("TRACKGATE_REGEN_GOLDEN") == "1"
FIXTURES = sorted(GOLDEN.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def body_bytes(fixture: dict[str, Any]) -> bytes:
    if "body_text" in fixture:
        return fixture["body_text"].encode()
    return json.dumps(fixture["body"], ensure_ascii=False, separators=(",", ":")).encode()


def meta_for(fixture: dict[str, Any], headers: Headers) -> RequestMeta:
    return RequestMeta(
        source_id=fixture["source_id"],
        dialect="commandersact",
        call=fixture["call"],
        received_at=datetime.fromisoformat(fixture["received_at"]),
        request_id=fixture["request_id"],
        ip=fixture.get("ip"),
        user_agent=headers.get("user-agent"),
        query=fixture.get("query", {}),
    )


def replay(fixture: dict[str, Any]) -> dict[str, Any]:
    """As ``gateway/ingest.py`` and ``gateway/commandersact.py`` do: key, parse, decode_partial."""
    headers = Headers(headers=fixture["headers"])
    key = commandersact.credentials(headers, None) or fixture.get("query", {}).get("token")
    try:
        envelope = commandersact.parse(fixture["call"], body_bytes(fixture))
    except AdapterError as exc:
        return {"error": {"code": exc.code, "status": exc.status}}
    decoded = commandersact.decode_partial(meta_for(fixture, headers), envelope)
    return {
        "key": key,
        "expected": msgspec.to_builtins(decoded.events),
        "refused": msgspec.to_builtins(decoded.refused),
    }


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_golden(path: Path):
    fixture = load(path)
    got = replay(fixture)
    if REGEN:
        for field in ("key", "expected", "refused", "error"):
            fixture.pop(field, None)
        fixture.update(got)
        path.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n")
        return
    for field in ("key", "expected", "refused", "error"):
        assert got.get(field) == fixture.get(field), f"{path.name}: {field}"


def test_every_fixture_says_where_it_comes_from():
    assert len(FIXTURES) >= 8
    for path in FIXTURES:
        fixture = load(path)
        assert fixture["description"], path.name
        assert ("expected" in fixture) != ("error" in fixture), path.name
