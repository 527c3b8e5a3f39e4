# ruff: noqa: E501
"""OpenPanel rule tables: CORS origins, client IP headers, event-name blocklist, ``__timestamp``,
``__deviceId``, revenue units, and ``encode`` for every canonical type (round trips through ``decode``)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from trackgate.adapters import openpanel
from trackgate.adapters.base import InvalidPayload
from trackgate.gateway import client_ip
from trackgate.gateway.openpanel import device_id, origin_allowed
from trackgate.schemas.event import Context, Event
from trackgate.schemas.request import RequestMeta
from trackgate.schemas.settings import settings_from_env

NOW = datetime(2026, 5, 4, 10, 0, 0, tzinfo=UTC)


def meta(call: str = "track", **hints) -> RequestMeta:
    return RequestMeta(
        source_id="src_1",
        dialect="openpanel",
        call=call,
        received_at=NOW,
        request_id="req-1",
        ip="192.0.2.1",
        user_agent="ua/1",
        hints={"device_id": "dev-1", **hints},
    )


def decode(body: dict, call: str = "track", **hints) -> list[Event]:
    return openpanel.decode(meta(call, **hints), openpanel.parse(call, json.dumps(body).encode()))


@pytest.mark.parametrize(
    "origin, allowed, ok",
    [
        ("https://example.com", ["example.com"], True),
        ("https://www.example.com", ["https://example.com/"], True),
        ("http://example.com", ["https://example.com"], True),
        ("https://app.example.com", ["*.example.com"], True),
        ("https://a.b.example.com", ["https://*.example.com"], True),
        ("https://example.com", ["*.example.com"], False),
        ("https://app.example.com.evil.net", ["*.example.com"], False),
        ("https://evilexample.com", ["example.com"], False),
        ("https://anything.net", ["*"], True),
        (None, ["*"], False),
        ("https://example.com", [], False),
    ],
)
def test_origin_allowed(origin, allowed, ok):
    assert origin_allowed(origin, allowed) is ok


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"x-client-ip": "203.0.113.9"}, "203.0.113.9"),
        ({"openpanel-client-ip": "8.8.8.8", "x-client-ip": "1.1.1.1"}, "8.8.8.8"),
        ({"x-client-ip": "10.1.2.3", "x-forwarded-for": "9.9.9.9"}, "9.9.9.9"),
        ({"x-forwarded-for": "9.9.9.9, 10.0.0.1"}, "9.9.9.9"),
        ({"x-forwarded-for": "10.0.0.1, 9.9.9.9"}, None),
        ({"cf-connecting-ip": "2001:db8::1"}, "2001:db8::1"),
        ({"x-real-ip": "::ffff:8.8.4.4"}, "8.8.4.4"),
        ({"forwarded": 'for="[2001:4860::8888]";proto=https'}, "2001:4860::8888"),
        ({"forwarded": "for=192.168.1.1"}, None),
        ({"x-client-ip": "not an ip"}, None),
        ({"x-client-ip": "127.0.0.1"}, None),
        ({"x-client-ip": "172.20.0.1"}, None),
        ({"x-client-ip": "172.32.0.1"}, "172.32.0.1"),
        ({"x-client-ip": "169.254.1.1"}, None),
        ({"x-client-ip": "fe80::1"}, None),
    ],
)
def test_client_ip_headers(headers, expected):
    assert client_ip.from_headers(headers) == expected
    assert client_ip.client_ip(headers, "192.0.2.77", trusted=True) == (expected or "192.0.2.77")
    assert client_ip.client_ip(headers, "192.0.2.77", trusted=False) == "192.0.2.77"


def test_trusted_proxies():
    proxies = client_ip.parse_networks("10.0.0.0/8, 192.0.2.5")
    headers = {"x-forwarded-for": "9.9.9.9"}
    assert client_ip.client_ip(headers, "10.3.4.5", trusted=False, proxies=proxies) == "9.9.9.9"
    assert client_ip.client_ip(headers, "192.0.2.5", trusted=False, proxies=proxies) == "9.9.9.9"
    assert client_ip.client_ip(headers, "192.0.2.6", trusted=False, proxies=proxies) == "192.0.2.6"
    assert (
        settings_from_env({"TRACKGATE_TRUSTED_PROXIES": "10.0.0.0/8,::1"}).trusted_proxies == "10.0.0.0/8,::1"
    )
    assert settings_from_env({}).trusted_proxies == ""
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        settings_from_env({"TRACKGATE_TRUSTED_PROXIES": "10.0.0.0/33"})


@pytest.mark.parametrize(
    "name, blocked",
    [
        ("signup", False),
        ("Order Completed", False),
        ("x" * 80, False),
        ("x" * 81, True),
        ("a\nb", True),
        ("1 UNION SELECT password", True),
        ("/wp-admin", True),
        ("/.env", True),
        ("/index.php", True),
        ("../../etc/passwd", True),
        ("${jndi:ldap://x}", True),
    ],
)
def test_blocked_event_names(name, blocked):
    assert openpanel.is_blocked_event_name(name) is blocked


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-05-04T09:00:00.000Z", datetime(2026, 5, 4, 9, tzinfo=UTC)),
        ("2026-05-04T09:00:00", datetime(2026, 5, 4, 9, tzinfo=UTC)),
        ("2026-05-04T11:00:00+02:00", datetime(2026, 5, 4, 9, tzinfo=UTC)),
        ("2026-05-04T10:00:59Z", datetime(2026, 5, 4, 10, 0, 59, tzinfo=UTC)),
        ("2026-05-04T10:01:01Z", None),  # more than a minute ahead: ignored
        ("yesterday", None),
        (1777888800000, datetime(2026, 5, 4, 10, 0, tzinfo=UTC)),
        (True, None),
    ],
)
def test_client_timestamp(value, expected):
    assert openpanel.client_timestamp(value, NOW) == expected


def test_device_id_override_rules():
    assert (
        decode({"type": "track", "payload": {"name": "a", "properties": {"__deviceId": " d1 "}}})[
            0
        ].anonymous_id
        == "d1"
    )
    too_long = "d" * 65
    assert (
        decode({"type": "track", "payload": {"name": "a", "properties": {"__deviceId": too_long}}})[
            0
        ].anonymous_id
        == "dev-1"
    )
    assert (
        decode({"type": "track", "payload": {"name": "a", "properties": {"__deviceId": 5}}})[0].anonymous_id
        == "dev-1"
    )


def test_revenue_in_cents_becomes_major_units():
    (event,) = decode({"type": "track", "payload": {"name": "revenue", "properties": {"__revenue": 1050}}})
    assert event.properties == {"revenue": 10.5}
    assert json.loads(event.raw)["payload"]["properties"] == {"__revenue": 1050}  # the original stays in raw
    (other,) = decode({"type": "track", "payload": {"name": "purchase", "properties": {"__revenue": 99.5}}})
    assert other.properties == {"revenue": 0.995}  # only a "revenue" event's __revenue must be an integer


def test_bot_and_hints_into_enrichment():
    (event,) = decode({"type": "track", "payload": {"name": "a"}}, bot={"name": "Googlebot"}, ip="8.8.8.8")
    assert event.enrichment == {"is_bot": True}
    assert event.context.ip == "8.8.8.8"
    (event,) = decode({"type": "track", "payload": {"name": "a"}})
    assert event.context.ip == "192.0.2.1"  # the peer, when the gateway had no better one


def test_profile_id_numbers_as_javascript_prints_them():
    assert decode({"type": "identify", "payload": {"profileId": 42}})[0].user_id == "42"
    assert decode({"type": "identify", "payload": {"profileId": 42.0}})[0].user_id == "42"
    assert decode({"type": "identify", "payload": {"profileId": 4.5}})[0].user_id == "4.5"


def test_nul_is_scrubbed_but_raw_kept():
    (event,) = decode({"type": "track", "payload": {"name": "a\u0000b", "properties": {"k": "v\u0000"}}})
    assert event.name == "a\ufffdb" and event.properties == {"k": "v\ufffd"}
    assert "\\u0000" in event.raw


def test_null_means_absent():
    (event,) = decode(
        {"type": "track", "payload": {"name": "a", "profileId": None, "properties": None, "groups": None}}
    )
    assert event.user_id is None and event.properties == {} and event.group_ids == []
    with pytest.raises(InvalidPayload) as exc:
        openpanel.parse("track", b'{"type":"identify","payload":{"profileId":null}}')
    assert exc.value.path == "body/payload/profileId"


def test_credentials_and_secret_places():
    env = openpanel.parse(
        "track", b'{"type":"track","payload":{"name":"a"},"clientId":"c","clientSecret":"s"}'
    )
    assert openpanel.credentials({}, env) == "c" and openpanel.client_secret({}, env) == "s"
    assert openpanel.credentials({"mixan-client-id": "m"}, env) == "m"
    assert openpanel.client_secret({"openpanel-client-secret": "h"}, env) == "h"
    with pytest.raises(InvalidPayload):
        openpanel.parse("track", b'{"type":"track","payload":{"name":"a"},"clientId":5}')


def test_device_id_formula():
    # OpenPanel's generateDeviceId: shake256("ua:ip:project:salt", 16 bytes) as hex
    assert device_id("s", "u", "i", "p") == hashlib.shake_256(b"u:i:p:s").hexdigest(16)


# --- encode -----------------------------------------------------------------------------------------------


def event(**fields) -> Event:
    base = dict(
        id="",
        message_id="m",
        source_id="s",
        dialect="segment",
        timestamp=datetime(2026, 5, 4, 9, 0, 0, 123456, tzinfo=UTC),
        received_at=NOW,
        raw="{}",
    )
    return Event(**{**base, **fields})


def test_encode_every_type():
    encoded = openpanel.encode(
        [
            event(type="track", name="Order Completed", user_id="u1", anonymous_id="a1",
                  properties={"revenue": 19.99, "currency": "EUR"}, group_ids=["g1"],
                  context=Context(ip="8.8.8.8")),
            event(type="identify", user_id="u1", traits={"email": "a@b.co", "firstName": "A", "plan": "pro"}),
            event(type="increment", user_id="u1", properties={"property": "visits", "value": 1}),
            event(type="decrement", user_id="u1", properties={"property": "credits", "value": 3}),
            event(type="group", group_id="g1", traits={"name": "Acme", "type": "company", "seats": 5}),
            event(type="assign_group", user_id="u1", group_ids=["g1", "g2"]),
            event(type="assign_group", anonymous_id="a1", group_ids=["g1"]),
            event(type="alias", user_id="u1", previous_id="a1"),
            event(type="page", name="Pricing", anonymous_id="a1"),
            event(type="feedback", user_id="u1", properties={"score": 5}),
        ]
    )  # fmt: skip
    assert encoded == [
        {"type": "track", "payload": {"name": "Order Completed", "profileId": "u1", "groups": ["g1"], "properties": {
            "currency": "EUR", "__revenue": 1999, "__deviceId": "a1", "__ip": "8.8.8.8",
            "__timestamp": "2026-05-04T09:00:00.123Z"}}},
        {"type": "identify", "payload": {"profileId": "u1", "firstName": "A", "email": "a@b.co", "properties": {"plan": "pro"}}},
        {"type": "increment", "payload": {"profileId": "u1", "property": "visits"}},
        {"type": "decrement", "payload": {"profileId": "u1", "property": "credits", "value": 3}},
        {"type": "group", "payload": {"id": "g1", "type": "company", "name": "Acme", "properties": {"seats": 5}}},
        {"type": "assign_group", "payload": {"groupIds": ["g1", "g2"], "profileId": "u1"}},
        {"type": "assign_group", "payload": {"groupIds": ["g1"]}},
        {"type": "alias", "payload": {"profileId": "u1", "alias": "a1"}},
        {"type": "track", "payload": {"name": "Pricing", "properties": {"__deviceId": "a1", "__timestamp": "2026-05-04T09:00:00.123Z"}}},
        {"type": "track", "payload": {"name": "feedback", "profileId": "u1", "properties": {"score": 5, "__timestamp": "2026-05-04T09:00:00.123Z"}}},
    ]  # fmt: skip


def test_encode_then_decode_round_trip():
    original = event(type="track", name="revenue", user_id="u1", anonymous_id="a1",
                     properties={"revenue": 12.34, "plan": "pro"}, context=Context(ip="8.8.8.8"),
                     timestamp=NOW - timedelta(hours=1))  # fmt: skip
    (body,) = openpanel.encode([original])
    (back,) = openpanel.decode(meta(), openpanel.parse("track", json.dumps(body).encode()))
    assert (back.name, back.user_id, back.anonymous_id) == ("revenue", "u1", "a1")
    assert back.properties == {"revenue": 12.34, "plan": "pro"}
    assert back.context.ip == "8.8.8.8" and back.timestamp == NOW - timedelta(hours=1)
