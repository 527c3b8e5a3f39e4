"""The Bucket adapter's rules, one table each: ids, required fields, feedback, context, SDK names, encode."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from trackgate.adapters import bucket
from trackgate.adapters.base import InvalidPayload, PayloadTooLarge
from trackgate.schemas.event import Context, Event
from trackgate.schemas.request import RequestMeta

NOW = datetime(2026, 5, 4, 10, 0, 0, tzinfo=UTC)


def meta(headers: dict[str, str] | None = None) -> RequestMeta:
    return RequestMeta(
        source_id="src_1",
        dialect="bucket",
        call="x",
        received_at=NOW,
        request_id="req-1",
        ip="203.0.113.9",
        user_agent="ua/1",
        headers=headers or {},
    )


def decode(call: str, body: Any, headers: dict[str, str] | None = None) -> list[Event]:
    return bucket.decode(meta(headers), bucket.parse(call, json.dumps(body).encode()))


def refused(call: str, body: Any) -> tuple[str, str | None]:
    with pytest.raises(InvalidPayload) as info:
        decode(call, body)
    return info.value.code, info.value.path


# --- ids ---------------------------------------------------------------------------------------------

IDS = [
    ("u1", "u1"),
    (1234567890, "1234567890"),
    (101112231415, "101112231415"),
    (2**70, str(2**70)),
    (1e3, "1000"),  # JSON 1e3 is the integer a JS client meant
    (1.5, "1.5"),
    (-7, "-7"),
]


@pytest.mark.parametrize(("sent", "stored"), IDS)
def test_ids_may_be_numbers(sent, stored):
    (event,) = decode("company", {"companyId": sent, "userId": sent})
    assert (event.group_id, event.user_id) == (stored, stored)


@pytest.mark.parametrize("sent", [True, False, [], {}, ["u1"]])
def test_other_id_types_are_refused(sent):
    assert refused("user", {"userId": sent}) == ("invalid_field_type", "userId")


# --- each call's required fields and mapping ---------------------------------------------------------------

MAPPING = [
    # call, body, (type, name, user_id, group_id), traits, properties
    ("user", {"userId": "u", "attributes": {"a": 1}}, ("identify", None, "u", None), {"a": 1}, {}),
    ("user", {"userId": "u"}, ("identify", None, "u", None), {}, {}),
    ("company", {"companyId": "c"}, ("group", None, None, "c"), {}, {}),
    (
        "company",
        {"companyId": "c", "userId": "u", "attributes": {"n": "A"}},
        ("group", None, "u", "c"),
        {"n": "A"},
        {},
    ),
    ("event", {"event": "E", "userId": "u"}, ("track", "E", "u", None), {}, {}),
    (
        "event",
        {"event": "E", "userId": "u", "companyId": 3, "attributes": {"x": [1]}},
        ("track", "E", "u", "3"),
        {},
        {"x": [1]},
    ),
    (
        "feedback",
        {"featureId": "f", "userId": "u", "score": 1},
        ("feedback", None, "u", None),
        {},
        {"feature_id": "f", "score": 1},
    ),
    (
        "feedback",
        {"featureId": "f", "userId": "u", "comment": "c"},
        ("feedback", None, "u", None),
        {},
        {"feature_id": "f", "comment": "c"},
    ),
    (
        "feedback",
        {"featureId": "f", "key": "k", "userId": "u", "score": 4.5, "comment": None, "question": "Q?"},
        ("feedback", None, "u", None),
        {},
        {"feature_id": "f", "flag_key": "k", "score": 4.5, "question": "Q?"},
    ),
    (
        "prompt-event",
        {"action": "dismissed", "promptId": 9, "userId": "u"},
        ("track", "prompt-event", "u", None),
        {},
        {"action": "dismissed", "promptId": 9},
    ),
    (
        "feature-flag-event",
        {"action": "check-config", "key": "k", "evalResult": {"key": "v1", "payload": None}},
        ("track", "feature-flag-event", None, None),
        {},
        {"action": "check-config", "key": "k", "evalResult": {"key": "v1", "payload": None}},
    ),
]


@pytest.mark.parametrize(("call", "body", "ids", "traits", "properties"), MAPPING)
def test_mapping(call, body, ids, traits, properties):
    (event,) = decode(call, body)
    assert (event.type, event.name, event.user_id, event.group_id) == ids
    assert (event.traits, event.properties) == (traits, properties)
    assert event.message_id == "req-1-0"
    assert event.raw == json.dumps(body)
    assert event.dialect_version == "tracking"


REQUIRED = [
    ("user", {}, "missing_user_id", "userId"),
    ("company", {"userId": "u"}, "missing_company_id", "companyId"),
    ("event", {"userId": "u", "event": ""}, "missing_event", "event"),
    ("event", {"event": "E", "userId": None}, "missing_user_id", "userId"),
    ("feedback", {"userId": "u", "comment": "c"}, "missing_feature_id", "featureId"),
    ("feedback", {"featureId": "f", "comment": "c"}, "missing_user_id", "userId"),
    (
        "feedback",
        {"featureId": "f", "userId": "u", "score": None, "comment": None},
        "missing_score_or_comment",
        "score",
    ),
    ("prompt-event", {"action": "shown", "promptId": "p"}, "missing_user_id", "userId"),
    ("prompt-event", {"userId": "u", "promptId": "p"}, "missing_action", "action"),
    ("prompt-event", {"userId": "u", "action": 1, "promptId": "p"}, "invalid_field_type", "action"),
    ("feature-flag-event", {"action": "check"}, "missing_key", "key"),
    (
        "feature-flag-event",
        {"action": "check", "key": "k", "evalContext": []},
        "invalid_field_type",
        "evalContext",
    ),
]


@pytest.mark.parametrize(("call", "body", "code", "path"), REQUIRED)
def test_required_fields(call, body, code, path):
    assert refused(call, body) == (code, path)


@pytest.mark.parametrize(
    ("score", "ok"),
    [(1, True), (5, True), (3.5, True), (5.0, True), (0, False), (0.99, False), (5.01, False), (-1, False)],
)
def test_score_is_a_number_from_1_to_5(score, ok):
    body = {"featureId": "f", "userId": "u", "score": score}
    if ok:
        assert decode("feedback", body)[0].properties["score"] == score
    else:
        assert refused("feedback", body) == ("invalid_score", "score")


# --- context, time, library -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "active", "extra"),
    [
        (None, None, {}),
        ({}, None, {}),
        ({"active": True}, True, {}),
        ({"active": False, "k": 1}, False, {"k": 1}),
    ],
)
def test_context(context, active, extra):
    body = {"userId": "u"} if context is None else {"userId": "u", "context": context}
    (event,) = decode("user", body)
    assert event.context == Context(ip="203.0.113.9", user_agent="ua/1", active=active, extra=extra)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2024-01-01T10:00:00Z", datetime(2024, 1, 1, 10, tzinfo=UTC)),
        ("2024-01-01T12:00:00+02:00", datetime(2024, 1, 1, 10, tzinfo=UTC)),
        ("2024-01-01T10:00:00", datetime(2024, 1, 1, 10, tzinfo=UTC)),  # no zone: UTC
        (None, None),
    ],
)
def test_timestamp(timestamp, expected):
    (event,) = decode("event", {"event": "E", "userId": "u", "timestamp": timestamp})
    assert event.original_timestamp == expected
    assert event.timestamp == (expected or NOW)


@pytest.mark.parametrize("timestamp", ["yesterday", 1714816800, "2024-13-01T00:00:00Z"])
def test_bad_timestamp(timestamp):
    assert refused("event", {"event": "E", "userId": "u", "timestamp": timestamp}) == (
        "invalid_timestamp",
        "timestamp",
    )


@pytest.mark.parametrize(
    ("headers", "library"),
    [
        ({"bucket-sdk-version": "2.4.0"}, ("@bucketco/tracking-sdk", "2.4.0")),
        ({"bucket-sdk-version": "browser-sdk/3.3.3"}, ("@bucketco/browser-sdk", "3.3.3")),
        ({"bucket-sdk-version": "node-sdk/1.10.0"}, ("@bucketco/node-sdk", "1.10.0")),
        ({"reflag-sdk-version": "node-sdk/1.7.1"}, ("@reflag/node-sdk", "1.7.1")),
        ({"reflag-sdk-version": "browser-sdk/1.6.1"}, ("@reflag/browser-sdk", "1.6.1")),
        ({}, None),
    ],
)
def test_sdk_library_from_its_version_header(headers, library):
    (event,) = decode("user", {"userId": "u"}, headers)
    lib = event.context.library
    assert (None if lib is None else (lib.name, lib.version)) == library


# --- parse -------------------------------------------------------------------------------------------------


def test_bulk_items_are_numbered():
    events = bucket.decode(
        meta(), bucket.parse("bulk", b'[{"type":"user","userId":"a"},\n {"type":"user", "userId":"b"}]')
    )
    assert [(e.message_id, e.raw, e.dialect_version) for e in events] == [
        ("req-1-0", '{"type":"user","userId":"a"}', "bulk"),
        ("req-1-1", '{"type":"user", "userId":"b"}', "bulk"),
    ]


def test_unknown_call():
    with pytest.raises(InvalidPayload) as info:
        bucket.parse("track", b"{}")
    assert info.value.code == "unknown_call"


def test_limits():
    with pytest.raises(PayloadTooLarge):
        bucket.parse("user", b" " * (bucket.MAX_CALL_BYTES + 1))
    with pytest.raises(PayloadTooLarge):
        bucket.parse("bulk", b" " * (bucket.MAX_BULK_BYTES + 1))
    bucket.parse("user", b'{"userId":"u"}' + b" " * (bucket.MAX_CALL_BYTES - 14))


def test_nul_is_replaced_in_canonical_fields_but_raw_stays():
    body = b'{"event":"a\\u0000b","userId":"u"}'
    (event,) = bucket.decode(meta(), bucket.parse("event", body))
    assert event.name == "a\ufffdb"
    assert event.raw == body.decode()


@pytest.mark.parametrize(
    ("header", "key"),
    [("Bearer k1", "k1"), ("bearer  k1 ", "k1"), ("Basic azE6", None), ("Bearer", None), (None, None)],
)
def test_credentials(header, key):
    assert bucket.credentials({"authorization": header} if header else {}, None) == key


# --- encode ----------------------------------------------------------------------------------------


def event(**fields) -> Event:
    base = {
        "id": "",
        "message_id": "m",
        "source_id": "s",
        "dialect": "segment",
        "timestamp": NOW,
        "received_at": NOW,
        "raw": "{}",
    }
    return Event(**{**base, **fields})


TS = NOW.isoformat()
ENCODE = [
    (
        event(type="identify", user_id="u", traits={"name": "Ada"}, context=Context(active=False)),
        {
            "type": "user",
            "userId": "u",
            "attributes": {"name": "Ada"},
            "context": {"active": False},
            "timestamp": TS,
        },
    ),
    (
        event(type="identify", anonymous_id="anon", traits={}),
        {"type": "user", "userId": "anon", "attributes": {}, "timestamp": TS},
    ),
    (
        event(type="group", user_id="u", group_id="c", traits={"plan": "pro"}),
        {"type": "company", "companyId": "c", "userId": "u", "attributes": {"plan": "pro"}, "timestamp": TS},
    ),
    (
        event(type="group", group_id="c"),
        {"type": "company", "companyId": "c", "attributes": {}, "timestamp": TS},
    ),
    (
        event(type="track", name="Clicked", user_id="u", group_id="c", properties={"x": 1}),
        {
            "type": "event",
            "event": "Clicked",
            "userId": "u",
            "companyId": "c",
            "attributes": {"x": 1},
            "timestamp": TS,
        },
    ),
    (
        event(type="page", name="Home", anonymous_id="a", properties={"url": "/"}),
        {
            "type": "event",
            "event": "Home",
            "userId": "a",
            "attributes": {"url": "/", "trackgate_type": "page"},
            "timestamp": TS,
        },
    ),
    (
        event(type="alias", user_id="u", previous_id="anon"),
        {
            "type": "event",
            "event": "alias",
            "userId": "u",
            "attributes": {"trackgate_type": "alias", "previousId": "anon"},
            "timestamp": TS,
        },
    ),
    (
        event(type="increment", user_id="u", properties={"property": "logins", "value": 1}),
        {
            "type": "event",
            "event": "increment",
            "userId": "u",
            "attributes": {"property": "logins", "value": 1, "trackgate_type": "increment"},
            "timestamp": TS,
        },
    ),
    (
        event(type="assign_group", user_id="u", group_ids=["g1", "g2"]),
        {
            "type": "event",
            "event": "assign_group",
            "userId": "u",
            "attributes": {"trackgate_type": "assign_group", "groupIds": ["g1", "g2"]},
            "timestamp": TS,
        },
    ),
    (
        event(
            type="feedback",
            user_id="u",
            group_id="c",
            properties={"feature_id": "f", "score": 4, "comment": "ok", "source": "widget"},
        ),
        {
            "type": "feedback",
            "featureId": "f",
            "userId": "u",
            "companyId": "c",
            "score": 4,
            "comment": "ok",
            "source": "widget",
            "timestamp": TS,
        },
    ),
]


@pytest.mark.parametrize(("canonical", "item"), ENCODE, ids=lambda v: getattr(v, "type", ""))
def test_encode(canonical, item):
    assert bucket.encode([canonical]) == [item]


@pytest.mark.parametrize(
    "item",
    [
        {"type": "user", "userId": "u", "attributes": {"a": 1}, "context": {"active": False}},
        {"type": "company", "companyId": "c", "userId": "u", "attributes": {}},
        {"type": "event", "event": "E", "userId": "u", "companyId": "c", "attributes": {"n": 1}},
        {"type": "feature-flag-event", "action": "check", "key": "k", "evalContext": {}, "evalResult": True},
        {"type": "prompt-event", "action": "shown", "featureId": "f", "promptId": "p", "userId": "u"},
        {"type": "feedback", "featureId": "f", "userId": "u", "score": 2, "comment": "meh", "source": "sdk"},
    ],
    ids=lambda item: item["type"],
)
def test_decode_then_encode_gives_the_item_back(item):
    body = json.dumps([{**item, "timestamp": TS}]).encode()
    (encoded,) = bucket.encode(bucket.decode(meta(), bucket.parse("bulk", body)))
    assert encoded == {**item, "timestamp": TS}


def test_encode_a_segment_track_named_like_a_flag_event_is_an_event():
    """Only Bucket's own flag/prompt events come back as those items."""
    (item,) = bucket.encode([event(type="track", name="prompt-event", user_id="u")])
    assert item["type"] == "event" and item["event"] == "prompt-event"
