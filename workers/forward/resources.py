"""What a forwarding process holds across jobs: its httpx client, its Redis connection, the forward
queue, the clock and the jitter, and the short-lived cache of destinations fan-out reads.

One place for process state: tests move ``clock``/``rng`` and call :func:`reset` here.
"""

from __future__ import annotations

import random
import time

import httpx
import psycopg
import redis
from rq import Queue

from trackgate.schemas.destinations import FORWARD_QUEUE, Destination
from trackgate.schemas.jobs import MsgspecJSONSerializer
from trackgate.schemas.settings import Settings
from trackgate.workers import destinations as destination_table

clock = time.time
rng = random.Random()

DESTINATION_CACHE_SECONDS = 2.0

_http: httpx.Client | None = None
_redis: redis.Redis | None = None
_redis_url: str | None = None
_cache: tuple[float, list[Destination]] | None = None


def http_client(settings: Settings) -> httpx.Client:
    """One client per worker process: connections to each destination are reused across jobs."""
    global _http
    if _http is None:
        _http = httpx.Client(
            timeout=httpx.Timeout(
                settings.forward_read_timeout,
                connect=settings.forward_connect_timeout,
            ),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            follow_redirects=False,
        )
    return _http


def redis_connection(settings: Settings) -> redis.Redis:
    """The process's Redis client for ``settings.redis_url``: a new one when the URL is not the one the
    kept client was made for (a process given other settings must not queue into the first Redis)."""
    global _redis, _redis_url
    if not settings.redis_url:
        raise ValueError("TRACKGATE_REDIS_URL is not set")
    if _redis is None or _redis_url != settings.redis_url:
        _redis = redis.Redis.from_url(settings.redis_url)
        _redis_url = settings.redis_url
    return _redis


def forward_queue(connection: redis.Redis) -> Queue:
    return Queue(FORWARD_QUEUE, connection=connection, serializer=MsgspecJSONSerializer)


def destinations(conn: psycopg.Connection) -> list[Destination]:
    """Every destination (paused ones too: their deliveries wait), re-read every couple of seconds.
    Credentials stay encrypted here: fan-out never needs them (only the forward job decrypts)."""
    global _cache
    now = time.monotonic()
    if _cache is not None and now - _cache[0] < DESTINATION_CACHE_SECONDS:
        return _cache[1]
    loaded = destination_table.load_all(conn)
    _cache = (now, loaded)
    return loaded


def forget_destinations() -> None:
    """Drop the cached destinations (one was added or removed)."""
    global _cache
    _cache = None


def reset() -> None:
    """Forget the process's clients and cached destinations (tests; a changed configuration)."""
    global _http, _redis, _redis_url, _cache
    if _http is not None:
        _http.close()
    if _redis is not None:
        _redis.close()
    _http = _redis = _redis_url = _cache = None
