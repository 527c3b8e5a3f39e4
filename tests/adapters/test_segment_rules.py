"""Every rule of the Segment dialect, one table each. Pure: the adapter and bytes, nothing else.

Rules are the ones reference/segment.md and the HTTP Tracking API docs state; each table says which.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from trackgate.adapters import segment
from trackgate.adapters.base import AdapterError, InvalidPayload, PayloadTooLarge
from trackgate.schemas.event import Context, Event
from trackgate.schemas.request import RequestMeta

RECEIVED = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
REQUEST_IP = "192.0.2.1"
META = RequestMeta(
    source_id="src", dialect="segment", call="track", received_at=RECEIVED, request_id="req", ip=REQUEST_IP
)


def enc(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def decode(call: str, body: Any, meta: RequestMeta = META) -> list[Event]:
    data = body if isinstance(body, bytes) else enc(body)
    return segment.decode(meta, segment.parse(call, data))


def refusal(call: str, body: Any) -> AdapterError:
    with pytest.raises(AdapterError) as info:
        decode(call, body)
    return info.value


def one(call: str, body: Any, meta: RequestMeta = META) -> Event:
    events = decode(call, body, meta)
    assert len(events) == 1
    return events[0]


def at(seconds: float) -> datetime:
    """RECEIVED shifted by ``seconds``."""
    return RECEIVED + timedelta(seconds=seconds)


# --- calls and types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        ("identify", "identify"),
        ("track", "track"),
        ("page", "page"),
        ("screen", "screen"),
        ("group", "group"),
        ("alias", "alias"),
        # analytics.js posts to ${apiHost}/${type[0]}
        ("i", "identify"),
        ("t", "track"),
        ("p", "page"),
        ("s", "screen"),
        ("g", "group"),
        ("a", "alias"),
    ],
)
def test_single_call_type_comes_from_the_path(call, kind):
    body = {"userId": "u1", "event": "E", "groupId": "g1", "previousId": "p1"}
    assert one(call, body).type == kind


@pytest.mark.parametrize("body_type", ["identify", "page", "group", "Track", "nonsense", 5, [], {}, None])
def test_path_type_wins_over_the_body_type(body_type):
    event = one("track", {"type": body_type, "userId": "u1", "event": "E"})
    assert event.type == "track"
    assert event.name == "E"


def test_path_type_wins_so_the_path_rules_apply():
    # a body saying "identify" sent to /v1/track is a track, and a track needs its event
    error = refusal("track", {"type": "identify", "userId": "u1"})
    assert (error.code, error.path) == ("missing_event", "event")


@pytest.mark.parametrize("call", ["batch", "import", "b"])
def test_batch_calls(call):
    events = decode(call, {"batch": [{"type": "track", "userId": "u1", "event": "E"}]})
    assert [e.type for e in events] == ["track"]


@pytest.mark.parametrize("call", ["x", "v1", "Track", "", "m"])
def test_unknown_call(call):
    error = refusal(call, {"userId": "u1"})
    assert error.code == "unknown_call"


@pytest.mark.parametrize(
    ("item_type", "code"),
    [
        (None, "missing_type"),
        ("", "missing_type"),
        ("Track", "invalid_type"),  # types are case-sensitive
        ("increment", "invalid_type"),  # canonical-only types are not Segment calls
        ("batch", "invalid_type"),
        (5, "invalid_type"),
        (True, "invalid_type"),
    ],
)
def test_batch_items_need_a_valid_type(item_type, code):
    item = {"userId": "u1", "event": "E"}
    if item_type is not None:
        item["type"] = item_type
    body = {"batch": [{"type": "track", "userId": "u1", "event": "ok"}, item]}
    error = refusal("batch", body)
    assert (error.code, error.path) == (code, "batch[1].type")


@pytest.mark.parametrize("item_type", [[], {}, ["track"]], ids=["list", "dict", "list-of-str"])
def test_batch_item_type_of_the_wrong_json_kind_is_invalid_type(item_type):
    error = refusal("batch", {"batch": [{"type": item_type, "userId": "u1", "event": "E"}]})
    assert (error.code, error.path) == ("invalid_type", "batch[0].type")


@pytest.mark.parametrize("kind", sorted(segment.MESSAGE_TYPES))
def test_every_type_in_a_batch(kind):
    item = {"type": kind, "userId": "u1", "event": "E", "groupId": "g1", "previousId": "p1"}
    assert one("batch", {"batch": [item]}).type == kind


# --- identity --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "anonymous_id", "expected"),
    [
        ("u1", None, ("u1", None)),
        (None, "a1", (None, "a1")),
        ("u1", "a1", ("u1", "a1")),
        (42, None, ("42", None)),  # numbers are accepted as strings
        (None, 7, (None, "7")),
        (0, None, ("0", None)),  # zero is an id, not a missing one
        (12345678901234567890, None, ("12345678901234567890", None)),
        (4.5, None, ("4.5", None)),
        ("", "a1", (None, "a1")),  # "" counts as missing
        ("u1", "", ("u1", None)),
    ],
)
def test_user_id_or_anonymous_id(user_id, anonymous_id, expected):
    body = {"event": "E"}
    if user_id is not None:
        body["userId"] = user_id
    if anonymous_id is not None:
        body["anonymousId"] = anonymous_id
    event = one("track", body)
    assert (event.user_id, event.anonymous_id) == expected


@pytest.mark.parametrize(
    "ids",
    [{}, {"userId": None}, {"userId": "", "anonymousId": ""}, {"userId": None, "anonymousId": None}],
    ids=["absent", "null", "both-empty", "both-null"],
)
@pytest.mark.parametrize("call", ["identify", "track", "page", "screen", "group"])
def test_no_user_anon_id(call, ids):
    error = refusal(call, {"event": "E", "groupId": "g1", **ids})
    assert (error.code, error.path) == ("no_user_anon_id", "userId")


def test_no_user_anon_id_in_a_batch_names_the_item():
    body = {"batch": [{"type": "track", "userId": "u1", "event": "A"}, {"type": "track", "event": "B"}]}
    error = refusal("batch", body)
    assert (error.code, error.path) == ("no_user_anon_id", "batch[1].userId")


@pytest.mark.parametrize("field", ["userId", "anonymousId"])
@pytest.mark.parametrize("value", [True, False, {"id": 1}, ["u1"]], ids=["true", "false", "object", "array"])
def test_ids_of_the_wrong_type(field, value):
    body = {"event": "E", "userId": "u1", field: value}
    error = refusal("track", body)
    assert (error.code, error.path) == ("invalid_field_type", field)


# --- what each type needs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "body", "code", "path"),
    [
        ("track", {"userId": "u1"}, "missing_event", "event"),
        ("track", {"userId": "u1", "event": ""}, "missing_event", "event"),
        ("track", {"userId": "u1", "event": None}, "missing_event", "event"),
        ("track", {"userId": "u1", "event": {"name": "E"}}, "invalid_field_type", "event"),
        ("group", {"userId": "u1"}, "missing_group_id", "groupId"),
        ("group", {"userId": "u1", "groupId": ""}, "missing_group_id", "groupId"),
        ("group", {"userId": "u1", "groupId": ["g"]}, "invalid_field_type", "groupId"),
        ("alias", {"userId": "u1"}, "missing_previous_id", "previousId"),
        ("alias", {"userId": "u1", "previousId": ""}, "missing_previous_id", "previousId"),
        ("alias", {"anonymousId": "a1", "previousId": "p1"}, "missing_user_id", "userId"),
        ("alias", {"previousId": "p1"}, "no_user_anon_id", "userId"),
        ("page", {"userId": "u1", "name": {"x": 1}}, "invalid_field_type", "name"),
    ],
)
def test_required_fields(call, body, code, path):
    error = refusal(call, body)
    assert (error.code, error.path) == (code, path)


@pytest.mark.parametrize(
    ("item", "code", "path"),
    [
        ({"type": "track", "userId": "u1"}, "missing_event", "batch[1].event"),
        ({"type": "group", "userId": "u1"}, "missing_group_id", "batch[1].groupId"),
        ({"type": "alias", "userId": "u1"}, "missing_previous_id", "batch[1].previousId"),
        ({"type": "alias", "anonymousId": "a1", "previousId": "p1"}, "missing_user_id", "batch[1].userId"),
    ],
)
def test_required_fields_in_a_batch_refuse_the_whole_batch(item, code, path):
    body = {"batch": [{"type": "identify", "userId": "u1"}, item, {"type": "identify", "userId": "u2"}]}
    error = refusal("batch", body)
    assert (error.code, error.path) == (code, path)


@pytest.mark.parametrize(
    ("call", "body", "fields"),
    [
        ("track", {"userId": "u1", "event": "Signed Up"}, {"name": "Signed Up"}),
        ("track", {"userId": "u1", "event": 404}, {"name": "404"}),
        ("page", {"userId": "u1"}, {"name": None}),  # page and screen names are optional
        ("page", {"userId": "u1", "name": "Home"}, {"name": "Home"}),
        ("screen", {"userId": "u1", "name": "Welcome"}, {"name": "Welcome"}),
        ("group", {"userId": "u1", "groupId": 99}, {"group_id": "99", "name": None}),
        ("alias", {"userId": "u1", "previousId": 7}, {"previous_id": "7", "user_id": "u1"}),
        ("identify", {"anonymousId": "a1"}, {"traits": {}, "name": None}),
        # the fields another type would need are not read
        ("identify", {"userId": "u1", "event": "E", "groupId": "g", "previousId": "p"}, {"name": None}),
        ("identify", {"userId": "u1", "event": "E", "groupId": "g", "previousId": "p"}, {"group_id": None}),
        (
            "identify",
            {"userId": "u1", "event": "E", "groupId": "g", "previousId": "p"},
            {"previous_id": None},
        ),
    ],
)
def test_type_fields(call, body, fields):
    event = one(call, body)
    for field, value in fields.items():
        assert getattr(event, field) == value, field


# --- messageId -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message_id", "expected"),
    [
        ("m-1", "m-1"),
        ("x" * 100, "x" * 100),  # at most 100 characters
        ("é" * 100, "é" * 100),  # characters, not bytes
        (1234, "1234"),
        (None, "req-0"),  # assigned: {request_id}-{index}
        ("", "req-0"),
    ],
)
def test_message_id(message_id, expected):
    body = {"userId": "u1", "event": "E"}
    if message_id is not None:
        body["messageId"] = message_id
    assert one("track", body).message_id == expected


def test_message_id_over_100_characters():
    error = refusal("track", {"userId": "u1", "event": "E", "messageId": "x" * 101})
    assert (error.code, error.path) == ("message_id_too_long", "messageId")
    error = refusal("batch", {"batch": [{"type": "identify", "userId": "u1", "messageId": "é" * 101}]})
    assert (error.code, error.path) == ("message_id_too_long", "batch[0].messageId")


def test_message_id_wrong_type():
    error = refusal("track", {"userId": "u1", "event": "E", "messageId": {"id": 1}})
    assert (error.code, error.path) == ("invalid_field_type", "messageId")


def test_missing_message_ids_in_a_batch_use_the_item_index():
    items = [
        {"type": "identify", "userId": "u1"},
        {"type": "identify", "userId": "u1", "messageId": "mine"},
        {"type": "identify", "userId": "u1", "messageId": ""},
    ]
    meta = msgspec.structs.replace(META, request_id="0192f0c1-7a55-7b3c-9d1e-1234567890ab")
    ids = [e.message_id for e in decode("batch", {"batch": items}, meta)]
    assert ids == [
        "0192f0c1-7a55-7b3c-9d1e-1234567890ab-0",
        "mine",
        "0192f0c1-7a55-7b3c-9d1e-1234567890ab-2",
    ]


def test_assigned_message_ids_are_stable_for_a_request():
    # decoding is pure: the same request decoded twice gives the same dedupe keys
    body = {"batch": [{"type": "identify", "userId": "u1"}, {"type": "identify", "userId": "u2"}]}
    assert [e.message_id for e in decode("batch", body)] == [e.message_id for e in decode("batch", body)]


# --- limits ----------------------------------------------------------------------------------------


def track_of_size(size: int) -> bytes:
    """A valid track call exactly ``size`` bytes long."""
    base = enc({"userId": "u1", "event": "E", "properties": {"pad": ""}})
    body = enc({"userId": "u1", "event": "E", "properties": {"pad": "x" * (size - len(base))}})
    assert len(body) == size
    return body


def batch_of_size(size: int, n: int = 1, item: bytes | None = None) -> bytes:
    """A valid batch of ``n`` small items (or copies of ``item``), padded to exactly ``size`` bytes."""
    item = item or b'{"type":"track","userId":"u1","event":"E"}'
    head = b'{"batch":[' + b",".join([item] * n) + b'],"pad":"'
    body = head + b"x" * (size - len(head) - 2) + b'"}'
    assert len(body) == size
    return body


def test_event_limit_is_32_kb():
    assert segment.MAX_EVENT_BYTES == 32 * 1024
    assert len(decode("track", track_of_size(32 * 1024))) == 1


def test_event_over_32_kb():
    with pytest.raises(PayloadTooLarge) as info:
        decode("track", track_of_size(32 * 1024 + 1))
    assert info.value.code == "event_too_large"
    assert info.value.status == 413  # the Segment renderer answers it as Segment's 400


def test_batch_item_limit_is_32_kb():
    ok = track_of_size(32 * 1024 - len(',"type":"track"'))
    ok = ok[:-1] + b',"type":"track"}'
    assert len(ok) == 32 * 1024
    assert len(decode("batch", b'{"batch":[' + ok + b"]}")) == 1

    big = ok[:-1] + b" }"  # one byte more, still valid JSON
    with pytest.raises(PayloadTooLarge) as info:
        decode("batch", b'{"batch":[{"type":"identify","userId":"u1"},' + big + b"]}")
    assert (info.value.code, info.value.path) == ("event_too_large", "batch[1]")


def test_batch_limit_is_500_kb():
    assert segment.MAX_BATCH_BYTES == 500 * 1024
    assert len(decode("batch", batch_of_size(500 * 1024))) == 1
    with pytest.raises(PayloadTooLarge) as info:
        decode("batch", batch_of_size(500 * 1024 + 1))
    assert info.value.code == "batch_too_large"


def test_batch_limit_is_2500_events():
    item = b'{"type":"track","userId":"u1","event":"E"}'
    body = b'{"batch":[' + b",".join([item] * 2500) + b"]}"
    assert len(decode("batch", body)) == 2500
    body = b'{"batch":[' + b",".join([item] * 2501) + b"]}"
    with pytest.raises(PayloadTooLarge) as info:
        decode("batch", body)
    assert (info.value.code, info.value.path) == ("too_many_events", "batch")


@pytest.mark.parametrize(
    ("body", "code"),
    [({"batch": []}, "empty_batch"), ({}, "invalid_batch"), ({"batch": None}, "invalid_batch")],
    ids=["empty", "absent", "null"],
)
def test_batch_needs_items(body, code):
    error = refusal("batch", body)
    assert (error.code, error.path) == (code, "batch")


@pytest.mark.parametrize("batch", [{}, "x", 3, True], ids=["object", "string", "number", "bool"])
def test_batch_that_is_not_an_array(batch):
    error = refusal("batch", {"batch": batch})
    assert (error.code, error.path) == ("invalid_batch", "batch")


# --- JSON and body shape ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["track", "batch"])
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"userId": "u1",}',
        b"{'userId': 'u1'}",
        b'{"userId": "u1"} trailing',
        b"\xef\xbb\xbf{}",
        b"nul",
    ],
    ids=["empty", "truncated", "trailing-comma", "single-quotes", "trailing-garbage", "bom", "bad-literal"],
)
def test_invalid_json(call, body):
    error = refusal(call, body)
    assert (error.code, error.path) == ("invalid_json", None)
    assert error.status == 400


@pytest.mark.parametrize("body", [b"", b"  \n"])
@pytest.mark.parametrize("call", ["track", "batch"])
def test_an_empty_body_is_called_empty_not_truncated(call, body):
    error = refusal(call, body)
    assert (error.code, error.status) == ("invalid_json", 400)
    assert "empty" in error.message and "truncated" not in error.message


@pytest.mark.parametrize("body", [b"[]", b'[{"userId":"u1","event":"E"}]', b'"x"', b"1", b"null", b"true"])
@pytest.mark.parametrize("call", ["track", "batch"])
def test_body_that_is_not_an_object(call, body):
    error = refusal(call, body)
    assert error.code == "invalid_body"
    assert isinstance(error, InvalidPayload)


@pytest.mark.parametrize("item", [b"1", b'"track"', b"null", b"[]"])
def test_batch_item_that_is_not_an_object(item):
    error = refusal("batch", b'{"batch":[{"type":"identify","userId":"u1"},' + item + b"]}")
    assert (error.code, error.path) == ("invalid_message", "batch[1]")


@pytest.mark.parametrize(
    "body",
    [b'{"userId":"u\xff","event":"E"}', b'{"userId":"u1","event":"E","properties":{"a":"\xc3\x28"}}'],
    ids=["in-id", "in-properties"],
)
def test_invalid_utf8_is_refused(body):
    error = refusal("track", body)
    assert (error.code, error.path) == ("invalid_json", None)


def test_non_ascii_and_escapes_are_fine():
    event = one(
        "track", '{"userId":"ü1","event":"Caf\\u00e9 \\ud83d\\ude00","properties":{"a":"日本"}}'.encode()
    )
    assert event.user_id == "ü1"
    assert event.name == "Café 😀"
    assert event.properties == {"a": "日本"}


# --- object fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["properties", "traits", "context", "integrations"])
@pytest.mark.parametrize("value", [[], "x", 1, True], ids=["array", "string", "number", "bool"])
def test_object_fields_must_be_objects(field, value):
    error = refusal("track", {"userId": "u1", "event": "E", field: value})
    assert (error.code, error.path) == ("invalid_field_type", field)
    item = {"type": "track", "userId": "u1", "event": "E", field: value}
    error = refusal("batch", {"batch": [{"type": "identify", "userId": "u1"}, item]})
    assert (error.code, error.path) == ("invalid_field_type", f"batch[1].{field}")


@pytest.mark.parametrize("field", ["context", "integrations"])
def test_batch_level_objects_must_be_objects(field):
    error = refusal("batch", {"batch": [{"type": "identify", "userId": "u1"}], field: ["x"]})
    assert (error.code, error.path) == ("invalid_field_type", field)


@pytest.mark.parametrize("field", ["properties", "traits", "context", "integrations"])
def test_null_object_fields_are_empty(field):
    event = one("identify", {"userId": "u1", field: None})
    assert event.properties == {}
    assert event.traits == {}
    assert event.integrations == {}
    assert event.context == Context(ip=REQUEST_IP)


def test_object_fields_are_kept_as_sent():
    properties = {"revenue": 14.99, "currency": "EUR", "nested": {"a": [1, None, True]}, "n": None}
    traits = {"email": "a@example.com", "createdAt": "2024-01-01T00:00:00Z", "company": {"name": "Initech"}}
    integrations = {"All": False, "Mixpanel": {"people": True}}
    event = one(
        "identify",
        {"userId": "u1", "traits": traits, "properties": properties, "integrations": integrations},
    )
    assert (event.traits, event.properties, event.integrations) == (traits, properties, integrations)


# --- timestamps ------------------------------------------------------------------------------------

NOON = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T12:00:00Z", NOON),
        ("2024-03-01T12:00:00.000Z", NOON),  # analytics.js, analytics-node
        ("2024-03-01T12:00:00.000+00:00", NOON),  # analytics-python: offset, not Z
        ("2024-03-01T12:00:00.123456+00:00", NOON + timedelta(microseconds=123456)),  # rudder-sdk-python
        ("2024-03-01T13:00:00+01:00", NOON),
        ("2024-03-01T07:00:00-05:00", NOON),
        ("2024-03-01T12:00:00+0000", NOON),
        ("2024-03-01T12:00:00", NOON),  # naive: UTC
        ("2024-03-01T12:00:00.5", NOON + timedelta(milliseconds=500)),
        ("2024-03-01 12:00:00Z", NOON),
        ("2024-03-01T12:00:00.123456789Z", NOON + timedelta(microseconds=123456)),  # Go RFC3339Nano
    ],
)
def test_timestamp_formats(text, expected):
    event = one("track", {"userId": "u1", "event": "E", "timestamp": text})
    assert event.original_timestamp == expected
    assert event.original_timestamp.utcoffset() is not None
    assert event.timestamp == expected  # no sentAt: taken as given


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-03-01T25:00:00Z",
        "12:00:00",
        "1709294400",
        1709294400000,
        True,
        {"t": 1},
        ["2024-03-01T12:00:00Z"],
    ],
    ids=["word", "month-13", "hour-25", "time-only", "epoch-string", "epoch-ms", "bool", "object", "array"],
)
@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt"])
def test_invalid_timestamp(field, value):
    # (originalTimestamp is read only when there is no timestamp)
    body = {"userId": "u1", "event": "E", field: value}
    error = refusal("track", body)
    assert (error.code, error.path) == ("invalid_timestamp", field)
    item = {"type": "track", "userId": "u1", "event": "E", field: value}
    error = refusal("batch", {"batch": [{"type": "identify", "userId": "u1"}, item]})
    assert (error.code, error.path) == ("invalid_timestamp", f"batch[1].{field}")


def test_invalid_batch_level_sent_at():
    body = {"batch": [{"type": "track", "userId": "u1", "event": "E"}], "sentAt": "soon"}
    error = refusal("batch", body)
    assert (error.code, error.path) == ("invalid_timestamp", "sentAt")


@pytest.mark.parametrize("field", ["timestamp", "sentAt"])
def test_empty_timestamp_counts_as_missing(field):
    event = one("track", {"userId": "u1", "event": "E", field: ""})
    assert event.timestamp == RECEIVED


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [("9999-12-31T23:59:59.999Z", "2026-03-01T12:00:09Z"), ("0001-01-01T00:00:00Z", "2026-03-01T12:00:11Z")],
    ids=["year-9999", "year-1"],
)
def test_clock_skew_out_of_range_is_invalid_timestamp(timestamp, sent_at):
    error = refusal("track", {"userId": "u1", "event": "E", "timestamp": timestamp, "sentAt": sent_at})
    assert (error.code, error.path) == ("invalid_timestamp", "timestamp")


# --- clock skew: timestamp = receivedAt - (sentAt - originalTimestamp) ------------------------------
# RECEIVED is 2026-03-01T12:00:10Z.

SKEW = [
    # (message fields, batch-level sentAt, timestamp, original_timestamp, sent_at)
    pytest.param(
        {"timestamp": "2026-03-01T12:00:00Z", "sentAt": "2026-03-01T12:00:05Z"},
        None,
        at(-5),
        at(-10),
        at(-5),
        id="in-sync-queued-5s",
    ),
    pytest.param(
        {"timestamp": "2026-03-01T13:00:00.000Z", "sentAt": "2026-03-01T13:00:02.000Z"},
        None,
        at(-2),
        at(3600 - 10),
        at(3600 - 8),
        id="client-clock-1h-ahead",
    ),
    pytest.param(
        {"timestamp": "2026-03-01T11:00:00.000+00:00", "sentAt": "2026-03-01T11:00:00.250+00:00"},
        None,
        at(-0.25),
        at(-3610),
        at(-3600 + -9.75),
        id="client-clock-1h-behind-offsets",
    ),
    pytest.param(
        {"timestamp": "2026-03-01T13:00:00+01:00", "sentAt": "2026-03-01T12:00:05Z"},
        None,
        at(-5),
        at(-10),
        at(-5),
        id="mixed-offsets",
    ),
    pytest.param(
        {"timestamp": "2026-03-01T12:00:00", "sentAt": "2026-03-01T12:00:05"},
        None,
        at(-5),
        at(-10),
        at(-5),
        id="naive-is-utc",
    ),
    pytest.param(
        {"originalTimestamp": "2026-03-01T12:00:00Z", "sentAt": "2026-03-01T12:00:05Z"},
        None,
        at(-5),
        at(-10),
        at(-5),
        id="originalTimestamp-when-no-timestamp",
    ),
    pytest.param(
        {"timestamp": "2012-12-02T00:30:08.276Z"},
        None,
        datetime(2012, 12, 2, 0, 30, 8, 276000, tzinfo=UTC),
        datetime(2012, 12, 2, 0, 30, 8, 276000, tzinfo=UTC),
        None,
        id="no-sentAt-historical-import",
    ),
    pytest.param({"sentAt": "2026-03-01T13:00:00Z"}, None, RECEIVED, None, at(3590), id="no-timestamp"),
    pytest.param({}, None, RECEIVED, None, None, id="neither"),
    pytest.param(
        {"timestamp": "2026-03-01T12:00:00Z"},
        "2026-03-01T12:00:04Z",
        at(-4),
        at(-10),
        at(-6),
        id="batch-level-sentAt",
    ),
    pytest.param(
        {"timestamp": "2026-03-01T12:00:00Z", "sentAt": "2026-03-01T12:00:01Z"},
        "2026-03-01T12:00:04Z",
        at(-1),
        at(-10),
        at(-9),
        id="item-sentAt-wins",
    ),
    pytest.param(
        {"timestamp": "2026-03-01T12:00:00Z", "sentAt": None},
        "2026-03-01T12:00:04Z",
        at(-4),
        at(-10),
        at(-6),
        id="item-sentAt-null-uses-batch",
    ),
    pytest.param(
        {"timestamp": "2026-03-01T12:00:20Z", "sentAt": "2026-03-01T12:00:15Z"},
        None,
        at(5),
        at(10),
        at(5),
        id="sent-before-it-happened",
    ),
]


@pytest.mark.parametrize(("fields", "batch_sent_at", "timestamp", "original", "sent_at"), SKEW)
def test_clock_skew(fields, batch_sent_at, timestamp, original, sent_at):
    item = {"type": "track", "userId": "u1", "event": "E", **fields}
    body: dict[str, Any] = {"batch": [item]}
    if batch_sent_at is not None:
        body["sentAt"] = batch_sent_at
    event = one("batch", body)
    assert event.timestamp == timestamp
    assert event.original_timestamp == original
    assert event.sent_at == sent_at
    assert event.received_at == RECEIVED
    if batch_sent_at is None:  # the same message as a single call
        single = one("track", {k: v for k, v in item.items() if k != "type"})
        assert (single.timestamp, single.original_timestamp, single.sent_at) == (timestamp, original, sent_at)


def test_clock_skew_is_per_item():
    body = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "A", "timestamp": "2026-03-01T11:59:00Z"},
            {"type": "track", "userId": "u1", "event": "B", "timestamp": "2026-03-01T12:00:00Z"},
            {"type": "track", "userId": "u1", "event": "C"},
        ],
        "sentAt": "2026-03-01T12:00:02Z",
    }
    assert [e.timestamp for e in decode("batch", body)] == [at(-62), at(-2), RECEIVED]


# --- context ---------------------------------------------------------------------------------------

FULL_CONTEXT = {
    "ip": "203.0.113.9",
    "userAgent": "Mozilla/5.0 (iPhone)",
    "locale": "fr-FR",
    "timezone": "Europe/Paris",
    "active": False,
    "page": {
        "url": "https://e.com/a?b=1",
        "path": "/a",
        "referrer": "https://g.com/",
        "title": "A",
        "search": "?b=1",
    },
    "screen": {"width": 390, "height": 844, "density": 3},
    "campaign": {"source": "google", "medium": "cpc", "name": "spring", "term": "shoes", "content": "ad-1"},
    "library": {"name": "analytics-ios", "version": "4.1.8"},
    "device": {"id": "d-1", "manufacturer": "Apple", "model": "iPhone15,2", "type": "ios"},
    "os": {"name": "iOS", "version": "17.4"},
    "app": {"name": "Shop", "version": "2.3.0", "build": "230"},
    "network": {"wifi": True, "carrier": "Orange"},
    "location": {"city": "Paris", "country": "France"},
    "traits": {"email": "a@example.com"},
    "groupId": "g-1",
    "direct": True,
    "referrer": {"id": "r-1", "type": "dataxu"},
}


def test_context_is_normalized():
    event = one("track", {"userId": "u1", "event": "E", "context": FULL_CONTEXT})
    assert msgspec.to_builtins(event.context) == {
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (iPhone)",
        "locale": "fr-FR",
        "timezone": "Europe/Paris",
        "page": {
            "url": "https://e.com/a?b=1",
            "path": "/a",
            "referrer": "https://g.com/",
            "title": "A",
            "search": "?b=1",
        },
        "screen": {"width": 390, "height": 844, "density": 3.0},
        "campaign": {
            "source": "google",
            "medium": "cpc",
            "name": "spring",
            "term": "shoes",
            "content": "ad-1",
        },
        "library": {"name": "analytics-ios", "version": "4.1.8"},
        "active": False,
        "extra": {
            k: FULL_CONTEXT[k]
            for k in ("device", "os", "app", "network", "location", "traits", "groupId", "direct", "referrer")
        },
    }


@pytest.mark.parametrize(
    ("context", "meta_ip", "expected"),
    [
        (None, REQUEST_IP, REQUEST_IP),  # no context: the request's address
        ({}, REQUEST_IP, REQUEST_IP),
        ({"locale": "en-US"}, REQUEST_IP, REQUEST_IP),
        pytest.param(
            {"ip": ""},
            REQUEST_IP,
            REQUEST_IP,
            id="empty-string",
        ),
        ({"ip": None}, REQUEST_IP, REQUEST_IP),
        ({"ip": "203.0.113.9"}, REQUEST_IP, "203.0.113.9"),  # the client's wins
        ({"ip": "2001:db8::1"}, REQUEST_IP, "2001:db8::1"),
        ({}, None, None),
        ({"ip": "203.0.113.9"}, None, "203.0.113.9"),
    ],
)
def test_context_ip(context, meta_ip, expected):
    meta = msgspec.structs.replace(META, ip=meta_ip)
    body = {"userId": "u1", "event": "E"}
    if context is not None:
        body["context"] = context
    assert one("track", body, meta).context.ip == expected


def test_context_ip_from_the_batch_context():
    body = {"batch": [{"type": "identify", "userId": "u1"}], "context": {"ip": "203.0.113.9"}}
    assert one("batch", body).context.ip == "203.0.113.9"


def test_user_agent_header_is_not_the_users_agent():
    # a server SDK's own User-Agent (analytics-python/2.4.0) says nothing about the user
    meta = msgspec.structs.replace(META, user_agent="analytics-python/2.4.0")
    assert one("track", {"userId": "u1", "event": "E"}, meta).context.user_agent is None


@pytest.mark.parametrize(
    ("context", "canonical", "extra"),
    [
        # a canonical key whose value has the wrong shape is not dropped: it stays in extra, as sent
        ({"page": "home"}, {}, {"page": "home"}),
        ({"screen": [390, 844]}, {}, {"screen": [390, 844]}),
        ({"campaign": "spring"}, {}, {"campaign": "spring"}),
        ({"library": "analytics.js"}, {}, {"library": "analytics.js"}),
        ({"active": "yes"}, {}, {"active": "yes"}),
        ({"userAgent": 5}, {}, {"userAgent": 5}),
        ({"locale": ["en"]}, {}, {"locale": ["en"]}),
        ({"timezone": {"name": "UTC"}}, {}, {"timezone": {"name": "UTC"}}),
        ({"screen": {"width": 390.5, "height": 844}}, {}, {"screen": {"width": 390.5, "height": 844}}),
        ({"page": {"url": 5}}, {}, {"page": {"url": 5}}),
        ({"library": {"name": "x", "version": 3}}, {}, {"library": {"name": "x", "version": 3}}),
        # the right shapes
        ({"active": True}, {"active": True}, {}),
        (
            {"screen": {"width": 390, "height": 844, "density": 2}},
            {"screen": {"width": 390, "height": 844, "density": 2.0}},
            {},
        ),
        ({"page": {"url": "/a", "title": None}}, {"page": {"url": "/a"}}, {}),
        ({"page": {}}, {"page": {}}, {}),
    ],
)
def test_context_odd_shapes(context, canonical, extra):
    meta = msgspec.structs.replace(META, ip=None)
    got = msgspec.to_builtins(one("track", {"userId": "u1", "event": "E", "context": context}, meta).context)
    assert got == ({**canonical, "extra": extra} if extra else canonical)


def test_batch_context_and_integrations_are_merged_into_each_item():
    body = {
        "batch": [
            {"type": "identify", "userId": "u1"},
            {
                "type": "identify",
                "userId": "u2",
                "context": {"locale": "fr-FR", "device": {"type": "tablet"}},
                "integrations": {"Mixpanel": False},
            },
        ],
        "context": {
            "locale": "en-US",
            "device": {"type": "phone", "name": "iPhone"},
            "app": {"name": "Shop"},
        },
        "integrations": {"All": True, "Mixpanel": True},
    }
    first, second = decode("batch", body)
    assert first.context.locale == "en-US"
    assert first.context.extra == {"device": {"type": "phone", "name": "iPhone"}, "app": {"name": "Shop"}}
    assert first.integrations == {"All": True, "Mixpanel": True}
    # the item's keys win, key by key at the top level of context/integrations
    assert second.context.locale == "fr-FR"
    assert second.context.extra == {"device": {"type": "tablet"}, "app": {"name": "Shop"}}
    assert second.integrations == {"All": True, "Mixpanel": False}


def test_merging_does_not_leak_between_items():
    body = {
        "batch": [
            {"type": "identify", "userId": "u1", "context": {"page": "x"}},
            {"type": "identify", "userId": "u2"},
        ],
        "context": {"locale": "en-US"},
    }
    first, second = decode("batch", body)
    assert first.context.extra == {"page": "x"}
    assert second.context.extra == {}


# --- credentials -----------------------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic " + b64("abc123:"), "abc123"),  # the documented form: writeKey + ":"
        ("Basic YWJjMTIzOg==", "abc123"),  # HTTP-API docs' own example
        ("Basic " + b64("abc123"), "abc123"),  # "without a colon might work"
        ("Basic " + b64("abc123:secret"), "abc123"),  # the password is ignored
        ("basic " + b64("abc123:"), "abc123"),  # schemes are case-insensitive
        ("BASIC " + b64("abc123:"), "abc123"),
        ("Basic  " + b64("abc123:") + " ", "abc123"),
        ("Basic " + b64("ключ:"), "ключ"),
        ("Basic " + b64(":abc123"), None),  # no username
        ("Basic " + b64(":"), None),
        ("Basic !!!not-base64!!!", None),
        ("Basic " + b64("abc123:")[:-2], None),  # padding stripped: not valid base64
        ("Basic " + base64.b64encode(b"\xff\xfe:").decode(), None),  # not UTF-8
        ("Basic", None),
        ("Basic ", None),
        ("Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln", None),  # OAuth: the key is in the body
        ("Digest username=abc123", None),
        (b64("abc123:"), None),  # no scheme
        ("", None),
        (None, None),
    ],
)
def test_basic_username(header, expected):
    assert segment.basic_username(header) == expected


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        ("Basic " + b64("hdr:"), {"writeKey": "body"}, "hdr"),  # the header wins
        ("Basic !!!", {"writeKey": "body"}, "body"),  # an unreadable header falls back to the body
        ("Bearer tok", {"writeKey": "body"}, "body"),
        (None, {"writeKey": "body"}, "body"),
        (None, {"writeKey": ""}, None),
        (None, {"writeKey": 123}, None),  # not a string: no key
        (None, {}, None),
    ],
)
def test_credentials_single(header, body, expected):
    headers = {"authorization": header} if header is not None else {}
    envelope = segment.parse("track", enc({"userId": "u1", "event": "E", **body}))
    assert segment.credentials(headers, envelope) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"writeKey": "top", "batch": [{"type": "identify", "userId": "u1", "writeKey": "item"}]}, "top"),
        ({"batch": [{"type": "identify", "userId": "u1", "writeKey": "item"}]}, "item"),
        (
            {
                "batch": [
                    {"type": "identify", "userId": "u1"},
                    {"type": "identify", "userId": "u2", "writeKey": "b"},
                ]
            },
            "b",
        ),
        ({"writeKey": None, "batch": [{"type": "identify", "userId": "u1"}]}, None),
    ],
)
def test_credentials_batch(body, expected):
    assert segment.credentials({}, segment.parse("batch", enc(body))) == expected


def test_credentials_before_the_body_is_parsed():
    assert segment.credentials({"authorization": "Basic " + b64("k:")}, None) == "k"
    assert segment.credentials({}, None) is None
    assert segment.credentials({"authorization": "Bearer t"}, None) is None


# --- raw -------------------------------------------------------------------------------------------


def test_raw_single_call_is_the_body_byte_for_byte():
    body = (
        b'  {\n  "userId" : "u1",\n\t"event":"Caf\\u00e9",  "properties": {"price": 1.10, "e": 1E+2,'
        b' "n": -0, "s": "\xe6\x97\xa5\xe6\x9c\xac", "z": null}, "writeKey":"k"}\n'
    )
    event = one("track", body)
    assert event.raw.encode() == body


def test_raw_batch_items_are_their_exact_slices():
    items = [
        b'{ "type":"track", "userId":"u1","event":"A",  "properties":{"price":1.10} }',
        b'{"type":"identify","userId":"u2","traits":{"name":"\\u00c9mile","t":"\xe6\x97\xa5"}}',
    ]
    body = (
        b'{"writeKey":"k", "batch" : [\n '
        + items[0]
        + b" ,\n"
        + items[1]
        + b'\n], "context":{"ip":"1.2.3.4"}}'
    )
    events = decode("batch", body)
    assert [e.raw.encode() for e in events] == items


def test_raw_does_not_include_the_batch_context():
    body = {"batch": [{"type": "identify", "userId": "u1"}], "context": {"locale": "en-US"}}
    assert json.loads(one("batch", body).raw) == {"type": "identify", "userId": "u1"}


# --- encode ----------------------------------------------------------------------------------------

# representative messages of every type, as Segment's spec shapes them (no fields a type doesn't have)
ROUND_TRIP = [
    pytest.param(
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "messageId": "m-identify",
            "traits": {"email": "a@example.com", "plan": "pro"},
            "context": FULL_CONTEXT,
            "integrations": {"All": False, "Mixpanel": True},
            "timestamp": "2026-03-01T12:00:00.000Z",
            "sentAt": "2026-03-01T12:00:05.000Z",
        },
        id="identify",
    ),
    pytest.param(
        {
            "type": "track",
            "userId": 42,
            "event": "Order Completed",
            "properties": {"revenue": 14.99, "currency": "EUR", "products": [{"sku": "A1"}]},
            "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
            "timestamp": "2026-03-01T12:00:00.000+00:00",
        },
        id="track",
    ),
    pytest.param(
        {
            "type": "page",
            "anonymousId": "a1",
            "name": "Pricing",
            "properties": {"url": "https://e.com/pricing", "title": "Pricing"},
            "context": {"page": {"url": "https://e.com/pricing"}, "userAgent": "Mozilla/5.0"},
        },
        id="page",
    ),
    pytest.param({"type": "page", "anonymousId": "a1", "properties": {}}, id="page-without-name"),
    pytest.param(
        {
            "type": "screen",
            "userId": "u1",
            "name": "Welcome",
            "properties": {"step": 1},
            "context": {"active": True},
        },
        id="screen",
    ),
    pytest.param(
        {"type": "group", "userId": "u1", "groupId": 99, "traits": {"name": "Initech", "employees": 420}},
        id="group",
    ),
    pytest.param(
        {"type": "alias", "userId": "u1", "previousId": "a1", "timestamp": "2012-12-02T00:31:29.738Z"},
        id="alias",
    ),
]

SAME = (
    "message_id",
    "source_id",
    "dialect",
    "type",
    "name",
    "user_id",
    "anonymous_id",
    "group_id",
    "group_ids",
    "previous_id",
    "properties",
    "traits",
    "context",
    "timestamp",
    "received_at",
    "integrations",
)


@pytest.mark.parametrize("message", ROUND_TRIP)
def test_decode_encode_decode(message):
    first = decode("batch", {"batch": [message], "sentAt": "2026-03-01T12:00:08Z"})
    encoded = segment.encode(first)
    assert all(isinstance(m, dict) for m in encoded)
    second = decode("batch", enc({"batch": encoded}))
    assert len(second) == len(first) == 1
    for field in SAME:
        assert getattr(second[0], field) == getattr(first[0], field), field
    # Forwarding sends the corrected time as `timestamp` and no sentAt (Segment's historical-import
    # form), so the receiver does not correct it a second time; the client's own clock readings
    # stay in the first event's raw.
    assert second[0].original_timestamp == first[0].timestamp
    assert second[0].sent_at is None


def test_encode_is_json_serializable_and_names_the_fields_segment_uses():
    event = one(
        "track",
        {
            "userId": "u1",
            "anonymousId": "a1",
            "event": "E",
            "messageId": "m1",
            "properties": {"p": 1},
            "context": {"ip": "203.0.113.9", "userAgent": "UA", "device": {"id": "d"}},
            "integrations": {"All": True},
            "timestamp": "2026-03-01T12:00:00Z",
        },
    )
    (out,) = segment.encode([event])
    assert json.loads(json.dumps(out)) == out
    assert out == {
        "type": "track",
        "messageId": "m1",
        "userId": "u1",
        "anonymousId": "a1",
        "event": "E",
        "properties": {"p": 1},
        "context": {"device": {"id": "d"}, "ip": "203.0.113.9", "userAgent": "UA"},
        "integrations": {"All": True},
        "timestamp": "2026-03-01T12:00:00+00:00",
    }


@pytest.mark.parametrize("kind", ["increment", "decrement", "assign_group", "feedback"])
def test_encode_types_segment_has_no_call_for(kind):
    event = Event(
        id="e1",
        message_id="m1",
        source_id="src",
        dialect="openpanel",
        type=kind,
        user_id="u1",
        group_ids=["g1"],
        properties={"value": 2},
        timestamp=RECEIVED,
        received_at=RECEIVED,
        raw="{}",
    )
    (out,) = segment.encode([event])
    assert out["type"] == "track"
    assert out["event"] == kind
    assert out["properties"]["trackgate_type"] == kind
    assert out["properties"]["value"] == 2
    assert out["properties"]["groupIds"] == ["g1"]
    # and it is a valid Segment message
    assert one("batch", {"batch": [out]}).type == "track"


@pytest.mark.parametrize("call", ["page", "screen"])
def test_page_category_survives_decode_and_encode(call):
    event = one(call, {"userId": "u1", "name": "Pricing", "category": "Docs", "properties": {"url": "/p"}})
    (out,) = segment.encode([event])
    assert out.get("category") == "Docs" or out["properties"].get("category") == "Docs"


def test_context_sub_keys_outside_the_canonical_set_survive_encode():
    context = {
        "campaign": {"name": "spring", "source": "google", "id": "cmp-42"},
        "page": {"url": "/a", "hash": "#x"},
    }
    (out,) = segment.encode([one("track", {"userId": "u1", "event": "E", "context": context})])
    assert out["context"]["campaign"] == context["campaign"]
    assert out["context"]["page"] == context["page"]


@pytest.mark.parametrize(
    "context",
    [
        {"ip": "203.0.113.9", "userAgent": "UA", "locale": "en", "timezone": "Europe/Paris", "active": True},
        {"ip": "", "userAgent": "", "page": {"url": "https://x.example/?a=1", "path": "/", "referrer": None}},
        {"campaign": {"source": "s", "medium": "m", "id": "c-1"}, "library": {"name": "a", "version": "1"}},
        {"screen": {"width": 390, "height": 844, "density": 3}, "device": {"type": "mobile"}, "os": {}},
        {"page": {"url": "/a", "tab": 2}, "screen": {"width": 390, "inner": 1}, "app": {"name": "Shop"}},
        {"page": {}, "screen": None, "campaign": None, "extra": {"client": "sent this"}},
        {"active": False, "traits": {"email": "a@example.com"}, "library": {"name": None}},
    ],
)
def test_context_fast_path_is_the_field_by_field_reading(context):
    # a well-typed context is read by one msgspec.convert: the same canonical context as field by field
    msgspec.convert(context, segment._Known)  # the fast path's reading does not fall back
    fast = segment.normalize_context(context, "198.51.100.1")
    slow = segment._context_by_field(context, "198.51.100.1")
    assert msgspec.to_builtins(fast) == msgspec.to_builtins(slow)
    assert fast.extra == slow.extra


@pytest.mark.parametrize(
    "body",
    [
        b'{"batch":[{"type":"track","userId":"u","event":"a\\u0000b"}]}',
        b'{"batch":[{"type":"track","userId":"u","event":"a\\"\\\\u0000"}]}',  # an escaped backslash
        b'{"batch":[{"type":"track","userId":"u","event":"a\\"b"}]}',
        b'{"batch":[{"type":"track","userId":"u","event":"ab"}]}',
    ],
)
def test_a_nul_escape_is_found_with_or_without_other_backslashes(body):
    """``has_nul`` looks for a backslash first: the same answer as looking for the escape."""
    envelope = segment.parse("batch", body)
    assert envelope.has_nul is (b"\\u0000" in body)
    (event,) = segment.decode(META, envelope)
    assert event.name is not None and "\x00" not in event.name


@pytest.mark.parametrize("call", ["track", "batch"])
def test_a_lone_surrogate_escape_is_named_not_called_truncated(call):
    """msgspec reports a lone high surrogate escape as "Input data was truncated": the error names it."""
    lone = rb'{"userId":"u1","event":"E","properties":{"x":"a\ud800b"}}'
    body = lone if call == "track" else b'{"batch":[' + lone[:-1] + b',"type":"track"}]}'
    error = refusal(call, body)
    assert (error.code, error.status) == ("invalid_json", 400)
    assert "surrogate" in error.message and "truncated" not in error.message
    assert "truncated" in refusal(call, lone[:20]).message  # a body cut short still says so
    paired = refusal(call, rb'{"userId":"u1","event":"E","properties":{"x":"\\ud800"}')  # escaped: text, cut
    assert "truncated" in paired.message


@pytest.mark.parametrize(
    ("call", "body", "where"),
    [
        # a context the typed reading refuses (not an object), its number read as JSON after: was a 500
        ("track", b'{"userId":"u1","event":"E","context":1e400}', None),
        ("track", b'{"userId":"u1","event":"E","properties":{"a":-1e999}}', None),
        ("batch", b'{"batch":[{"userId":"u","event":"E"},{"userId":"u","event":"E","context":[1e400]}]}', 1),
    ],
    ids=["context", "properties", "batch-item"],
)
def test_a_number_out_of_range_is_invalid_json_that_says_where(call, body, where):
    error = refusal(call, body)
    assert (error.code, error.status) == ("invalid_json", 400)
    assert "Number out of range" in error.message and "`$." in error.message
    if where is not None:
        assert error.path == f"batch[{where}]" and error.message.startswith(f"batch[{where}]: ")
