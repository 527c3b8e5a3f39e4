"""Per-source rules (excluded IPs, content groups, IP policy) and screen buckets: table-driven."""

from __future__ import annotations

import json

import pytest

from tests.workers.enrich.helpers import event
from trackgate.workers.enrich import Env, content_group, excluded, ip_policy, screen


def env(**settings) -> Env:
    return Env(settings={"src": settings})


EXCLUDED_CASES = [
    # (ip, excluded_ips, expected is_excluded; None: key absent, i.e. not excluded)
    ("203.0.113.7", ["203.0.113.7"], True),
    ("203.0.113.7", ["203.0.113.0/24"], True),
    ("203.0.114.7", ["203.0.113.0/24"], None),
    ("2001:db8::5", ["2001:db8::/32"], True),
    ("2001:db8::5", ["203.0.113.0/24"], None),
    ("::ffff:203.0.113.7", ["203.0.113.0/24"], True),
    ("203.0.113.7", ["garbage", "203.0.113.7/32"], True),
    ("203.0.113.7", [], None),
    (None, ["203.0.113.0/24"], None),
]


@pytest.mark.parametrize(("ip", "entries", "expected"), EXCLUDED_CASES)
def test_excluded(ip, entries, expected):
    e = event(ip=ip)
    excluded.process(e, env(excluded_ips=entries))
    assert e.enrichment.get("is_excluded") is expected


def test_excluded_keeps_an_adapters_true():
    e = event(ip="198.51.100.1", enrichment={"is_excluded": True})
    excluded.process(e, env(excluded_ips=["203.0.113.0/24"]))
    assert e.enrichment["is_excluded"] is True


GROUPS = [
    {"name": "Blog", "pattern": "/blog/*"},
    {"name": "Docs", "pattern": "/docs/*"},
    {"name": "Pricing", "pattern": "/pricing"},
    {"name": "Any", "pattern": "*"},
]
GROUP_CASES = [
    (dict(path="/blog/2024/launch"), "Blog"),
    (dict(path="/docs/start"), "Docs"),
    (dict(path="/pricing"), "Pricing"),
    (dict(path="/pricing/team"), "Any"),
    (dict(url="https://x.example/blog/post?x=1"), "Blog"),
    (dict(path="/BLOG/post"), "Any"),  # case-sensitive, like URL paths
    (dict(), None),
]


@pytest.mark.parametrize(("page", "expected"), GROUP_CASES)
def test_content_group(page, expected):
    e = event(**page)
    content_group.process(e, env(content_groups=GROUPS))
    assert e.enrichment.get("content_group") == expected


def test_content_group_ignores_malformed_entries():
    e = event(path="/blog/x")
    content_group.process(
        e, env(content_groups=["nope", {"name": 1, "pattern": "*"}, {"name": "Blog", "pattern": "/blog/*"}])
    )
    assert e.enrichment["content_group"] == "Blog"


SCREEN_CASES = [
    (dict(width=300), "320-375"),
    (dict(width=320), "320-375"),
    (dict(width=375), "320-375"),
    (dict(width=376), "376-768"),
    (dict(width=768), "376-768"),
    (dict(width=769), "769-1024"),
    (dict(width=1024), "769-1024"),
    (dict(width=1025), "1025-1440"),
    (dict(width=1440), "1025-1440"),
    (dict(width=1441), "1441+"),
    (dict(width=3840), "1441+"),
    (dict(width=0), "unknown"),
    (dict(), "unknown"),
    (dict(properties={"screen_width": 1920}), "1441+"),  # TinyTrail's own field
    (dict(properties={"screenWidth": 390.0}), "376-768"),
    (dict(properties={"screen_width": "wide"}), "unknown"),
    (dict(properties={"screen_width": True}), "unknown"),
]


@pytest.mark.parametrize(("fields", "expected"), SCREEN_CASES)
def test_screen_bucket(fields, expected):
    e = event(**fields)
    screen.process(e, Env())
    assert e.enrichment["screen_bucket"] == expected


POLICY_CASES = [
    # (policy, ip, stored ip)
    (None, "203.0.113.77", "203.0.113.77"),
    ("keep", "203.0.113.77", "203.0.113.77"),
    ("truncate", "203.0.113.77", "203.0.113.0"),
    ("truncate", "2001:db8:1234:5678:9abc::1", "2001:db8:1234::"),
    ("truncate", "garbage", None),
    ("drop", "203.0.113.77", None),
    ("dropp", "203.0.113.77", None),  # an unknown policy drops
    ("drop", None, None),
]


@pytest.mark.parametrize(("policy", "ip", "stored"), POLICY_CASES)
def test_ip_policy(policy, ip, stored):
    raw = json.dumps({"context": {"ip": ip}, "properties": {"note": "keep me"}})
    e = event(ip=ip, raw=raw)
    ip_policy.process(e, env(ip_policy=policy) if policy else Env())
    assert e.context.ip == stored
    kept = json.loads(e.raw)  # still valid JSON
    assert kept["properties"] == {"note": "keep me"}
    if policy in (None, "keep"):
        assert "ip_policy" not in e.enrichment
        assert kept["context"]["ip"] == ip
    else:
        assert e.enrichment["ip_policy"] in ("truncate", "drop")
        assert kept["context"]["ip"] in (stored, "" if stored is None else stored, None)
        if ip:
            assert ip not in e.raw
