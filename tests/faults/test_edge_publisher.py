"""Requests waiting for a frozen Redis (issue 11 item 9). Before: every request's events were held
in the gateway's memory for as long as Redis did not answer, without bound. Now at most
``TRACKGATE_MAX_PENDING_EVENTS`` are held; beyond them requests are answered 503 (Retry-After, in
the dialect's shape) at once, and everything acknowledged is stored once Redis is back."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import msgspec
import pytest

from tests.faults.edge_support import RedisServer, gateway_process
from tests.helpers import stored
from trackgate.sources import add_source

KEY = "wk_edge_publisher"


@pytest.fixture
def own_redis():
    server = RedisServer()
    yield server
    server.stop()


async def _send_all(base: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            body = {"type": "track", "event": "Paid", "userId": f"u{i}", "messageId": f"m-{i}"}
            return await client.post(base + "/v1/track", json=body, auth=(KEY, ""))

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_a_frozen_redis_holds_at_most_the_cap_and_loses_nothing_acknowledged(settings, own_redis, db):
    add_source(settings.database_url, "segment", "edge-publisher", KEY)
    gateway_settings = msgspec.structs.replace(settings, redis_url=own_redis.url)
    with gateway_process(
        gateway_settings, max_batch_events=10, max_pending_events=50, redis_timeout_seconds=8
    ) as (base, _):
        warm = {"type": "track", "event": "Warm", "userId": "w", "messageId": "m-warm"}
        assert httpx.post(base + "/v1/track", json=warm, auth=(KEY, "")).status_code == 200
        own_redis.freeze()
        thawed_at: list[float] = []

        async def scenario() -> list[httpx.Response]:
            sending = asyncio.ensure_future(_send_all(base, 300))
            await asyncio.sleep(3)  # everything over the cap is answered by now; the rest waits
            thawed_at.append(time.monotonic())
            own_redis.thaw()
            return await sending

        started = time.monotonic()
        responses = asyncio.run(scenario())

    refused = [r for r in responses if r.status_code == 503]
    accepted = [r for r in responses if r.status_code == 200]
    assert len(refused) + len(accepted) == 300, {r.status_code for r in responses}
    # at most the cap (50 one-event requests) were held; the refused were answered before the thaw
    assert 1 <= len(accepted) <= 50
    assert len(refused) >= 250
    for r in refused:
        assert r.json()["code"] == "overloaded"
        assert r.headers["retry-after"] == "5"
        assert started + r.elapsed.total_seconds() < thawed_at[0]

    # everything acknowledged is stored once (the worker reads the gateway's Redis); nothing refused is
    from trackgate.workers.worker import build_worker

    build_worker(gateway_settings).work(burst=True, with_scheduler=False, logging_level="WARNING")
    ids = sorted(row["message_id"] for row in stored(db))
    acknowledged = sorted(["m-warm"] + [json.loads(r.request.content)["messageId"] for r in accepted])
    assert ids == acknowledged
