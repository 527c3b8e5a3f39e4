"""``Settings.require()``: the typed view of settings a gateway or worker process runs on."""

from __future__ import annotations

import msgspec
import pytest

from trackgate.schemas.settings import MissingSetting, ServerSettings, Settings, settings_from_env


def test_require_returns_server_settings_with_every_other_field_kept():
    settings = settings_from_env(
        {
            "TRACKGATE_DATABASE_URL": "postgresql://db/x",
            "TRACKGATE_REDIS_URL": "redis://r/1",
            "TRACKGATE_PORT": "9",
        }
    )
    server = settings.require()
    assert type(server) is ServerSettings and isinstance(server, Settings)
    assert (server.database_url, server.redis_url, server.port) == ("postgresql://db/x", "redis://r/1", 9)
    assert msgspec.structs.asdict(server) == msgspec.structs.asdict(settings)
    assert server.require() is server


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "set TRACKGATE_DATABASE_URL and TRACKGATE_REDIS_URL"),
        ({"redis_url": "redis://r/1"}, "set TRACKGATE_DATABASE_URL"),
        ({"database_url": "postgresql://db/x"}, "set TRACKGATE_REDIS_URL"),
        ({"database_url": "", "redis_url": "redis://r/1"}, "set TRACKGATE_DATABASE_URL"),
    ],
)
def test_require_names_what_is_missing(values, message):
    with pytest.raises(MissingSetting) as raised:
        Settings(**values).require()
    assert str(raised.value) == message
    assert isinstance(raised.value, ValueError)


def test_server_settings_cannot_be_built_without_the_urls():
    with pytest.raises(TypeError, match="database_url"):
        ServerSettings(redis_url="redis://r/1")  # type: ignore[call-arg]  # the missing URL is the point


@pytest.mark.parametrize("value", ["0", "-1.5"])
def test_the_redis_timeout_must_be_positive(value):
    # every flush would time out at once (a 503 for every request)
    with pytest.raises(ValueError, match="TRACKGATE_REDIS_TIMEOUT_SECONDS must be more than 0"):
        settings_from_env({"TRACKGATE_REDIS_TIMEOUT_SECONDS": value})


@pytest.mark.parametrize("value", ["-1", "101"])
def test_the_publish_linger_is_0_to_100_ms(value):
    with pytest.raises(ValueError, match="TRACKGATE_PUBLISH_LINGER_MS must be 0 .no wait. to 100"):
        settings_from_env({"TRACKGATE_PUBLISH_LINGER_MS": value})


def test_the_publish_linger_is_whole_milliseconds():
    # the event loop's timers have a 1 ms resolution: 0.5 would wait as long as 1
    with pytest.raises(ValueError, match="TRACKGATE_PUBLISH_LINGER_MS='0.5': expected int"):
        settings_from_env({"TRACKGATE_PUBLISH_LINGER_MS": "0.5"})


@pytest.mark.parametrize(("value", "ms"), [(None, 1), ("0", 0), ("2", 2), ("100", 100)])
def test_the_publish_linger_defaults_to_1_ms(value, ms):
    env = {} if value is None else {"TRACKGATE_PUBLISH_LINGER_MS": value}
    assert settings_from_env(env).publish_linger_ms == ms


@pytest.mark.parametrize("value", ["-1", "101"])
def test_the_linger_threshold_is_0_to_100_percent(value):
    with pytest.raises(ValueError, match="TRACKGATE_PUBLISH_LINGER_ABOVE_CPU_PCT must be 0 .always. to 100"):
        settings_from_env({"TRACKGATE_PUBLISH_LINGER_ABOVE_CPU_PCT": value})


@pytest.mark.parametrize(("value", "pct"), [(None, 0), ("80", 80), ("100", 100)])
def test_the_linger_threshold_defaults_to_0_always(value, pct):
    env = {} if value is None else {"TRACKGATE_PUBLISH_LINGER_ABOVE_CPU_PCT": value}
    assert settings_from_env(env).publish_linger_above_cpu_pct == pct


@pytest.mark.parametrize("prefix", ["t", "/t/", "/", "/t?x", "/a b", "//t"])
def test_first_party_prefix_must_be_a_plain_path(prefix):
    with pytest.raises(ValueError, match="TRACKGATE_FIRST_PARTY_PREFIX"):
        settings_from_env({"TRACKGATE_FIRST_PARTY_PREFIX": prefix})


@pytest.mark.parametrize("prefix", ["/t", "/collect/v2", "/_a.b-c"])
def test_first_party_prefix(prefix):
    assert settings_from_env({"TRACKGATE_FIRST_PARTY_PREFIX": prefix}).first_party_prefix == prefix
