"""``trackgate sources add tinytrail``: a website, its id, excluded IPs and content groups."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.helpers import live_gateway, stored
from trackgate.gateway.tinytrail import BROWSER_UA
from trackgate.sources import stored_digest


def test_sources_add_tinytrail_prints_the_website_id(cli, db, settings, drain):
    result = cli(
        "sources", "add", "tinytrail", "--domain", "example.com",
        "--exclude-ip", "10.0.0.0/8", "--exclude-ip", "2001:db8::1",
        "--content-group", "Blog=/blog/*", "--content-group", "Docs = /docs/*",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("website id: "))
    website_id = line.removeprefix("website id: ")
    assert str(uuid.UUID(website_id)) == website_id
    name, key_hash, source_settings = db.execute(
        "SELECT name, key_hash, settings FROM sources WHERE dialect = 'tinytrail'"
    ).fetchone()
    assert name == "example.com"
    assert bytes(key_hash) == stored_digest(settings.database_url, website_id)
    assert source_settings == {
        "domain": "example.com",
        "excluded_ips": ["10.0.0.0/8", "2001:db8::1"],
        "content_groups": [{"name": "Blog", "pattern": "/blog/*"}, {"name": "Docs", "pattern": "/docs/*"}],
    }
    body = {
        "website_id": website_id,
        "event_type": "page_view",
        "url": "https://example.com/blog/a",
        "path": "/blog/a",
    }
    with live_gateway(settings) as base:
        r = httpx.post(f"{base}/api/v1/collect", json=body, headers={"User-Agent": BROWSER_UA})
    assert r.status_code == 202
    drain()
    assert stored(db)[0]["enrichment"]["content_group"] == "Blog"


def test_sources_add_tinytrail_json(cli):
    result = cli("sources", "add", "tinytrail", "--domain", "shop.example.com", "--json")
    created = json.loads(result.output)
    assert created["name"] == "shop.example.com" and uuid.UUID(created["website_id"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--domain"),
        (("--domain", "bad domain!"), "--domain"),
        (("--domain", "example.com", "--exclude-ip", "10.0.0.300"), "not an address"),
        (("--domain", "example.com", "--content-group", "Blog"), "NAME=PATTERN"),
        (("--domain", "example.com", "--key", "not-a-uuid"), "UUID"),
    ],
    ids=["no-domain", "bad-domain", "bad-ip", "bad-group", "bad-key"],
)
def test_sources_add_tinytrail_refuses_bad_options(cli, db, args, message):
    result = cli("sources", "add", "tinytrail", "--name", "site", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert db.execute("SELECT count(*) FROM sources").fetchone()[0] == 0
