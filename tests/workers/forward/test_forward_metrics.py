"""``trackgate_forward_requests_total{destination, outcome}`` counts what delivery did."""

from __future__ import annotations

import httpx
import respx
from prometheus_client import REGISTRY

from tests.workers.forward.test_forward import HOOK, SEGMENT, batch, ingest


def forwards(destination: str, outcome: str) -> float:
    labels = {"destination": destination, "outcome": outcome}
    return REGISTRY.get_sample_value("trackgate_forward_requests_total", labels) or 0.0


def test_delivered_retrying_and_dead_per_destination(client, write_key, drain, add, clock, run_until):
    hook = add("webhook", "hook", HOOK, {"secret": "s"})
    rudder = add("segment", "rudder", SEGMENT, {"write_key": "wk"})
    ingest(client, write_key, drain, batch("m", 2))
    with respx.mock() as mock:
        mock.post(HOOK).mock(side_effect=[httpx.Response(503), httpx.Response(503), httpx.Response(200)])
        mock.post(f"{SEGMENT}/v1/batch").respond(400, text="no userId")
        run_until(3600)
    assert (forwards(hook, "retrying"), forwards(hook, "delivered"), forwards(hook, "dead")) == (2, 1, 0)
    assert (forwards(rudder, "retrying"), forwards(rudder, "delivered"), forwards(rudder, "dead")) == (
        0,
        0,
        1,
    )
