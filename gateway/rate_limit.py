"""Fixed-window rate limits counted in Redis, so every gateway process shares one count: TinyTrail's
collect (10 requests per 10 s per IP) and the TinyTrail API (60 requests per 60 s per API key).

One atomic script per request: ``INCR`` the window's counter, and set its expiry on the first hit of a
window; past the limit the request is answered 429 with ``Retry-After`` = the seconds left in the window.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from trackgate.gateway.errors import RateLimited, Unavailable

_RATE_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""
_RATE_SHA = hashlib.sha1(_RATE_SCRIPT.encode()).hexdigest()


async def count(redis: Any, key: str, window_ms: int) -> tuple[int, int]:
    """One atomic INCR (+ PEXPIRE on the first hit of a window): the count so far and the ms left."""
    try:
        n, ttl = await redis.evalsha(_RATE_SHA, 1, key, window_ms)
    except NoScriptError:
        n, ttl = await redis.eval(_RATE_SCRIPT, 1, key, window_ms)
    return int(n), int(ttl)


async def hit(redis: Any, key: str, *, limit: int, window_seconds: int, timeout: float) -> None:
    """Count one request against ``key``'s window; ``RateLimited`` (429, ``Retry-After``) past
    ``limit``; ``Unavailable`` (503) when Redis does not answer within ``timeout``. ``limit`` 0: no
    limit, nothing counted."""
    if not limit:
        return
    try:
        async with asyncio.timeout(timeout):
            n, ttl = await count(redis, key, window_seconds * 1000)
    except (RedisError, OSError, TimeoutError) as exc:
        raise Unavailable("Redis is unavailable; retry") from exc
    if n > limit:
        raise RateLimited(
            f"rate limit exceeded: {limit} requests per {window_seconds} seconds",
            retry_after=max(1, math.ceil(ttl / 1000)),
        )
