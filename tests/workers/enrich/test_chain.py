"""The chain as a whole: order, what it never overwrites, and a failing processor."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import trackgate.workers.enrich as chain
from tests.workers.enrich.helpers import CHROME, event
from trackgate.workers.enrich import Env, enrich_event
from trackgate.workers.enrich.geo import GeoDatabase

SALTS = {date(2026, 11, 23): b"s" * 32}


def test_order_geo_and_visitor_before_ip_policy():
    names = [name for name, _ in chain.CHAIN]
    assert names[-1] == "ip_policy"
    assert names.index("bots") < names.index("user_agent")
    assert names.index("campaign") < names.index("referrer")


def test_client_and_adapter_values_are_kept():
    preset = {"browser": "Sent", "channel": "Partner", "country": "FR", "visitor_id": "mine", "is_bot": True}
    e = event(ip="81.2.69.142", ua=CHROME, url="https://x.example/?utm_source=a", enrichment=preset)
    enrich_event(e, Env(salts=SALTS))
    for key, value in preset.items():
        assert e.enrichment[key] == value
    assert e.enrichment["utm_source"] == "a"  # what was not there is added
    assert e.enrichment["device_type"] == "bot"  # the adapter said bot


def test_a_failing_processor_is_noted_and_the_rest_still_run(monkeypatch, caplog):
    def broken(event, env):
        raise RuntimeError("boom")

    monkeypatch.setattr(
        chain, "CHAIN", (("campaign", chain.campaign.process), ("broken", broken), *chain.CHAIN[-2:])
    )
    e = event(url="https://x.example/?utm_source=a", width=800)
    enrich_event(e, Env())
    assert e.enrichment["enrich_errors"] == ["broken"]
    assert e.enrichment["utm_source"] == "a"
    assert e.enrichment["screen_bucket"] == "769-1024"
    assert "enrich_failed processor=broken" in caplog.text


def test_non_dict_enrichment_is_replaced():
    e = event()
    e.enrichment = None  # type: ignore[assignment]  # a malformed job on purpose: the chain still runs
    enrich_event(e, Env())
    assert e.enrichment == {"screen_bucket": "unknown"}  # no page, no campaign: no channel either


def test_cached_results_are_never_shared_between_events():
    # the same inputs twice: every processor answers the second from its cache (user agent, campaign,
    # referrer, geo database); each event still gets its own enrichment, and changing one's changes
    # neither another event's nor what the caches give the next event
    database = GeoDatabase(str(Path(__file__).parent / "data" / "GeoIP2-City-Test.mmdb"))
    env = Env(salts=SALTS, geo=database)
    url = "https://shop.example/?utm_source=news&utm_medium=email"

    def enriched():
        e = event(ip="81.2.69.142", ua=CHROME, url=url, referrer="https://www.google.com/", width=800)
        enrich_event(e, env)
        return e

    first, second = enriched(), enriched()
    assert first.enrichment == second.enrichment
    assert first.enrichment is not second.enrichment
    expected = dict(second.enrichment)
    assert {"browser", "utm_source", "channel", "country", "city", "visitor_id"} <= expected.keys()
    for key in list(first.enrichment):
        first.enrichment[key] = "changed"
    first.enrichment["enrich_errors"] = ["x"]
    assert second.enrichment == expected
    assert enriched().enrichment == expected
    assert all(not isinstance(value, dict | list) for value in expected.values())
    database.close()
