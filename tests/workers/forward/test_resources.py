"""The forward package's per-process clients follow the settings they are asked with."""

from __future__ import annotations

import msgspec

from trackgate.workers.forward import resources


def test_a_redis_client_is_for_the_url_it_was_asked_for(settings, rdb):
    resources.reset()
    try:
        first = resources.redis_connection(settings)
        assert resources.redis_connection(settings) is first  # kept while the URL is the same
        # another Redis (a client connects at its first command: none is sent here)
        other_url = "redis://127.0.0.1:1/3"
        other = resources.redis_connection(msgspec.structs.replace(settings, redis_url=other_url))
        assert other is not first
        assert (
            other.connection_pool.connection_kwargs["port"],
            other.connection_pool.connection_kwargs["db"],
        ) == (1, 3)
        assert resources.redis_connection(settings) is not other  # and back
    finally:
        resources.reset()
