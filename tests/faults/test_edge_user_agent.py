"""A long User-Agent (issue 11 item 7). Before: crawlerdetect's time grew with the square of the
agent's length (20 KB: 27 s) and ran on the gateway's event loop (TinyTrail, OpenPanel) and in the
workers' enrichment, so one unauthenticated request froze every other client of its process."""

from __future__ import annotations

import secrets
import threading
import time

import httpx
import pytest

from tests.faults.edge_support import gateway_process
from tests.helpers import SEED_PAGE_VIEW, SEED_WEBSITE, stored
from trackgate.adapters import traffic
from trackgate.gateway.tinytrail import BROWSER_UA, new_source
from trackgate.sources import add_source
from trackgate.workers.enrich import bots, user_agent


def hostile_agent(size: int = 20_000) -> str:
    """A distinct agent each time (no cache helps), of the shapes that were quadratic."""
    return secrets.token_hex(4) + "a" * size


def test_classifying_a_20_kb_agent_is_bounded_and_calls_it_a_bot():
    user_agent.ua_fields(BROWSER_UA)  # ua-parser loads its rules on first use (~0.4 s)
    for agent in (hostile_agent(), "1" * 20_000, "Mozilla/5.0 " + "x/" * 10_000):
        started = time.perf_counter()
        name = traffic.crawler_name(agent)
        assert bots.is_bot(agent)
        fields = user_agent.ua_fields(traffic.bounded_user_agent(agent))
        assert time.perf_counter() - started < 0.2
        assert name == traffic.OVERLONG_UA_NAME and isinstance(fields, dict)


def test_agents_under_the_bound_are_classified_as_crawlerdetect_does():
    from crawlerdetect import CrawlerDetect

    detector = CrawlerDetect()
    agents = [
        BROWSER_UA,
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "my-custom-crawler-service/1.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Mobile/15E148 [FBAN/FBIOS;FBAV/440.0.0.38.103;FBBV/540000000;FBDV/iPhone15,2;FBMD/iPhone;"
        "FBSN/iOS;FBSV/17.0;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/541000000]",
        "a" * 500 + "bot",
    ]
    for agent in agents:
        expected = detector.getMatches() if detector.isCrawler(agent) else None
        assert traffic.crawler_name(agent) == expected, agent
    # the one rewritten pattern's worst case, under the bound, is linear now (it was 35 ms at 512)
    started = time.perf_counter()
    for _ in range(10):
        traffic._classify.__wrapped__("a" * 512)
    assert (time.perf_counter() - started) / 10 < 0.03


@pytest.fixture
def tinytrail_gateway(settings):
    created = new_source(SEED_WEBSITE, {"domain": "example.com"})
    add_source(settings.database_url, "tinytrail", "example.com", created["key"], created["settings"])
    with gateway_process(settings, tinytrail_rate_limit=0) as (base, _):
        yield base


def test_20_kb_agents_do_not_make_other_requests_wait(tinytrail_gateway):
    base = tinytrail_gateway
    body = SEED_PAGE_VIEW
    statuses: list[int] = []

    def hostile() -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(10):
                try:
                    r = client.post(
                        base + "/api/v1/collect", json=body, headers={"User-Agent": hostile_agent()}
                    )
                    statuses.append(r.status_code)
                except httpx.TimeoutException:
                    statuses.append(0)

    senders = [threading.Thread(target=hostile) for _ in range(2)]
    waits: list[float] = []
    with httpx.Client(timeout=10) as probe:
        probe.get(base + "/health")  # connected
        for thread in senders:
            thread.start()
        while any(t.is_alive() for t in senders) or len(waits) < 20:
            started = time.perf_counter()
            assert probe.get(base + "/health").status_code == 200
            waits.append(time.perf_counter() - started)
            time.sleep(0.005)
    for thread in senders:
        thread.join()
    assert statuses == [204] * 20  # a bot: TinyTrail's silent answer, stored flagged
    assert max(waits) < 0.1, f"a concurrent request waited {max(waits) * 1000:.0f} ms"


def test_the_worker_enriches_a_batch_of_20_kb_agents_in_bounded_time(client, write_key, drain, db):
    batch = [
        {
            "type": "track",
            "event": "Viewed",
            "userId": f"u{i}",
            "messageId": f"m-{i}",
            "context": {"userAgent": hostile_agent()},
        }
        for i in range(15)
    ]
    r = client.post("/v1/batch", json={"batch": batch}, auth=(write_key, ""))
    assert r.status_code == 200, r.text
    started = time.perf_counter()
    drain()
    assert time.perf_counter() - started < 10
    rows = stored(db)
    assert len(rows) == 15
    assert all(row["enrichment"]["is_bot"] is True for row in rows)
    assert all(row["enrichment"]["device_type"] == "bot" for row in rows)
