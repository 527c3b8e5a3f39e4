"""A source change reaches every gateway process at once (Redis pub/sub), long before the periodic
refresh would: two apps stand for two gateway processes."""

from __future__ import annotations

import msgspec
from starlette.testclient import TestClient

from trackgate.gateway.app import create_app
from trackgate.sources import add_source, announce_change, set_enabled, set_key

TRACK = {"userId": "u1", "event": "Signed Up"}


def test_add_disable_and_rekey_take_effect_at_once_on_every_gateway(settings):
    slow = msgspec.structs.replace(settings, source_refresh_seconds=300.0)  # only the announcement helps
    with TestClient(create_app(slow)) as one, TestClient(create_app(slow)) as two:
        source, key = add_source(settings.database_url, "segment", "web", "k" * 20)
        assert announce_change(settings.redis_url) == (2, 2)  # both heard, both reloaded
        for client in (one, two):
            assert client.post("/v1/track", json=TRACK, auth=(key, "")).status_code == 200

        set_enabled(settings.database_url, "web", False)
        assert announce_change(settings.redis_url) == (2, 2)
        for client in (one, two):
            assert client.post("/v1/track", json=TRACK, auth=(key, "")).status_code == 401

        set_enabled(settings.database_url, "web", True)
        set_key(settings.database_url, source.id, "n" * 20)
        assert announce_change(settings.redis_url) == (2, 2)
        for client in (one, two):
            assert client.post("/v1/track", json=TRACK, auth=(key, "")).status_code == 401
            assert client.post("/v1/track", json=TRACK, auth=("n" * 20, "")).status_code == 200


def test_without_an_announcement_the_change_waits_for_the_refresh(settings):
    """The control: the same change, unannounced, is not seen (so the test above tests the announcement)."""
    slow = msgspec.structs.replace(settings, source_refresh_seconds=300.0)
    with TestClient(create_app(slow)) as client:
        _, key = add_source(settings.database_url, "segment", "web", "k" * 20)
        assert client.post("/v1/track", json=TRACK, auth=(key, "")).status_code == 401


def test_no_gateway_listening_is_no_wait(settings):
    assert announce_change(settings.redis_url) == (0, 0)
    assert announce_change(None) == (0, 0)
