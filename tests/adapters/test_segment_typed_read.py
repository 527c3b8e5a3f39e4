"""Segment's typed reading of a message (``segment._read_message``: a context of canonical keys decoded
straight into structs) against the plain reading (every message decoded as JSON, its context read by
``normalize_context``): for any body, the same events field for field, or the same error.

Hypothesis draws batches and single calls whose contexts mix canonical keys of the right and the wrong
types, keys outside the canonical set, nested leftovers (``campaign.id``), nulls and non-objects, and
whose messages are sometimes broken (bad JSON, a missing id, a bad timestamp, a bad type).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackgate.adapters import segment
from trackgate.adapters.base import AdapterError
from trackgate.schemas.request import RequestMeta

META = RequestMeta(
    source_id="src",
    dialect="segment",
    call="batch",
    received_at=datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC),
    request_id="req",
    request_key="rkey",
    ip="192.0.2.1",
)


def _plain(data: bytes | msgspec.Raw) -> segment.Message | None:
    """The reading before the typed one: every message as JSON (None where it is not one)."""
    try:
        return segment._decode_message(data)
    except (msgspec.DecodeError, RecursionError):
        return None


def outcome(call: str, body: bytes) -> Any:
    """The events as builtins and as structs, or the error's class, code, message and path."""
    try:
        events = segment.decode(META, segment.parse(call, body))
    except AdapterError as exc:
        return (type(exc).__name__, exc.code, exc.message, exc.path)
    return events


def both(call: str, body: bytes) -> tuple[Any, Any]:
    typed = outcome(call, body)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segment, "_read_message", _plain)
        plain = outcome(call, body)
    return typed, plain


def assert_same(call: str, body: bytes) -> None:
    typed, plain = both(call, body)
    assert typed == plain  # Event == Event: every field, the canonical structs' types included
    if isinstance(typed, list):
        assert msgspec.json.encode(typed) == msgspec.json.encode(plain)
        for a, b in zip(typed, plain, strict=True):
            assert type(a.context.page) is type(b.context.page)
            assert type(a.context.library) is type(b.context.library)
            assert a.context.extra == b.context.extra


_texts = st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["", "x", "Mozilla/5.0", "203.0.113.9"]))
_wrong = st.one_of(
    st.integers(-3, 3), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2)
)
_values = st.one_of(_texts, _wrong, st.dictionaries(st.sampled_from(["a", "url"]), _texts, max_size=2))


def _nested(fields: list[str], numeric: bool = False) -> st.SearchStrategy[Any]:
    value = (
        st.one_of(st.none(), st.integers(0, 4000), st.floats(0, 4, allow_nan=False)) if numeric else _texts
    )
    keys = st.sampled_from([*fields, "id", "hash"])
    return st.one_of(
        st.none(),
        st.dictionaries(keys, st.one_of(value, _values), max_size=4),
        st.dictionaries(st.sampled_from(fields), value, max_size=4),
        _wrong,
    )


_canonical = st.fixed_dictionaries(
    {},
    optional={
        "ip": _texts,
        "userAgent": _texts,
        "locale": _texts,
        "timezone": _texts,
        "active": st.one_of(st.none(), st.booleans()),
        "page": st.dictionaries(
            st.sampled_from(["url", "path", "referrer", "title", "search", "id"]), _texts
        ),
        "screen": st.dictionaries(
            st.sampled_from(["width", "height", "density", "id"]), st.one_of(st.none(), st.integers(0, 4000))
        ),
        "campaign": st.dictionaries(
            st.sampled_from(["source", "medium", "name", "term", "content", "id"]), _texts
        ),
        "library": st.dictionaries(st.sampled_from(["name", "version", "id"]), _texts),
        "userAgentData": st.one_of(st.none(), st.just({"brands": [], "mobile": False}), _texts),
    },
)
"""Contexts of canonical keys, well typed (what the typed reading takes), but for a key outside the
canonical ones in a nested object now and then (``campaign.id``: then they are read as JSON)."""

_contexts = st.one_of(
    _canonical,
    _canonical,
    st.none(),
    st.just({}),
    _wrong,
    st.fixed_dictionaries(
        {},
        optional={
            "ip": st.one_of(_texts, _wrong),
            "userAgent": st.one_of(_texts, _wrong),
            "locale": _texts,
            "timezone": st.one_of(_texts, _wrong),
            "active": st.one_of(st.none(), st.booleans(), st.integers(0, 1)),
            "page": _nested(["url", "path", "referrer", "title", "search"]),
            "screen": _nested(["width", "height", "density"], numeric=True),
            "campaign": _nested(["source", "medium", "name", "term", "content"]),
            "library": _nested(["name", "version"]),
            "traits": st.dictionaries(st.sampled_from(["email", "plan"]), _texts, max_size=2),
            "device": st.dictionaries(st.sampled_from(["type", "id"]), _texts, max_size=2),
        },
    ),
)

_good = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "page", "identify", "screen"]),
        "userId": st.sampled_from(["u1", "u2"]),
        "messageId": st.sampled_from(["m1", "m2"]),
        "event": st.sampled_from(["Signed Up"]),
        "context": _contexts,
    },
    optional={
        "anonymousId": st.sampled_from(["a1", "a2"]),
        "properties": st.dictionaries(st.sampled_from(["a", "b"]), _texts, max_size=2),
        "timestamp": st.sampled_from(["2026-03-01T12:00:00.000Z", "2026-03-01T11:59:59"]),
        "traits": st.dictionaries(st.sampled_from(["email"]), _texts, max_size=1),
    },
)
"""Messages every rule accepts (so the batch gets to its contexts)."""

_any = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "page", "identify", "screen", "group", "alias"])},
    optional={
        "userId": st.one_of(st.sampled_from(["u1", "u2", ""]), st.integers(0, 9), st.none()),
        "anonymousId": st.sampled_from(["a1", "a2"]),
        "messageId": st.one_of(st.sampled_from(["m1", "m2", "x" * 101]), st.integers(0, 9)),
        "event": st.one_of(st.sampled_from(["Signed Up", ""]), st.none()),
        "name": st.sampled_from(["Home", "Pricing"]),
        "groupId": st.sampled_from(["g1", "g2"]),
        "previousId": st.sampled_from(["p1"]),
        "properties": st.one_of(st.dictionaries(st.sampled_from(["a", "b"]), _values, max_size=2), _wrong),
        "traits": st.dictionaries(st.sampled_from(["email"]), _texts, max_size=1),
        "context": _contexts,
        "integrations": st.one_of(st.just({"All": True}), _wrong),
        "timestamp": st.sampled_from(
            ["2026-03-01T12:00:00.000Z", "2026-03-01T11:59:59", "2015-2-02T00:00:00Z", "no"]
        ),
        "sentAt": st.sampled_from(["2026-03-01T12:00:01.000Z"]),
        "category": st.sampled_from(["Docs"]),
    },
)
"""Messages that may break a rule."""
_messages = st.one_of(_good, _good, _good, _any)


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(
        st.one_of(_good, _good, _good, _good, _any, st.sampled_from(["[1]", '{"type":', "7"])),
        min_size=1,
        max_size=6,
    ),
    batch_context=st.one_of(st.none(), st.none(), st.just({"library": {"name": "batch"}}), st.just([])),
)
def test_a_batch_reads_the_same_typed_or_plain(items, batch_context):
    parts = [item if isinstance(item, str) else _text(item) for item in items]
    body = '{"batch":[' + ",".join(parts) + "]"
    if batch_context is not None:
        body += ',"context":' + _text(batch_context)
    body += ',"sentAt":"2026-03-01T12:00:02.000Z"}'
    assert_same("batch", body.encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=_messages)
def test_a_single_call_reads_the_same_typed_or_plain(message):
    call = message.pop("type")
    assert_same(call, _text(message).encode())


@pytest.mark.parametrize(
    "context",
    [
        '{"ip":"a","ip":"b","userAgent":"u"}',  # a repeated key: the last one, as a dict keeps it
        '{"page":{"url":"/a","url":"/b"}}',
        '{"page":{"url":"/a"},"page":null}',
        '{"screen":{"width":390,"density":3}}',  # an integer density is a float in both readings
        '{"screen":{"width":390.0}}',
        '{"library":{"name":"\\u00e9\\ud83d\\ude00","version":"1"}}',
        '{"campaign":{"source":"s","id":"c-1"}}',
        '{"page":{"url":"/a","hash":"#x"},"locale":"fr","timezone":"UTC","active":false}',
        '{"locale":"fr","timezone":"UTC","active":false,"ip":"203.0.113.9","userAgent":"u"}',
        '{"screen":{"width":390,"inner":1},"library":{"name":"n","version":"1","extra":2}}',
        '{"campaign":{"source":"s","medium":"m","name":"n","term":"t","content":"c"}}',
        '{"userAgentData":null,"campaign":{"id":null}}',
        '{"campaign":{"id":"c-1","hash":2},"userAgentData":{"mobile":true}}',
        '{"campaign":{"name":"n","id":"c-1"},"userAgentData":{"mobile":true},"device":{}}',
        '{"userAgentData":{"brands":[{"brand":"Chromium","version":"124"}],"mobile":false},"userAgent":"u"}',
        "null",
        "{}",
        '{"page":{}}',
        '{"ip":""}',
    ],
)
def test_contexts_read_the_same_typed_or_plain(context):
    message = '{"type":"page","userId":"u","messageId":"m","context":' + context + "}"
    assert_same("batch", ('{"batch":[' + message + "]}").encode())
    assert_same("page", message.encode())


@pytest.mark.parametrize("depth", [60, 990, 995, 996, 997, 998, 999, 1000, 1200])
@pytest.mark.parametrize("key", ["page", "userAgentData", "device"])
def test_deep_contexts_are_refused_or_read_alike(depth, key):
    # the typed reading decodes the context apart from its message: as deep as the plain one allows
    context = '{"' + key + '":' + "[" * depth + "]" * depth + "}"
    message = '{"type":"page","userId":"u","messageId":"m","context":' + context + "}"
    assert_same("batch", ('{"batch":[' + message + "]}").encode())
    assert_same("page", message.encode())


def test_analytics_js_bodies_read_the_same_typed_or_plain():
    golden = json.loads((Path(__file__).parents[1] / "golden/segment/analyticsjs_track.json").read_text())
    message = json.loads(golden["body_text"])
    assert_same("t", golden["body_text"].encode())
    body = {"batch": [{**message, "type": "track", "messageId": f"m-{i}"} for i in range(3)]}
    assert_same("batch", _text(body).encode())
    parsed = segment._read_message(golden["body_text"].encode())
    assert parsed is not None and type(parsed.context) is segment._Strict  # its context is read typed


def test_a_canonical_context_is_read_typed():
    message = segment._read_message(
        b'{"type":"page","userId":"u","context":{"ip":"1.2.3.4","page":{"url":"/a"},"library":{"name":"n"}}}'
    )
    assert message is not None
    assert type(message.context) is segment._Strict
    other = segment._read_message(b'{"type":"page","userId":"u","context":{"ip":"1.2.3.4","os":{}}}')
    assert other is not None
    assert other.context == {"ip": "1.2.3.4", "os": {}}


def test_a_typed_read_that_fails_late_is_read_as_before():
    """The typed decode of a message stops at a context it cannot take, or at broken JSON after a
    canonical one: the plain reading then decides, as before."""
    for body in (
        b'{"type":"page","userId":"u","context":{"ip":"1.2.3.4"},"x":[1,}',
        b'{"type":"page","userId":"u","context":{"os":{}},"x":[1,}',
        b'{"type":"page","userId":"u","context":{"page":{"url":7}},"event":"e"}',
    ):
        assert_same("batch", b'{"batch":[' + body + b"]}")
        assert_same("page", body)
