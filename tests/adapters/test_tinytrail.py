"""The TinyTrail adapter, pure: golden replay of ``tests/golden/tinytrail/*.json`` and its rules.

A fixture is one collect request and what the adapter makes of it: ``headers``, ``body`` (sent as compact
JSON) or ``body_text`` (verbatim), ``received_at``, ``request_id``, ``source_id``, ``ip``, ``hints`` (what
the gateway's ``prepare`` decided), and ``website_id`` + ``expected`` events, or ``error``. The
``tracker_*`` fixtures are bodies the real tracker.js sent from Chromium
(``TRACKGATE_CAPTURE_GOLDEN=1 pytest tests/e2e/test_tinytrail_browser.py``).

Regenerate after a deliberate change: ``TRACKGATE_REGEN_GOLDEN=1 pytest tests/adapters/test_tinytrail.py``,
then review the diff against seeds/tinytrail-api.md.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.datastructures import Headers

from tests.adapters.golden import REGEN, body_bytes, fixtures, load, regenerate, request_meta
from trackgate.adapters import tinytrail, traffic
from trackgate.adapters.base import AdapterError, InvalidPayload
from trackgate.schemas.event import Context, Event, Page
from trackgate.schemas.request import RequestMeta

FIXTURES = fixtures("tinytrail")


def replay(fixture: dict[str, Any]) -> dict[str, Any]:
    headers = Headers(headers=fixture["headers"])
    try:
        assert tinytrail.credentials(headers, None) is None
        envelope = tinytrail.parse("collect", body_bytes(fixture))
        key = tinytrail.credentials(headers, envelope)
        events = tinytrail.decode(
            request_meta(fixture, "tinytrail", headers, "collect", hints=fixture.get("hints", {})), envelope
        )
    except AdapterError as exc:
        return {"error": {"code": exc.code, "path": exc.path}}
    return {"website_id": key, "expected": msgspec.to_builtins(events)}


def test_there_are_fixtures():
    names = {p.stem for p in FIXTURES}
    for prefix in ("docs_", "tracker_", "error_"):
        assert any(n.startswith(prefix) for n in names), prefix


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_golden(path: Path):
    fixture = load(path)
    result = replay(fixture)
    if REGEN:
        fixture = regenerate(path, fixture, result, ("expected", "error", "website_id"))
    if "error" in fixture:
        assert result.get("error") == fixture["error"]
        return
    assert "error" not in result, result
    assert result == {"website_id": fixture["website_id"], "expected": fixture["expected"]}
    assert result["expected"][0]["raw"].encode() == body_bytes(fixture)


# --- rules ------------------------------------------------------------------------------------------

WEBSITE = "550e8400-e29b-41d4-a716-446655440000"
BASE = {"website_id": WEBSITE, "event_type": "page_view", "url": "https://example.com/", "path": "/"}
NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def meta(**hints) -> RequestMeta:
    return RequestMeta(
        source_id="src_1",
        dialect="tinytrail",
        call="collect",
        received_at=NOW,
        request_id="req-1",
        ip="203.0.113.9",
        user_agent="UA",
        hints=hints,
    )


def decode(body: dict, **hints) -> Event:
    [event] = tinytrail.decode(meta(**hints), tinytrail.parse("collect", json.dumps(body).encode()))
    return event


@pytest.mark.parametrize("field", tinytrail.REQUIRED)
def test_each_required_field_is_named_when_missing(field):
    with pytest.raises(InvalidPayload) as info:
        tinytrail.parse("collect", json.dumps({k: v for k, v in BASE.items() if k != field}).encode())
    assert (info.value.code, info.value.path) == ("missing_field", field)
    assert field in info.value.message


def test_nulls_for_optional_fields_are_accepted():
    event = decode({**BASE, "referrer": None, "screen_width": None, "properties": None, "utm_source": None})
    assert event.properties == {} and event.context.screen is None and event.context.campaign is None


def test_empty_referrer_is_no_referrer():
    page = decode({**BASE, "referrer": ""}).context.page
    assert page is not None and page.referrer is None


def test_message_id_is_derived_from_the_request():
    assert decode(BASE).message_id == "req-1-0"


def test_nul_is_scrubbed_outside_raw():
    event = decode({**BASE, "properties": {"q": "a\u0000b"}})
    assert event.properties == {"q": "a\ufffdb"}
    assert "\\u0000" in event.raw


@pytest.mark.parametrize(
    ("path", "group"),
    [("/blog/post-1", "Blog"), ("/blog", "Blog root"), ("/docs/a/b", "Docs"), ("/pricing", None)],
)
def test_content_groups_first_match_wins(path, group):
    groups = [
        {"name": "Blog root", "pattern": "/blog"},
        {"name": "Blog", "pattern": "/blog/*"},
        {"name": "Docs", "pattern": "/docs/*"},
        {"name": "Everything", "pattern": "/docs*"},
        "not a group",
    ]
    assert traffic.content_group(path, groups) == group


def test_hints_become_enrichment():
    event = decode(BASE, is_bot=True, is_excluded=True)
    assert event.enrichment == {"is_bot": True, "is_excluded": True}


@pytest.mark.parametrize(
    "body",
    [
        BASE,
        {
            **BASE,
            "event_type": "scroll_75",
            "referrer": "https://t.co/x",
            "screen_width": 800,
            "screen_height": 600,
        },
        {**BASE, "event_type": "custom", "properties": {"name": "signup_complete", "plan": "pro"}},
    ],
    ids=["page_view", "scroll", "custom"],
)
def test_encode_then_decode_gives_the_same_event(body):
    event = decode(body)
    [encoded] = tinytrail.encode([event])
    again = decode({"website_id": WEBSITE, **encoded})
    assert (again.type, again.name, again.properties, again.context) == (
        event.type,
        event.name,
        event.properties,
        event.context,
    )


def test_encode_a_track_of_another_name_as_custom_named_in_properties():
    """TinyTrail's documented way to send a named event (what tracker.js does), so a real TinyTrail
    takes it whatever its event types; decoded again it is the same track, ``name`` in its properties."""
    event = decode({**BASE, "event_type": "video_play", "properties": {"id": 1}, "utm_source": "x"})
    [encoded] = tinytrail.encode([event])
    assert encoded["event_type"] == "custom"
    assert encoded["properties"] == {"id": 1, "name": "video_play"}
    assert encoded["utm_source"] == "x"
    again = decode({"website_id": WEBSITE, **encoded})
    assert (again.type, again.name, again.context) == ("track", "video_play", event.context)


def test_encode_other_canonical_types_as_custom():
    event = Event(
        id="e",
        message_id="m",
        source_id="s",
        dialect="segment",
        type="identify",
        user_id="u",
        traits={"email": "a@b.c"},
        context=Context(page=Page(url="https://example.com/a?b=1")),
        timestamp=NOW,
        received_at=NOW,
        raw="{}",
    )
    [out] = tinytrail.encode([event])
    assert out == {
        "event_type": "custom",
        "url": "https://example.com/a?b=1",
        "path": "/a",
        "properties": {"name": "identify", "trackgate_type": "identify"},
    }
