"""One user traced through four dialects' sources into one profile (issue 5's done-when, first half).

The Segment calls go over real HTTP through the gateway; the OpenPanel, Bucket and Spectacle calls are
built as the canonical events those dialects produce (per the conventions) and published through the
real pipeline (the gateway's Publisher → Redis → an RQ worker → PostgreSQL). Everything is then read
back with ``trackgate profiles show``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import redis.asyncio as aioredis
from starlette.testclient import TestClient

from tests.helpers import stored
from trackgate.gateway.app import create_app
from trackgate.gateway.publisher import Publisher
from trackgate.schemas.event import Context, Event, Library
from trackgate.sources import add_source

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def canonical(source_id: str, dialect: str, message_id: str, minutes: float, raw: dict, **fields) -> Event:
    return Event(
        id=f"01960000-0000-7000-8000-{abs(hash(message_id)) % 10**12:012d}",
        message_id=message_id,
        source_id=source_id,
        dialect=dialect,
        timestamp=T0 + timedelta(minutes=minutes),
        received_at=T0 + timedelta(minutes=minutes, seconds=1),
        raw=json.dumps(raw),
        **fields,
    )


def publish(redis_url: str, events: list[Event]) -> None:
    async def run() -> None:
        client = aioredis.from_url(redis_url)
        publisher = Publisher(client)
        await publisher.start()
        try:
            await publisher.publish(events)
        finally:
            await publisher.stop()
            await client.aclose()

    asyncio.run(run())


def test_one_user_through_segment_openpanel_bucket_and_spectacle_is_one_profile(cli, settings, db, drain):
    segment, _ = add_source(settings.database_url, "segment", "web", "wk-shop", workspace="shop")
    openpanel, _ = add_source(settings.database_url, "openpanel", "app", "op-client", workspace="shop")
    bucket, _ = add_source(settings.database_url, "bucket", "flags", "bk-key", workspace="shop")
    spectacle, _ = add_source(settings.database_url, "spectacle", "billing", "ws_shop", workspace="shop")
    # another workspace with the same user id stays apart
    other, _ = add_source(settings.database_url, "segment", "blog", "wk-blog", workspace="blog")

    segment_calls = [
        (
            "page",
            "wk-shop",
            {"anonymousId": "anon-9", "name": "Pricing", "messageId": "s-1", "timestamp": at(0)},
        ),
        (
            "identify",
            "wk-shop",
            {
                "userId": "u-42",
                "anonymousId": "anon-9",
                "traits": {"email": "ada@example.com", "firstName": "Ada", "plan": "free"},
                "messageId": "s-2",
                "timestamp": at(5),
            },
        ),
        ("identify", "wk-blog", {"userId": "u-42", "traits": {"email": "blog@x.io"}, "messageId": "b-1"}),
    ]
    others = [
        # OpenPanel: increment with the profile id and the device id it was sent from
        canonical(
            openpanel.id,
            "openpanel",
            "op-1",
            10,
            {"type": "increment", "payload": {"profileId": "u-42", "property": "logins", "value": 1}},
            type="increment",
            user_id="u-42",
            anonymous_id="op-device-1",
            properties={"property": "logins", "value": 1},
            context=Context(library=Library(name="@openpanel/sdk", version="1.3.1")),
        ),
        # Bucket: a company call with a userId (a group with a membership)
        canonical(
            bucket.id,
            "bucket",
            "bk-1",
            12,
            {"companyId": "acme", "userId": "u-42", "attributes": {"name": "Acme Inc", "plan": "team"}},
            type="group",
            user_id="u-42",
            group_id="acme",
            traits={"name": "Acme Inc", "plan": "team"},
        ),
        # Spectacle: a track with mrr and revenue (sent in cents; the canonical event has major units)
        canonical(
            spectacle.id,
            "spectacle",
            "sp-1",
            15,
            {"event": "Subscribed", "userId": "u-42", "properties": {"revenue": 1599, "mrr": 9900}},
            type="track",
            dialect_version="rest",
            name="Subscribed",
            user_id="u-42",
            properties={"revenue": 15.99, "currency": "USD", "mrr": 99},
        ),
        # a later Segment-shaped trait change through OpenPanel's device id only
        canonical(
            openpanel.id,
            "openpanel",
            "op-2",
            20,
            {"type": "identify", "payload": {"profileId": "u-42", "properties": {"plan": "team"}}},
            type="identify",
            user_id="u-42",
            traits={"plan": "team"},
        ),
    ]

    def deliver() -> None:
        with TestClient(create_app(settings)) as client:
            for call, key, body in segment_calls:
                r = client.post(f"/v1/{call}", json=body, auth=(key, ""))
                assert r.status_code == 200, r.text
        publish(settings.redis_url, others)
        drain()

    def show(*args: str) -> dict:
        result = cli("profiles", "show", *args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output, parse_float=Decimal)

    deliver()
    assert len(stored(db)) == 7
    profile = show("u-42", "--workspace", "shop")
    assert profile["user_id"] == "u-42" and profile["workspace"] == "shop"
    assert {i["id"]: i["kind"] for i in profile["ids"]} == {
        "anon-9": "anonymous",
        "u-42": "user",
        "op-device-1": "anonymous",
    }
    assert profile["traits"] == {"email": "ada@example.com", "firstName": "Ada", "plan": "team"}
    assert profile["counters"] == {"logins": 1}
    assert profile["revenue"] == {"USD": Decimal("15.99")} and profile["mrr"] == 99
    assert profile["arr"] is None
    assert [(g["group_id"], g["name"], g["traits"]) for g in profile["groups"]] == [
        ("acme", "Acme Inc", {"name": "Acme Inc", "plan": "team"})
    ]
    assert profile["first_seen"] == at(0)  # the anonymous page view
    assert profile["last_seen"] == at(20)
    # any id of the profile finds it, the Segment device id and OpenPanel's
    assert show("anon-9", "--workspace", "shop") == profile == show("op-device-1")
    assert show("u-42", "--workspace", "blog")["traits"] == {"email": "blog@x.io"}
    assert other.id != segment.id

    # everything delivered again (SDK retries, a re-run job): stored once, counted once
    deliver()
    assert len(stored(db)) == 7
    again = show("u-42", "--workspace", "shop")
    assert again["counters"] == {"logins": 1} and again["revenue"] == {"USD": Decimal("15.99")}
    assert {k: v for k, v in again.items() if k != "updated_at"} == {
        k: v for k, v in profile.items() if k != "updated_at"
    }
