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

from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.datastructures import Headers

from tests.adapters.golden import REGEN, body_bytes, fixtures, load, regenerate, request_meta
from trackgate.adapters import commandersact
from trackgate.adapters.base import AdapterError

FIXTURES = fixtures("commandersact")
OUTCOME = ("key", "expected", "refused", "error")


def replay(fixture: dict[str, Any]) -> dict[str, Any]:
    """As ``gateway/ingest.py`` and ``gateway/commandersact.py`` do: key, parse, decode_partial."""
    headers = Headers(headers=fixture["headers"])
    key = commandersact.credentials(headers, None) or fixture.get("query", {}).get("token")
    try:
        envelope = commandersact.parse(fixture["call"], body_bytes(fixture))
    except AdapterError as exc:
        return {"error": {"code": exc.code, "status": exc.status}}
    decoded = commandersact.decode_partial(
        request_meta(fixture, "commandersact", headers, query=fixture.get("query", {})), envelope
    )
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
        regenerate(path, fixture, got, OUTCOME)
        return
    for field in OUTCOME:
        assert got.get(field) == fixture.get(field), f"{path.name}: {field}"


def test_every_fixture_says_where_it_comes_from():
    assert len(FIXTURES) >= 8
    for path in FIXTURES:
        fixture = load(path)
        assert fixture["description"], path.name
        assert ("expected" in fixture) != ("error" in fixture), path.name
