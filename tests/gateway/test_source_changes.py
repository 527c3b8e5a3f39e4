"""A source change reaches every gateway process at once (Redis pub/sub), long before the periodic
refresh would: two apps stand for two gateway processes."""

from __future__ import annotations

import msgspec
from starlette.testclient import TestClient

from trackgate.gateway.app import create_app
from trackgate.sources import add_source, announce_change, set_enabled, set_key

TRACK = {"userId": "u1", "event": "Signed Up"}


def confirmed_by_both(redis_url: str) -> bool:
    """Both apps heard and reloaded (a gateway another test left subscribed may count too)."""
    listening, confirmed = announce_change(redis_url)
    return listening >= 2 and confirmed >= 2


def test_add_disable_and_rekey_take_effect_at_once_on_every_gateway(settings):
    slow = msgspec.structs.replace(settings, source_refresh_seconds=300.0)  # only the announcement helps
    with TestClient(create_app(slow)) as one, TestClient(create_app(slow)) as two:
        source, key = add_source(settings.database_url, "segment", "web", "k" * 20)
        assert confirmed_by_both(settings.redis_url)
        for client in (one, two):
            assert client.post("/v1/track", json=TRACK, auth=(key, "")).status_code == 200

        set_enabled(settings.database_url, "web", False)
        assert confirmed_by_both(settings.redis_url)
        for client in (one, two):
            assert client.post("/v1/track", json=TRACK, auth=(key, "")).status_code == 401

        set_enabled(settings.database_url, "web", True)
        set_key(settings.database_url, source.id, "n" * 20)
        assert confirmed_by_both(settings.redis_url)
        for client in (one, two):
            assert client.post("/v1/track", json=TRACK, auth=(key, "")).status_code == 401
            assert client.post("/v1/track", json=TRACK, auth=("n" * 20, "")).status_code == 200


def test_without_an_announcement_the_change_waits_for_the_refresh(settings):
    """The control: the same change, unannounced, is not seen (so the test above tests the announcement)."""
    slow = msgspec.structs.replace(settings, source_refresh_seconds=300.0)
    with TestClient(create_app(slow)) as client:
        _, key = add_source(settings.database_url, "segment", "web", "k" * 20)
        assert client.post("/v1/track", json=TRACK, auth=(key, "")).status_code == 401


def test_without_redis_the_change_waits_for_the_refresh_and_nothing_fails():
    assert announce_change(None) == (0, 0)
    assert announce_change("redis://127.0.0.1:1/0") == (0, 0)  # nothing listens on port 1
