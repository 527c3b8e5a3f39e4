"""The publisher's Redis connection: its one Lua script per flush, written on a connection of its own.

Through redis-py's client a command costs ~170k instructions of Python (callgrind; ~225k with a socket
timeout) besides its round trip: the pool's lock, the retry wrapper, response callbacks, observability
hooks. The publisher sends one command per flush, one flush at a time, so :class:`ScriptConnection`
keeps one redis-py ``Connection`` (its packing, parser, connect and error types) and sends
``EVALSHA``/``EVAL`` on it directly. ``info`` and ``time`` (read once at start-up) go through a
regular client.

It has no socket timeout: the publisher bounds each write itself (``asyncio.timeout``). A connection
that fails or is cancelled mid-command is closed (its reply could still come and answer the next
command); the next command connects again. A connection found dead when a command starts (Redis
restarted since the last flush) is retried once on a new one, as redis-py's client retries: the
script's deadline still keeps a late write out.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError


class ScriptConnection:
    def __init__(self, url: str, *, connect_timeout: float | None = None) -> None:
        self._client = aioredis.from_url(url, socket_connect_timeout=connect_timeout)
        self._conn = self._client.connection_pool.make_connection()

    async def info(self, section: str) -> dict[str, Any]:
        return await self._client.info(section)

    async def time(self) -> tuple[int, int]:
        return await self._client.time()

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        return await self._call("EVALSHA", sha, numkeys, *args)

    async def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        return await self._call("EVAL", script, numkeys, *args)

    async def _call(self, *args: Any) -> Any:
        conn = self._conn
        packed = conn.pack_command(*args)
        if not conn.is_connected:
            return await self._once(packed)
        try:
            return await self._once(packed)
        except ConnectionError:  # dead since the last command: once more, on a new connection
            return await self._once(packed)

    async def _once(self, packed: list[bytes]) -> Any:
        conn = self._conn
        try:
            await conn.send_packed_command(packed, check_health=False)
            return await conn.read_response()
        except ResponseError:  # Redis answered (NOSCRIPT, a wrong type): the connection is fine
            raise
        except BaseException:  # failed or cancelled mid-command: its reply must not answer the next
            await conn.disconnect(nowait=True)
            raise

    async def aclose(self) -> None:
        await self._conn.disconnect()
        await self._client.aclose()
