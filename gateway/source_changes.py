"""Sources and API keys take effect at once: a change to the sources tables (or a revoked or deleted API
key) is announced on Redis pub/sub, and every gateway process reloads its source table
(``SourceCache.load``) and forgets its cached API-key answers when it hears one, then says so.

The announcer (``trackgate.sources.announce_change``, after its transaction commits) publishes a nonce
on :func:`channel`; ``PUBLISH`` returns how many gateway processes listen, and each pushes the nonce's
acknowledgement (:func:`ack_key`) once its table is reloaded, so the command returns only when every
gateway answers with the new table: a key added works, and a disabled or replaced one fails, on the
next request. The listener is a background task beside the periodic refresh, which stays the
fallback (a gateway that misses a message, or a Redis that is away, still catches up within
``source_refresh_seconds``); the accept path never waits on it.

Pub/sub channels are shared by every database of a Redis server: the channel carries the database
number, so gateways of another installation on the same server (another db) are not counted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

import psycopg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from trackgate.gateway.auth import SourceCache

log = logging.getLogger(__name__)

ACK_TTL_SECONDS = 30
ANNOUNCE_TIMEOUT_SECONDS = 3.0
RECONNECT_SECONDS = 1.0


def channel(db: int) -> str:
    return f"trackgate:sources:changed:{db}"


def ack_key(nonce: str) -> str:
    return f"trackgate:sources:ack:{nonce}"


async def listen(redis_url: str, sources: SourceCache, forget: Callable[[], None] | None = None) -> None:
    """Reload ``sources`` (and call ``forget``: the API keys' cache) on every announcement, forever (a
    lifespan task); reconnects when Redis goes away, and reloads then too, since an announcement may
    have been missed meanwhile."""
    # its own client: no read timeout while idle, unlike the publisher's
    client = aioredis.from_url(redis_url, socket_connect_timeout=5, health_check_interval=30)
    db = int(client.connection_pool.connection_kwargs.get("db", 0) or 0)
    name = channel(db)
    try:
        missed = False
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(name)
                if missed:
                    log.info("sources_listener_reconnected")
                    if forget is not None:
                        forget()
                    missed = not await _reload(sources)
                async for message in pubsub.listen():
                    nonce = message["data"].decode()
                    if forget is not None:
                        forget()
                    if not await _reload(sources):
                        continue  # unconfirmed: the announcer says this gateway may lag
                    async with client.pipeline(transaction=False) as pipe:
                        pipe.rpush(ack_key(nonce), 1)
                        pipe.expire(ack_key(nonce), ACK_TTL_SECONDS)
                        await pipe.execute()
            except (RedisError, OSError) as exc:
                _reraise_if_cancelled()  # a cancellation redis-py turned into an error: stop, as asked
                # once per outage, not once a second while Redis is away
                (log.debug if missed else log.warning)("sources_listener_disconnected error=%r", exc)
                missed = True
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                await pubsub.aclose()
    finally:
        await client.aclose()


async def announce(client: aioredis.Redis, timeout: float = ANNOUNCE_TIMEOUT_SECONDS) -> tuple[int, int]:
    """What ``trackgate.sources.announce_change`` does, from a gateway (the TinyTrail API's website
    changes) on its asyncio client: publish a nonce and wait (``timeout`` at most) until every gateway
    that heard it has reloaded. Returns (heard, confirmed); (0, 0) when Redis does not answer (the
    periodic refresh catches up)."""
    nonce = secrets.token_hex(12)
    db = int(client.connection_pool.connection_kwargs.get("db", 0) or 0)
    try:
        listening = int(await client.publish(channel(db), nonce))
        confirmed = 0
        deadline = time.monotonic() + timeout
        while confirmed < listening:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # short waits: the client's socket timeout is the gateway's Redis timeout
            if await client.blpop([ack_key(nonce)], timeout=min(1.0, remaining)) is not None:
                confirmed += 1
        await client.delete(ack_key(nonce))
        return listening, confirmed
    except (RedisError, OSError) as exc:
        log.warning("sources_announce_failed error=%r (the periodic refresh catches up)", exc)
        return 0, 0


async def changed(
    sources: SourceCache, client: aioredis.Redis | None, forget: Callable[[], None] | None = None
) -> None:
    """This process's table reloaded (and ``forget`` called: the API keys' cache) now, and every other
    gateway told, whose listener does the same (the TinyTrail API's website changes: a new website
    collects, a deleted one is dropped, on the next request anywhere; a deleted user's or account's
    keys fail at once). A failed reload here is left to the listener and the periodic refresh."""
    if forget is not None:
        forget()
    await _reload(sources)
    if client is not None:
        await announce(client)


def _reraise_if_cancelled() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _reload(sources: SourceCache) -> bool:
    try:
        n = await sources.load()
    except (psycopg.Error, OSError, TimeoutError) as exc:
        log.warning("sources_reload_failed error=%r (the periodic refresh retries)", exc)
        return False
    log.debug("sources_reloaded reason=announced n_sources=%d", n)
    return True
