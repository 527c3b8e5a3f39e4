"""The forward package's per-process clients follow the settings they are asked with."""

from __future__ import annotations

import msgspec

from trackgate.workers.forward import resources


def test_a_redis_client_is_for_the_url_it_was_asked_for(settings, rdb):
    resources.reset()
    try:
        first = resources.redis_connection(settings)
        assert resources.redis_connection(settings) is first  # kept while the URL is the same
        other_url = settings.redis_url.rsplit("/", 1)[0] + "/15"
        other = resources.redis_connection(msgspec.structs.replace(settings, redis_url=other_url))
        assert other.connection_pool.connection_kwargs["db"] == 15
        assert first.connection_pool.connection_kwargs["db"] != 15
    finally:
        resources.reset()
