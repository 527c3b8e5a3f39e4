"""Commanders Act rules, one table row each: required fields, timestamps, ids, mapping, versions, limits,
the v1 -> v2 migration (against the vendor's own examples) and encode."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from trackgate.adapters import commandersact as ca
from trackgate.adapters import segment
from trackgate.adapters.base import InvalidPayload, PayloadTooLarge
from trackgate.schemas.request import RequestMeta

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "commandersact"
V1_DOC = json.loads((GOLDEN / "docs_v1_event.json").read_text())["body"]
V2_DOC = json.loads((GOLDEN / "docs_v2_event.json").read_text())["body"]
RECEIVED = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
TS = 1639044446636
TS_DATE = datetime(2021, 12, 9, 10, 7, 26, 636000, tzinfo=UTC)


def meta(**overrides) -> RequestMeta:
    fields: dict[str, Any] = dict(
        source_id="src",
        dialect="commandersact",
        call="event",
        received_at=RECEIVED,
        request_id="req-1",
        ip="198.51.100.7",
        user_agent="curl/8",
        query={"tc_s": "29"},
    )
    fields.update(overrides)
    return RequestMeta(**fields)


def item(**fields) -> dict:
    base = {"event_name": "search", "context": {"event_id": "e-1", "event_timestamp": TS}}
    base.update(fields)
    return base


def one(value) -> ca.Event:
    raw = json.dumps(value).encode()
    return ca.decode(meta(), ca.parse("event", raw))[0]


def refusal(value) -> InvalidPayload:
    raw = json.dumps(value).encode()
    decoded = ca.decode_partial(meta(), ca.parse("event", raw))
    assert decoded.events == []
    (refused,) = decoded.refused
    return InvalidPayload(refused.code, refused.reason)


# --- required fields and their types ---------------------------------------------------------------

REFUSED = [
    ("no event_name", {"context": {"event_id": "e", "event_timestamp": TS}}, "missing_event_name"),
    ("empty event_name", item(event_name=""), "missing_event_name"),
    ("event_name an object", item(event_name={"a": 1}), "invalid_field_type"),
    ("no context", {"event_name": "x", "event_timestamp": TS}, "missing_event_id"),
    ("context a string", item(context="x"), "invalid_field_type"),
    ("no event_id", item(context={"event_timestamp": TS}), "missing_event_id"),
    ("event_id a list", item(context={"event_id": [1], "event_timestamp": TS}), "invalid_field_type"),
    ("event_id too long", item(context={"event_id": "x" * 256, "event_timestamp": TS}), "event_id_too_long"),
    ("no timestamp", item(context={"event_id": "e"}), "missing_event_timestamp"),
    ("timestamp text", item(context={"event_id": "e", "event_timestamp": "yesterday"}), "invalid_timestamp"),
    (
        "timestamp ISO",
        item(context={"event_id": "e", "event_timestamp": "2021-12-09T10:07:26Z"}),
        "invalid_timestamp",
    ),
    ("timestamp float", item(context={"event_id": "e", "event_timestamp": 1.5}), "invalid_timestamp"),
    ("timestamp negative", item(context={"event_id": "e", "event_timestamp": -1}), "invalid_timestamp"),
    ("timestamp bool", item(context={"event_id": "e", "event_timestamp": True}), "invalid_timestamp"),
    (
        "timestamp beyond 9999",
        item(context={"event_id": "e", "event_timestamp": 10**15}),
        "invalid_timestamp",
    ),
    (
        "timestamp padded",
        item(context={"event_id": "e", "event_timestamp": " 1639044446636"}),
        "invalid_timestamp",
    ),
    ("user a list", item(user=["u"]), "invalid_field_type"),
    ("user.id an object", item(user={"id": {"x": 1}}), "invalid_field_type"),
    (
        "page a string",
        item(context={"event_id": "e", "event_timestamp": TS, "page": "/x"}),
        "invalid_field_type",
    ),
    (
        "page.url a number",
        item(context={"event_id": "e", "event_timestamp": TS, "page": {"url": 1}}),
        "invalid_field_type",
    ),
    (
        "device.ip a number",
        item(context={"event_id": "e", "event_timestamp": TS, "device": {"ip": 1}}),
        "invalid_field_type",
    ),
    ("not an object", ["search"], "invalid_event"),
    ("a string", "search", "invalid_event"),
    ("v1 without event_id", {"event_name": "x", "event_timestamp": TS, "properties": {}}, "missing_event_id"),
    (
        "v1 properties a list",
        {"event_name": "x", "event_id": "e", "event_timestamp": TS, "properties": []},
        "invalid_field_type",
    ),
    (
        "v1 property named context",
        {"event_name": "x", "event_id": "e", "event_timestamp": TS, "properties": {"context": 1}},
        "unconvertible_property",
    ),
]


@pytest.mark.parametrize(("case", "value", "code"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case, value, code):
    assert refusal(value).code == code


def test_a_refusal_names_the_field_in_its_own_version_and_not_the_value():
    v2 = refusal(item(context={"event_id": "e", "event_timestamp": "secret-value"}))
    assert v2.message.startswith("context.event_timestamp ")
    assert "secret-value" not in v2.message
    v1 = refusal({"event_name": "x", "event_timestamp": TS, "properties": {}})
    assert v1.message == "event_id is required"
    v1_user = refusal(
        {"event_name": "x", "event_id": "e", "event_timestamp": TS, "properties": {"user": {"id": [1]}}}
    )
    assert v1_user.message == "properties.user.id must be a string, got an array"
    v1_url = refusal({"event_name": "x", "event_id": "e", "event_timestamp": TS, "page": {"location": 3}})
    assert v1_url.message == "page.location must be a string"


# --- accepted values --------------------------------------------------------------------------------

TIMESTAMPS = [
    ("integer", {"event_timestamp": TS}, None),
    ("numeric string (the docs' examples)", {"event_timestamp": str(TS)}, None),
    ("at the root (the docs' batch example)", {}, {"event_timestamp": str(TS)}),
    ("zero", {"event_timestamp": 0}, None),
]


@pytest.mark.parametrize(("case", "in_context", "at_root"), TIMESTAMPS, ids=[t[0] for t in TIMESTAMPS])
def test_timestamps_in_milliseconds(case, in_context, at_root):
    value = {"event_name": "x", "context": {"event_id": "e", **in_context}, **(at_root or {})}
    event = one(value)
    expected = datetime(1970, 1, 1, tzinfo=UTC) if case == "zero" else TS_DATE
    assert event.timestamp == event.original_timestamp == expected
    assert event.received_at == RECEIVED
    assert event.sent_at is None


def test_the_context_timestamp_wins_over_the_root_one():
    event = one(
        {"event_name": "x", "event_timestamp": 0, "context": {"event_id": "e", "event_timestamp": TS}}
    )
    assert event.timestamp == TS_DATE
    assert event.properties == {}  # a root event_timestamp is not event data


def test_ids_as_strings():
    event = one(
        item(
            event_name=42,
            user={"id": 12345, "consistent_anonymous_id": 67892},
            context={"event_id": 7, "event_timestamp": TS},
        )
    )
    assert (event.name, event.user_id, event.anonymous_id, event.message_id) == ("42", "12345", "67892", "7")


def test_user_mapping_and_traits():
    event = one(
        item(
            user={
                "id": "u",
                "consistent_anonymous_id": "a",
                "email": "e@x",
                "firstname": "Ada",
                "lastname": "L",
                "phone": "1",
                "email_sha256": "h",
                "consent_categories": "1",
            }
        )
    )
    assert (event.user_id, event.anonymous_id) == ("u", "a")
    assert event.traits == {
        "email": "e@x",
        "firstName": "Ada",
        "lastName": "L",
        "phone": "1",
        "email_sha256": "h",
        "consent_categories": "1",
    }


def test_no_user_at_all_is_accepted():
    event = one(item())
    assert (event.user_id, event.anonymous_id, event.traits) == (None, None, {})


def test_page_view_is_a_page_event_named_after_page_name():
    event = one(item(event_name="page_view", page_type="product_list", page_name="Best sellers"))
    assert (event.type, event.name) == ("page", "Best sellers")
    assert event.properties == {"page_type": "product_list", "page_name": "Best sellers"}
    assert one(item(event_name="page_view")).name is None


def test_purchase_keeps_money_in_major_units():
    event = one(
        item(
            event_name="purchase",
            id="O_1",
            revenue=16.0,
            value=22.53,
            currency="EUR",
            items=[{"id": "SKU", "quantity": 1}],
        )
    )
    assert (event.type, event.name) == ("track", "purchase")
    assert event.properties == {
        "id": "O_1",
        "revenue": 16.0,
        "value": 22.53,
        "currency": "EUR",
        "items": [{"id": "SKU", "quantity": 1}],
    }


def test_context_mapping():
    ctx = {
        "event_id": "e",
        "event_timestamp": TS,
        "page": {
            "title": "T",
            "url": "https://s/x",
            "referrer": "https://r",
            "path": "/x",
            "lang": "en",
            "viewport": {"width": 1},
        },
        "device": {
            "user_agent": "UA",
            "ip": "102.3.4.56",
            "lang": "fr",
            "timezone": "Europe/Paris",
            "cookie": "c=1",
        },
        "app": {"name": "shop", "version": "1.2", "build": "9"},
        "campaign": "x",
    }
    c = one(item(context=ctx)).context
    assert (c.ip, c.user_agent, c.locale, c.timezone) == ("102.3.4.56", "UA", "fr", "Europe/Paris")
    assert msgspec.to_builtins(c.page) == {
        "url": "https://s/x",
        "path": "/x",
        "referrer": "https://r",
        "title": "T",
    }
    assert c.extra == {
        "page": {"lang": "en", "viewport": {"width": 1}},
        "device": {"cookie": "c=1"},
        "app": {"name": "shop", "version": "1.2", "build": "9"},
        "campaign": "x",
        "tc_s": "29",
    }


def test_the_request_ip_and_user_agent_when_the_client_gives_none():
    c = one(item()).context
    assert (c.ip, c.user_agent, c.locale) == ("198.51.100.7", "curl/8", None)
    assert c.extra == {"tc_s": "29"}
    page_lang = one(item(context={"event_id": "e", "event_timestamp": TS, "page": {"lang": "en"}})).context
    assert page_lang.locale == "en" and page_lang.page is None and page_lang.extra["page"] == {"lang": "en"}


def test_raw_is_the_item_verbatim_and_nul_is_scrubbed_in_canonical_fields_only():
    body = b'{"event_name":"a\\u0000b","context":{"event_id":"e","event_timestamp":1}}'
    (event,) = ca.decode(meta(), ca.parse("event", body))
    assert event.name == "a\ufffdb"
    assert event.raw == body.decode()


# --- versions ---------------------------------------------------------------------------------------

VERSIONS = [
    ("v2 doc", V2_DOC, "v2"),
    ("v1 doc", V1_DOC, "v1"),
    ("v1 properties only", {"event_name": "x", "properties": {}}, "v1"),
    ("v1 event_id at root", {"event_name": "x", "event_id": "e"}, "v1"),
    ("v1 device at root", {"event_name": "x", "device": {}}, "v1"),
    ("v2 with a root timestamp", {"event_name": "x", "event_timestamp": 1, "context": {}}, "v2"),
    ("v2 with a property named properties", {"event_name": "x", "properties": {}, "context": {}}, "v2"),
    ("bare", {"event_name": "x"}, "v2"),
]


@pytest.mark.parametrize(("case", "value", "version"), VERSIONS, ids=[v[0] for v in VERSIONS])
def test_version_is_recognized_from_the_shape(case, value, version):
    assert ca.version_of(value) == version


def test_v1_doc_and_v2_doc_make_the_same_canonical_event_where_they_carry_the_same_data():
    v1, v2 = one(V1_DOC), one(V2_DOC)
    assert (v1.dialect_version, v2.dialect_version) == ("v1", "v2")
    for field in ("message_id", "type", "name", "user_id", "properties", "timestamp"):
        assert getattr(v1, field) == getattr(v2, field), field
    assert (v1.context.ip, v1.context.user_agent) == (v2.context.ip, v2.context.user_agent)
    assert v1.context.page is not None and v2.context.page is not None
    assert (v1.context.page.url, v1.context.page.title) == (v2.context.page.url, v2.context.page.title)
    assert v1.traits["email"] == v2.traits["email"]


# --- v1 -> v2: the vendor's example must become the vendor's v2 example --------------------------


def test_v1_doc_example_converts_to_the_v2_doc_example():
    """The v2 example (http-tracking-api.md) is the v1 example (http-tracking-api1_0.md) moved field by
    field, plus data the v1 example never carried, and with two values written as strings."""
    expected = copy.deepcopy(V2_DOC)
    # what the v2 example adds that is not in the v1 example at all
    del expected["user"]["consistent_anonymous_id"]
    for key in ("lang", "referrer", "viewport"):
        del expected["context"]["page"][key]
    for key in ("lang", "timezone"):
        del expected["context"]["device"][key]
    # values the v2 example writes as strings where v1's are numbers: the migration keeps them as sent
    assert expected["user"]["consent_categories"] == ["1", "3"]
    expected["user"]["consent_categories"] = [1, 3]
    assert expected["context"]["event_timestamp"] == str(TS)
    expected["context"]["event_timestamp"] = TS

    converted = ca.v1_to_v2(V1_DOC)
    assert converted == expected
    assert list(converted) == list(expected) == ["event_name", "search_term", "user", "context"]
    assert list(converted["context"]) == ["event_id", "page", "device", "event_timestamp"]


def test_the_converted_event_decodes_as_v2_to_the_same_event():
    v1 = one(V1_DOC)
    v2 = one(ca.v1_to_v2(V1_DOC))
    assert v2.dialect_version == "v2"
    a, b = msgspec.to_builtins(v1), msgspec.to_builtins(v2)
    for key in ("raw", "dialect_version"):
        a.pop(key), b.pop(key)
    assert a == b


def test_v1_to_v2_keeps_every_field():
    v1 = {
        "event_name": "purchase",
        "event_id": "e",
        "event_timestamp": "1",
        "app": {"name": "a"},
        "page": {"location": "https://x", "url_hash": "#h"},
        "extra_root": 1,
        "properties": {"revenue": 1.5, "items": [], "user": {"id": "u"}},
    }
    assert ca.v1_to_v2(v1) == {
        "event_name": "purchase",
        "revenue": 1.5,
        "items": [],
        "extra_root": 1,
        "user": {"id": "u"},
        "context": {
            "event_id": "e",
            "page": {"url": "https://x", "url_hash": "#h"},
            "app": {"name": "a"},
            "event_timestamp": "1",
        },
    }
    for clash in (
        {"properties": {"user": {"id": "a"}}, "user": {"id": "b"}},
        {"properties": {"x": 1}, "x": 2},
        {"properties": {}, "context": "c"},
    ):
        with pytest.raises(InvalidPayload) as info:
            ca.v1_to_v2(clash)
        assert info.value.code == "unconvertible_property"
    # both location and url: url stays, location is kept beside it
    assert ca.v1_to_v2({"page": {"location": "a", "url": "b"}})["context"]["page"] == {
        "location": "a",
        "url": "b",
    }


def test_convert_documents():
    batch = {"batch": [V1_DOC, V1_DOC]}
    assert ca.convert(batch, "v1", "v2") == {"batch": [ca.v1_to_v2(V1_DOC)] * 2}
    with pytest.raises(InvalidPayload, match="is v2, not v1"):
        ca.convert(V2_DOC, "v1", "v2")
    with pytest.raises(ValueError, match="cannot convert"):
        ca.convert(V2_DOC, "v2", "v1")
    assert ca.convert(V2_DOC, "v2", "v2") == V2_DOC


# --- encode: v2 out -----------------------------------------------------------------------------


def test_encode_emits_v2_from_what_the_client_sent():
    v1, v2 = one(V1_DOC), one(V2_DOC)
    assert ca.encode([v1, v2]) == [ca.v1_to_v2(V1_DOC), V2_DOC]


def test_encode_an_event_of_another_dialect_from_its_canonical_fields():
    body = json.dumps(
        {
            "userId": "u1",
            "anonymousId": "a1",
            "event": "Order Completed",
            "messageId": "m1",
            "properties": {"revenue": 9.5, "currency": "EUR"},
            "traits": {"firstName": "Ada"},
            "timestamp": "2021-12-09T10:07:26.636Z",
            "context": {"ip": "1.2.3.4", "userAgent": "UA", "locale": "fr", "page": {"url": "https://x"}},
        }
    ).encode()
    m = RequestMeta(source_id="s", dialect="segment", call="track", received_at=RECEIVED, request_id="r")
    (event,) = segment.decode(m, segment.parse("track", body))
    (out,) = ca.encode([event])
    assert out == {
        "event_name": "Order Completed",
        "revenue": 9.5,
        "currency": "EUR",
        "user": {"id": "u1", "consistent_anonymous_id": "a1", "firstname": "Ada"},
        "context": {
            "event_id": "m1",
            "page": {"url": "https://x"},
            "device": {"user_agent": "UA", "ip": "1.2.3.4", "lang": "fr"},
            "event_timestamp": TS,
        },
    }
    # and it is an event this dialect accepts, with the same meaning
    back = one(out)
    assert (back.name, back.user_id, back.anonymous_id, back.message_id, back.timestamp) == (
        "Order Completed",
        "u1",
        "a1",
        "m1",
        TS_DATE,
    )
    assert back.properties == event.properties


def test_encode_a_page_event():
    event = one(item(event_name="page_view", page_name="Home"))
    event.raw = ""
    assert ca.encode([event])[0]["event_name"] == "page_view"
    assert ca.encode([event])[0]["page_name"] == "Home"


# --- parse: limits, JSON, batch shape ----------------------------------------------------------


def test_limits():
    small = json.dumps(item()).encode()
    pad = b" " * (ca.MAX_EVENT_BYTES - len(small))
    assert len(ca.parse("event", small + pad).items) == 1  # exactly 32 KB
    with pytest.raises(PayloadTooLarge) as info:
        ca.parse("event", small + pad + b" ")
    assert info.value.status == 413 and info.value.code == "request_too_large"
    with pytest.raises(PayloadTooLarge):
        ca.parse("batch", b'{"batch":[' + b" " * ca.MAX_BATCH_BYTES + b"]}")


def test_an_event_over_32_kb_in_a_batch_is_refused_and_the_others_accepted():
    big = item(context={"event_id": "big", "event_timestamp": TS}, pad="x" * ca.MAX_EVENT_BYTES)
    body = json.dumps(
        {"batch": [item(), big, item(context={"event_id": "e-3", "event_timestamp": TS})]}
    ).encode()
    decoded = ca.decode_partial(meta(call="batch"), ca.parse("batch", body))
    assert [e.message_id for e in decoded.events] == ["e-1", "e-3"]
    (refused,) = decoded.refused
    assert (refused.index, refused.code, refused.version) == (1, "event_too_large", "")
    assert json.loads(refused.raw)["context"]["event_id"] == "big"
    assert (refused.request_id, refused.received_at, refused.dialect) == ("req-1", RECEIVED, "commandersact")


@pytest.mark.parametrize("body", [b"{", b"", b"nope", b'{"batch": [1,]}', b"\xff\xfe"])
@pytest.mark.parametrize("call", ["event", "batch"])
def test_not_json_is_refused_whole(call, body):
    with pytest.raises(InvalidPayload) as info:
        ca.parse(call, body)
    assert info.value.code == "invalid_json" and info.value.status == 400


def test_deep_json_is_refused_whole():
    deep = b'{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with pytest.raises(InvalidPayload) as info:
        ca.parse("event", deep)
    assert info.value.code == "invalid_json"


@pytest.mark.parametrize("body", [b'{"event_name":"x"}', b'{"batch":"x"}', b"[]", b"3"])
def test_a_batch_body_that_is_json_but_not_a_batch_is_one_refused_item(body):
    decoded = ca.decode_partial(meta(call="batch"), ca.parse("batch", body))
    assert decoded.events == []
    (refused,) = decoded.refused
    assert (refused.index, refused.code, refused.raw) == (0, "invalid_batch", body.decode())


def test_an_empty_batch_is_nothing():
    decoded = ca.decode_partial(meta(call="batch"), ca.parse("batch", b'{"batch":[]}'))
    assert decoded.events == [] and decoded.refused == []


def test_decode_is_all_or_nothing_and_decode_item_replays_one():
    body = json.dumps({"batch": [item(), {"event_name": "x"}]}).encode()
    with pytest.raises(InvalidPayload) as info:
        ca.decode(meta(call="batch"), ca.parse("batch", body))
    assert (info.value.code, info.value.path) == ("missing_event_id", "batch[1]")
    event = ca.decode_item(meta(), json.dumps(V1_DOC).encode())
    assert (event.message_id, event.dialect_version) == ("202110130000000000", "v1")


def test_credentials_are_the_bearer_token():
    assert ca.credentials({"authorization": "Bearer abc"}, None) == "abc"
    assert ca.credentials({"authorization": "bearer  abc "}, None) == "abc"
    assert ca.credentials({"authorization": "Basic abc"}, None) is None
    assert ca.credentials({}, None) is None
