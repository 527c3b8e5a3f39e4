"""Every rule of the Spectacle dialect, one table each. Pure: the adapter and bytes, nothing else.

Sources: the REST API page (seed ``spectacle-rest-api.txt``), spectacle-js/track (revenue in the
smallest unit, negative = refund) and the GTM template's pixel bodies (vendors.md §4).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from trackgate.adapters import spectacle
from trackgate.adapters.base import AdapterError, InvalidPayload, PayloadTooLarge
from trackgate.schemas.event import Event
from trackgate.schemas.request import RequestMeta

RECEIVED = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
META = RequestMeta(
    source_id="src",
    dialect="spectacle",
    call="track",
    received_at=RECEIVED,
    request_id="req",
    ip="192.0.2.1",
    user_agent="UA/1",
)
WS = {"workspaceId": "ws_1"}


def enc(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def one(call: str, body: Any) -> Event:
    data = body if isinstance(body, bytes) else enc(body)
    (event,) = spectacle.decode(META, spectacle.parse(call, data))
    return event


def refusal(call: str, body: Any) -> AdapterError:
    with pytest.raises(AdapterError) as info:
        one(call, body)
    return info.value


def track(**properties) -> dict:
    return {**WS, "userId": "u1", "event": "Charged", "properties": properties}


# --- calls, versions, required fields ------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "kind", "version"),
    [
        ("identify", "identify", "rest"),
        ("track", "track", "rest"),
        ("page", "page", "rest"),
        ("group", "group", "rest"),
        ("i", "identify", "pixel"),
        ("t", "track", "pixel"),
        ("p", "page", "pixel"),
        ("g", "group", "pixel"),
    ],
)
def test_the_path_names_the_call_and_the_format(call, kind, version):
    body = {**WS, "userId": "u1", "anonymousId": "a1", "event": "E", "groupId": "g1"}
    event = one(call, body)
    assert (event.type, event.dialect_version, event.dialect) == (kind, version, "spectacle")


# (call, body without the workspace id, refused field or None when accepted)
REQUIRED = [
    # REST, as the docs list them
    ("identify", {"userId": "u", "anonymousId": "a"}, None),
    ("identify", {"anonymousId": "a"}, "userId"),
    ("identify", {"userId": "u"}, "anonymousId"),
    ("track", {"userId": "u", "event": "E"}, None),
    ("track", {"anonymousId": "a", "event": "E"}, "userId"),
    ("track", {"userId": "u"}, "event"),
    ("track", {"userId": "u", "event": ""}, "event"),
    ("page", {"userId": "u"}, None),
    ("page", {"anonymousId": "a"}, None),
    ("page", {}, "userId"),
    ("group", {"userId": "u", "groupId": "g"}, None),
    ("group", {"anonymousId": "a", "groupId": "g"}, None),
    ("group", {"userId": "u"}, "groupId"),
    ("group", {"groupId": "g"}, "userId"),
    # pixel: userId is null until identify, so the anonymous id is enough everywhere
    ("i", {"userId": None, "anonymousId": "a"}, None),
    ("i", {"userId": None, "anonymousId": None}, "userId"),
    ("t", {"userId": None, "anonymousId": "a", "event": "E"}, None),
    ("t", {"anonymousId": "a"}, "event"),
    ("p", {"anonymousId": "a"}, None),
    ("p", {}, "userId"),
    ("g", {"anonymousId": "a", "groupId": "g"}, None),
    ("g", {"anonymousId": "a"}, "groupId"),
]


@pytest.mark.parametrize(("call", "body", "refused"), REQUIRED)
def test_required_fields(call, body, refused):
    body = {**body, ("writeKey" if len(call) == 1 else "workspaceId"): "ws_1"}
    if refused is None:
        assert one(call, body).type == spectacle.CALLS[call]
    else:
        exc = refusal(call, body)
        assert (exc.status, exc.code, exc.path) == (400, "missing_field", refused)
        assert refused in exc.message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("userId", 42, "42"), ("anonymousId", 7.5, "7.5"), ("userId", "", None)],
)
def test_ids_are_strings_numbers_converted(field, value, expected):
    event = one("p", {"writeKey": "ws", "anonymousId": "a", field: value})
    assert getattr(event, "user_id" if field == "userId" else "anonymous_id") == expected


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"userId": True, "event": "E"}, "userId"),
        ({"userId": {"id": 1}, "event": "E"}, "userId"),
        ({"userId": "u", "event": ["E"]}, "event"),
        ({"userId": "u", "event": "E", "properties": "x"}, "properties"),
        ({"userId": "u", "event": "E", "traits": 5}, "traits"),
        ({"userId": "u", "event": "E", "context": []}, "context"),
        ({"userId": "u", "event": "E", "ip": 5}, "ip"),
        ({"userId": "u", "event": "E", "timestamp": "not a date"}, "timestamp"),
        ({"userId": "u", "event": "E", "timestamp": 1700000000}, "timestamp"),
        ({"userId": "u", "event": "E", "messageId": "m" * 201}, "messageId"),
    ],
)
def test_wrong_types_name_the_field(body, path):
    exc = refusal("track", {**WS, **body})
    assert exc.status == 400 and exc.path == path


def test_timestamp_optional_iso8601_default_received():
    assert one("track", track()).timestamp == RECEIVED
    event = one("track", {**track(), "timestamp": "2024-12-09T00:30:08.276Z"})
    assert event.timestamp == event.original_timestamp == datetime(2024, 12, 9, 0, 30, 8, 276000, tzinfo=UTC)
    naive = one("track", {**track(), "timestamp": "2024-12-09T00:30:08"})
    assert naive.timestamp.tzinfo is not None


def test_pixel_type_must_match_the_path():
    assert one("t", {"type": "track", "writeKey": "ws", "anonymousId": "a", "event": "E"}).type == "track"
    exc = refusal("t", {"type": "page", "writeKey": "ws", "anonymousId": "a", "event": "E"})
    assert (exc.code, exc.path) == ("invalid_type", "type")


# --- parse: bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"{", b"nope", b'{"a":1}x', b"\xff\xfe"])
def test_bad_json_is_refused(data):
    exc = refusal("t", data)
    assert exc.code == "invalid_json"


@pytest.mark.parametrize("data", [b"[]", b"5", b"null", b'"just text"'])
def test_json_that_is_not_an_object_is_refused(data):
    assert refusal("t", data).code == "invalid_body"


def test_a_body_stringified_twice_is_read():
    inner = enc({"type": "track", "writeKey": "ws_1", "anonymousId": "a", "event": "E"})
    envelope = spectacle.parse("t", enc(inner.decode()))
    assert spectacle.credentials({}, envelope) == "ws_1"
    (event,) = spectacle.decode(META, envelope)
    assert event.name == "E" and event.raw == inner.decode()


def test_size_limit():
    body = {**track(), "pad": ""}
    body["pad"] = "x" * (spectacle.MAX_EVENT_BYTES - len(enc(body)))
    assert len(enc(body)) == spectacle.MAX_EVENT_BYTES
    assert one("track", body).name == "Charged"
    body["pad"] += "x"
    with pytest.raises(PayloadTooLarge) as info:
        one("track", body)
    assert info.value.status == 413


def test_unknown_call():
    with pytest.raises(InvalidPayload):
        spectacle.parse("screen", b"{}")


def test_nul_is_scrubbed_and_raw_kept():
    data = enc({**WS, "userId": "u\u0000", "event": "E"})
    event = one("track", data)
    assert event.user_id == "u\ufffd"
    assert event.raw == data.decode()


# --- credentials -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "body", "key"),
    [
        ("track", {"workspaceId": "ws_a"}, "ws_a"),
        ("track", {"writeKey": "ws_b"}, "ws_b"),  # a pixel body sent to REST: the meaning is clear
        ("track", {"workspaceId": "ws_a", "writeKey": "ws_b"}, "ws_a"),
        ("t", {"writeKey": "ws_b", "workspaceId": "ws_a"}, "ws_b"),
        ("t", {"workspaceId": "ws_a"}, "ws_a"),
        ("t", {"writeKey": ""}, None),
        ("t", {"writeKey": 5}, None),
        ("track", {}, None),
    ],
)
def test_credentials_come_from_the_body(call, body, key):
    assert spectacle.credentials({}, None) is None
    envelope = spectacle.parse(call, enc(body))
    assert spectacle.credentials({"authorization": "Basic eDo="}, envelope) == key
    assert envelope.key_field == ("writeKey" if len(call) == 1 else "workspaceId")


# --- special traits -------------------------------------------------------------------------------


def test_company_traits_make_company_and_group():
    event = one(
        "identify",
        {**WS, "userId": "u", "anonymousId": "a", "traits": {"companyId": 42, "companyName": "Acme", "x": 1}},
    )
    assert event.group_id == "42"
    assert event.traits == {
        "companyId": 42,
        "companyName": "Acme",
        "x": 1,
        "company": {"id": "42", "name": "Acme"},
    }


@pytest.mark.parametrize(
    ("traits", "root", "company", "group_id"),
    [
        ({"companyName": "Acme"}, {}, {"name": "Acme"}, None),
        ({"companyId": "c1"}, {}, {"id": "c1"}, "c1"),
        ({"companyId": "c1", "company": {"plan": "pro", "id": "old"}}, {}, {"plan": "pro", "id": "c1"}, "c1"),
        ({}, {"companyId": "c2", "companyName": "Root"}, {"id": "c2", "name": "Root"}, "c2"),
        ({"companyId": "c1"}, {"companyId": "c2"}, {"id": "c1"}, "c1"),  # the traits object wins
        ({}, {}, None, None),
    ],
)
def test_company_mapping(traits, root, company, group_id):
    event = one("identify", {**WS, "userId": "u", "anonymousId": "a", "traits": traits, **root})
    assert event.traits.get("company") == company
    assert event.group_id == group_id


def test_root_special_traits_join_traits_on_track_and_page():
    # the docs' own curl sends email at the root of a track
    event = one("track", {**WS, "userId": "u", "event": "E", "email": "a@b.c", "firstName": "Ada"})
    assert event.traits == {"email": "a@b.c", "firstName": "Ada"}
    page = one("page", {**WS, "userId": "u", "lastName": "L", "traits": {"lastName": "T"}})
    assert page.traits == {"lastName": "T"}


def test_group_traits_are_the_groups_own():
    event = one("group", {**WS, "userId": "u", "groupId": "g", "traits": {"companyId": "x", "name": "G"}})
    assert event.group_id == "g"
    assert event.traits == {"companyId": "x", "name": "G"}


def test_company_name_must_be_text():
    exc = refusal("identify", {**WS, "userId": "u", "anonymousId": "a", "traits": {"companyName": 5}})
    assert exc.path == "traits.companyName"


# --- money ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("revenue", "currency", "major"),
    [
        (1599, None, 15.99),
        ("1599", None, 15.99),
        (" 1599 ", "usd", 15.99),
        (1500, "USD", 15),
        (1, "EUR", 0.01),
        (0, "EUR", 0),
        (1599.0, "EUR", 15.99),
        ("1599.00", "EUR", 15.99),
        (1599, "JPY", 1599),
        (1599, "KRW", 1599),
        (15990, "KWD", 15.99),
        (1, "BHD", 0.001),
        (12345, "CLF", 1.2345),
        (1599, "XYZ", 15.99),  # an unlisted code: two decimals
        (999999999999999, "USD", 9999999999999.99),
        (10, "USD", 0.1),
        (30, "USD", 0.3),
    ],
)
def test_revenue_minor_to_major(revenue, currency, major):
    props = {"revenue": revenue} if currency is None else {"revenue": revenue, "currency": currency}
    event = one("track", track(**props))
    assert event.properties["revenue"] == major
    assert type(event.properties["revenue"]) is type(major)
    assert repr(event.properties["revenue"]) == repr(major)  # no float drift (0.1+0.2 style)
    assert "refund" not in event.properties
    if currency:
        assert event.properties["currency"] == currency.upper()


@pytest.mark.parametrize(("revenue", "major"), [(-1599, -15.99), ("-2599", -25.99), ("-1", -0.01)])
def test_negative_revenue_is_a_refund(revenue, major):
    event = one("track", track(revenue=revenue, currency="EUR"))
    assert event.properties["revenue"] == major
    assert event.properties["refund"] is True
    assert json.loads(event.raw)["properties"]["revenue"] == revenue  # the original stays in raw


@pytest.mark.parametrize(
    "revenue", [15.99, "15.99", "lots", "", True, [], {"amount": 1}, "NaN", "Infinity", 10**15, "-1e20"]
)
def test_revenue_must_be_whole_minor_units(revenue):
    exc = refusal("track", track(revenue=revenue))
    assert (exc.code, exc.path) == ("invalid_amount", "properties.revenue")


def test_null_revenue_is_no_revenue():
    assert one("track", track(revenue=None)).properties == {"revenue": None}


@pytest.mark.parametrize("currency", ["dollars", "US", "U$D", 840, "", True])
def test_currency_must_be_a_code(currency):
    exc = refusal("track", track(revenue=100, currency=currency))
    assert (exc.code, exc.path) == ("invalid_currency", "properties.currency")


@pytest.mark.parametrize(
    ("field", "value", "currency", "major"),
    [
        ("mrr", 4999, "USD", 49.99),
        ("arr", "59988", None, 599.88),
        ("mrr", 0, "EUR", 0),
        ("mrr", 5000, "JPY", 5000),
    ],
)
def test_mrr_arr_are_minor_units_like_revenue(field, value, currency, major):
    props = {field: value, **({"currency": currency} if currency else {})}
    assert one("track", track(**props)).properties[field] == major


@pytest.mark.parametrize("field", ["mrr", "arr"])
@pytest.mark.parametrize("value", [-1, "-100", 12.5, "x"])
def test_mrr_arr_refusals(field, value):
    exc = refusal("track", track(**{field: value}))
    assert (exc.code, exc.path) == ("invalid_amount", f"properties.{field}")


def test_plan_and_other_properties_are_kept():
    event = one("track", track(plan="pro", billingCycle="annual"))
    assert event.properties == {"plan": "pro", "billingCycle": "annual"}


def test_money_rules_are_for_track_only():
    event = one("page", {**WS, "userId": "u", "properties": {"revenue": "x", "currency": "nope"}})
    assert event.properties == {"revenue": "x", "currency": "nope"}


# --- message ids ----------------------------------------------------------------------------------


def test_message_id_from_request_transaction_or_client():
    assert one("track", track()).message_id == "req-0"
    paid = one("track", track(revenue=100, transactionId="T-1"))
    assert paid.message_id == f"txn:{paid.name}:T-1"
    assert one("track", track(revenue=100, transactionId=77)).message_id == f"txn:{paid.name}:77"
    refund = one("track", {**track(revenue=-100, transactionId="T-1"), "event": "Order Refunded"})
    assert refund.message_id == "txn:Order Refunded:T-1" != paid.message_id
    assert one("track", track(transactionId="T-1")).message_id == "req-0"  # no revenue: not a transaction
    assert one("track", {**track(revenue=1, transactionId="T"), "messageId": "m-1"}).message_id == "m-1"


# --- context --------------------------------------------------------------------------------------


def test_pixel_context():
    event = one(
        "t",
        {
            "type": "track",
            "writeKey": "ws",
            "anonymousId": "a",
            "event": "E",
            "ip": "203.0.113.9",
            "lens": True,
            "context": {
                "timezone": "Europe/Paris",
                "campaign": {"source": "s", "medium": "m", "name": "n", "term": "t", "content": "c"},
                "userAgent": "Browser/2",
                "page": {"path": "/p", "referrer": "r", "search": "?q", "title": "T", "url": "https://x/p?q"},
                "locale": "fr-FR",
            },
        },
    )
    ctx = event.context
    assert (ctx.ip, ctx.user_agent, ctx.timezone, ctx.locale) == (
        "203.0.113.9",
        "Browser/2",
        "Europe/Paris",
        "fr-FR",
    )
    assert ctx.campaign is not None and ctx.page is not None
    assert ctx.campaign.name == "n" and ctx.campaign.content == "c"
    assert ctx.page.url == "https://x/p?q" and ctx.page.search == "?q"
    assert ctx.extra == {"lens": True}


def test_context_falls_back_to_the_request():
    event = one("t", {"writeKey": "ws", "anonymousId": "a", "event": "E", "context": {"userAgent": ""}})
    assert (event.context.ip, event.context.user_agent) == ("192.0.2.1", "UA/1")
    event = one("t", {"writeKey": "ws", "anonymousId": "a", "event": "E", "context": {"ip": "198.51.100.1"}})
    assert event.context.ip == "198.51.100.1"


# --- encode ---------------------------------------------------------------------------------------


def test_encode_rest_and_pixel():
    events = [
        one("track", track(revenue=-1599, currency="EUR", mrr=4999)),
        one("t", {"writeKey": "ws", "anonymousId": "a", "event": "E"}),
        one("identify", {**WS, "userId": "u", "anonymousId": "a", "traits": {"companyId": "c"}}),
        one("p", {"writeKey": "ws", "anonymousId": "a"}),
        one("g", {"writeKey": "ws", "anonymousId": "a", "groupId": "g"}),
    ]
    out = spectacle.encode(events, workspace_id="ws_dest")
    assert [r["path"] for r in out] == [
        "/tracking/track",
        "/t",
        "/tracking/identify",
        "/tracking/page",
        "/tracking/group",
    ]
    assert out[0]["body"]["properties"] == {"revenue": -1599, "currency": "EUR", "mrr": 4999}
    assert out[0]["body"]["workspaceId"] == "ws_dest" and "writeKey" not in out[0]["body"]
    assert out[1]["body"]["writeKey"] == "ws_dest" and out[1]["body"]["type"] == "track"
    assert out[1]["body"]["ip"] == "192.0.2.1" and "ip" not in out[1]["body"].get("context", {})
    assert out[2]["body"]["traits"]["companyId"] == "c"
    assert "workspaceId" not in spectacle.encode(events[:1])[0]["body"]


def test_encode_types_spectacle_lacks():
    base: dict[str, Any] = {
        "id": "",
        "source_id": "s",
        "dialect": "segment",
        "timestamp": RECEIVED,
        "received_at": RECEIVED,
        "raw": "{}",
    }
    screen = Event(**base, message_id="m1", type="screen", name="Home", user_id="u")
    alias = Event(**base, message_id="m2", type="alias", user_id="u", previous_id="old")
    identify = Event(**base, message_id="m3", type="identify", user_id="u")
    s, a, i = spectacle.encode([screen, alias, identify])
    assert s["path"] == "/tracking/page" and s["body"]["name"] == "Home"
    assert a["path"] == "/tracking/track"
    assert a["body"]["event"] == "alias" and a["body"]["properties"]["previousId"] == "old"
    assert i["body"]["anonymousId"] == "u"  # REST identify needs one
    assert one("identify", {**i["body"], **WS}).user_id == "u"
