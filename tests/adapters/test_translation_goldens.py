"""Translation goldens (``tests/golden/translations/*.json``): a request in one dialect in, the exact
request a destination of another kind receives out (method, URL, headers, body).

The input is decoded by the same replay the dialect's own golden test uses (a stored golden by name, or
an inline request in that golden's format), then encoded, planned and rendered as the forward worker does
(``adapters/transports.py``). ``TRACKGATE_REGEN_GOLDEN=1`` rewrites ``expected`` (review the diff)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.adapters import (
    test_bucket_golden,
    test_commandersact_golden,
    test_openpanel_golden,
    test_segment_golden,
)
from trackgate.adapters import transports
from trackgate.adapters.registry import ADAPTERS
from trackgate.adapters.transports import TRANSPORTS, plan, render
from trackgate.schemas.event import Event

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
FIXTURES = sorted((GOLDEN / "translations").glob("*.json"))
REGEN = os.environ.get("TRACKGATE_REGEN_GOLDEN") == "1"
REPLAY = {
    "bucket": test_bucket_golden.replay,
    "commandersact": test_commandersact_golden.replay,
    "openpanel": test_openpanel_golden.replay,
    "segment": test_segment_golden.replay,
}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def source_request(fixture: dict[str, Any]) -> dict[str, Any]:
    given = fixture["input"]
    return load(GOLDEN / given["golden"]) if "golden" in given else given["request"]


def events_in(fixture: dict[str, Any]) -> list[Event]:
    request = source_request(fixture)
    decoded = REPLAY[fixture["input"]["dialect"]](request)
    assert "error" not in decoded and not decoded.get("refused"), decoded
    return msgspec.convert(decoded["expected"], list[Event])


def requests_out(fixture: dict[str, Any]) -> list[dict[str, Any]]:
    """What the forward worker sends for these events to the fixture's destination."""
    destination = fixture["destination"]
    transport = TRANSPORTS[destination["kind"]]
    items = transports.encode(transport, ADAPTERS, events_in(fixture))
    out = []
    for part in plan(transport, items):
        request = render(transport, destination["base_url"], destination["credentials"], part, fixture["now"])
        out.append(
            {
                "method": request.method,
                "url": request.url,
                "headers": request.headers,
                "body": json.loads(request.content),
            }
        )
    return out


def without(value: Any, dotted: str) -> Any:
    """``value`` (a JSON document) with the key at ``dotted`` removed; the key must be there."""
    value = json.loads(json.dumps(value))
    *parents, last = dotted.split(".")
    node = value
    for key in parents:
        node = node[key]
    del node[last]
    return value


def test_there_are_translation_goldens():
    names = {p.stem for p in FIXTURES}
    assert {"commandersact_v1_to_v2", "segment_track_to_openpanel", "bucket_event_to_segment"} <= names


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_translation_golden(path: Path):
    fixture = load(path)
    got = requests_out(fixture)
    if REGEN:
        fixture["expected"] = got
        path.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n")
        return
    assert got == fixture["expected"], path.name


@pytest.mark.parametrize("path", [p for p in FIXTURES if "sdk_capture" in load(p)], ids=lambda p: p.stem)
def test_the_body_is_what_the_vendor_sdk_sends(path: Path):
    """The expected body equals a body the vendor's real SDK sent (captured), but for the keys the
    fixture lists under ``sdk_capture.differs``, each with its reason."""
    fixture = load(path)
    capture = fixture["sdk_capture"]
    sdk = load(GOLDEN / capture["golden"])
    (expected,) = fixture["expected"]
    body = expected["body"]
    for dotted, reason in capture["differs"].items():
        assert reason, dotted
        body = without(body, dotted)
    assert body == json.loads(sdk["body_text"])
    assert expected["method"] == "POST" and expected["url"].endswith(capture["path"])
    sdk_headers = {k.lower(): v for k, v in sdk["headers"].items()}
    for header in capture["same_headers"]:
        assert expected["headers"][header] == sdk_headers[header], header
