"""Client IP, geo and the cookie-less visitor id: table-driven."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from tests.workers.enrich.helpers import CHROME, event
from trackgate.workers.enrich import Env, client_ip, geo, visitor
from trackgate.workers.enrich.geo import GeoDatabase

IP_CASES = [
    ("81.2.69.142", "81.2.69.142"),
    (" 81.2.69.142 ", "81.2.69.142"),
    ("::ffff:81.2.69.142", "81.2.69.142"),
    ("[2a00:1450:4001::1]", "2a00:1450:4001::1"),
    ("fe80::1%eth0", "fe80::1"),
    ("81.2.69.142:443", None),
    ("not an ip", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "expected"), IP_CASES)
def test_parse_ip(text, expected):
    address = client_ip.parse_ip(text)
    assert (str(address) if address else None) == expected


GEO_CASES = [
    ("81.2.69.142", "GB"),
    ("8.8.8.8", "US"),
    ("2a00:1450:4001::1", "IE"),
    ("10.1.2.3", None),
    ("127.0.0.1", None),
    ("192.168.1.1", None),
    (None, None),
]


@pytest.mark.parametrize(("ip", "country"), GEO_CASES)
def test_country(ip, country):
    e = event(ip=ip)
    geo.process(e, Env())
    assert e.enrichment.get("country") == country


class FakeDatabase(GeoDatabase):
    """Stands in for a MaxMind reader's lookup result (the real reader is tested in test_geo_database)."""

    def __init__(self) -> None:  # no file to open: the processor only calls lookup
        pass

    def lookup(self, address):
        return {"country": "XX", "region": "England", "region_code": "ENG", "city": "London"}


def test_region_and_city_from_a_database_country_from_iptocc():
    e = event(ip="81.2.69.142")
    geo.process(e, Env(geo=FakeDatabase()))
    assert e.enrichment == {"country": "GB", "region": "England", "region_code": "ENG", "city": "London"}


TODAY = date(2026, 11, 23)
SALTS = {date(2026, 11, 22): b"y" * 32, TODAY: b"t" * 32}


def at(hour: int, minute: int = 0, day: int = 23) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def vid(day: date, ip="81.2.69.142", ua=CHROME, source="src") -> str:
    return visitor.visitor_hash(SALTS[day], ip, ua, source)


YESTERDAY = date(2026, 11, 22)
VISITOR_CASES = [
    # (received at, late ids, expected salt day)
    (at(12), set(), TODAY),
    (at(23, 59, day=22), set(), YESTERDAY),  # received yesterday, stored today: yesterday's salt
    (at(10, day=20), set(), YESTERDAY),  # older than yesterday: the oldest salt there is
    (at(1, day=24), set(), TODAY),  # a clock ahead: today's
    # the first 30 minutes of a day keep yesterday's id of a visitor seen in yesterday's last 30 minutes
    (at(0, 10), {"yesterday"}, YESTERDAY),
    (at(0, 29), {"yesterday"}, YESTERDAY),
    (at(0, 30), {"yesterday"}, TODAY),
    (at(0, 10), {"someone else"}, TODAY),
]


@pytest.mark.parametrize(("received", "late", "day"), VISITOR_CASES)
def test_visitor_salt_rule(received, late, day):
    late = {vid(YESTERDAY) if x == "yesterday" else x for x in late}
    e = event(ip="81.2.69.142", ua=CHROME, received_at=received)
    visitor.process(e, Env(salts=SALTS, late_ids=late))
    assert e.enrichment["visitor_id"] == vid(day)


ID_CASES = [
    # what changes the id, and what does not
    (dict(ip="81.2.69.143"), True),
    (dict(ua="other"), True),
    (dict(source="other"), True),
    (dict(ip="::ffff:81.2.69.142"), False),  # the same address written another way
]


@pytest.mark.parametrize(("change", "differs"), ID_CASES)
def test_visitor_id_inputs(change, differs):
    base = event(ip="81.2.69.142", ua=CHROME)
    other = event(
        ip=change.get("ip", "81.2.69.142"), ua=change.get("ua", CHROME), source_id=change.get("source", "src")
    )
    for e in (base, other):
        visitor.process(e, Env(salts=SALTS))
    assert (base.enrichment["visitor_id"] != other.enrichment["visitor_id"]) is differs
    assert len(base.enrichment["visitor_id"]) == 64


def test_no_ip_no_visitor_id_and_no_salts_no_id():
    e = event(ua=CHROME)
    visitor.process(e, Env(salts=SALTS))
    assert "visitor_id" not in e.enrichment
    e = event(ip="81.2.69.142")
    visitor.process(e, Env())
    assert "visitor_id" not in e.enrichment


WINDOW_CASES = [
    (at(0, 0), True, False),
    (
        at(
            0,
            29,
        ),
        True,
        False,
    ),
    (at(0, 30), False, False),
    (at(12), False, False),
    (at(23, 30), False, True),
    (at(23, 59), False, True),
    (at(23, 29), False, False),
]


@pytest.mark.parametrize(("received", "grace", "late"), WINDOW_CASES)
def test_windows(received, grace, late):
    assert visitor.in_grace(received) is grace
    assert visitor.in_late(received) is late


@pytest.mark.parametrize("salt", [b"t" * 32, b"", b"k" * 64, b"long" * 40])
def test_visitor_hash_is_hmac_sha256(salt):
    import hmac

    expected = hmac.new(salt, f"1.2.3.4\n{CHROME}\nsrc".encode(), "sha256").hexdigest()
    assert visitor.visitor_hash(salt, "1.2.3.4", CHROME, "src") == expected


def test_windows_in_another_zone():
    paris = timezone(timedelta(hours=1))
    assert visitor.in_grace(datetime(2026, 11, 23, 1, 10, tzinfo=paris))  # 00:10 UTC
    assert visitor.in_late(datetime(2026, 11, 23, 0, 50, tzinfo=paris))  # 23:50 UTC the day before


def test_visitor_ids_are_made_from_each_ip_strings_identity():
    """Spaces around an address, an IPv4-mapped IPv6 one, text that is no address, blank text."""
    salts = {date(2026, 11, 23): b"s" * 32}
    ips = ["81.2.69.142", " 81.2.69.7 ", "::ffff:81.2.69.142", "2a02:c7f:7e26::1", "bad ip", "  "]
    expected = [visitor.visitor_hash(salts[date(2026, 11, 23)], ip.strip(), CHROME, "src") for ip in ips[:2]]
    for _ in range(2):
        events = [event(ip=ip, ua=CHROME, received_at=at(12)) for ip in ips]
        got = [visitor.visitor_id(e, salts, frozenset(), {}) for e in events]
        assert got[:2] == expected
        assert got[2] == got[0]  # the mapped address is the same visitor
        assert got[3] is not None and got[4] is not None  # unparsable: the text itself, stripped
        assert got[5] is None
