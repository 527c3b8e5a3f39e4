"""Issue 5's done-when, all over HTTP: one user traced through a Segment identify, an OpenPanel
increment, a Reflag company call and a Spectacle track with ``mrr`` ends as one profile with the right
traits, counter, group and revenue (four sources of one workspace, four dialects, one live gateway)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import httpx
import pytest

from tests.helpers import Cli, live_gateway, stored
from trackgate.gateway import bucket, openpanel, spectacle
from trackgate.sources import add_source


def _source(settings, module, name: str) -> dict:
    created = module.new_source(None, {"origins": []})
    source, _ = add_source(
        settings.database_url,
        module.DIALECT,
        name,
        created["key"],
        created["settings"],
        created["extra_keys"],
        workspace="shop",
    )
    return {"id": source.id, "key": created["key"], **created["extra_keys"]}


@pytest.fixture
def shop(settings):
    """One workspace, a source per dialect."""
    return {
        "segment": add_source(settings.database_url, "segment", "web", "wk-shop", workspace="shop")[1],
        "openpanel": _source(settings, openpanel, "app"),
        "bucket": _source(settings, bucket, "flags"),
        "spectacle": _source(settings, spectacle, "billing"),
    }


def _calls(shop: dict) -> list[tuple[str, dict, dict]]:
    op, reflag, ws = shop["openpanel"], shop["bucket"], shop["spectacle"]["key"]
    return [
        (
            "/v1/identify",
            {"userId": "u-42", "anonymousId": "anon-1", "traits": {"email": "ada@example.com"}},
            {"Authorization": "Basic " + base64.b64encode(f"{shop['segment']}:".encode()).decode()},
        ),
        (
            "/track",
            {"type": "increment", "payload": {"profileId": "u-42", "property": "logins", "value": 2}},
            {"openpanel-client-id": op["key"], "openpanel-client-secret": op["secret"]},
        ),
        (
            "/company",
            {"userId": "u-42", "companyId": "acme", "attributes": {"name": "Acme Inc"}},
            {"Authorization": f"Bearer {reflag['secret']}"},
        ),
        (
            "/tracking/track",
            {
                "workspaceId": ws,
                "userId": "u-42",
                "event": "Subscribed",
                "properties": {"revenue": "4999", "currency": "USD", "mrr": 4999, "plan": "pro"},
            },
            {},
        ),
    ]


def _show(cli: Cli, user_id: str) -> dict:
    result = cli("profiles", "show", user_id, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output, parse_float=Decimal)


def test_one_user_through_four_dialects_is_one_profile(cli, settings, shop, drain, db):
    with live_gateway(settings) as base:
        for path, body, headers in _calls(shop):
            r = httpx.post(base + path, json=body, headers=headers)
            assert r.is_success, (path, r.status_code, r.text)
    drain()
    assert sorted((e["dialect"], e["type"]) for e in stored(db)) == [
        ("bucket", "group"),
        ("openpanel", "increment"),
        ("segment", "identify"),
        ("spectacle", "track"),
    ]

    profile = _show(cli, "u-42")
    assert profile["workspace"] == "shop" and profile["user_id"] == "u-42"
    assert profile["traits"]["email"] == "ada@example.com"
    assert profile["counters"] == {"logins": 2}
    assert profile["revenue"] == {"USD": Decimal("49.99")}
    assert Decimal(str(profile["mrr"])) == Decimal("49.99")
    assert [(g["group_id"], g["name"]) for g in profile["groups"]] == [("acme", "Acme Inc")]
    assert _show(cli, "anon-1") == profile  # the anonymous id Segment linked resolves to the same person
