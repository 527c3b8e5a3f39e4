"""The publisher's Redis connection: its one Lua script per flush, written on a connection of its own.

Through redis-py's client a command costs ~170k instructions of Python (callgrind; ~225k with a socket
timeout) besides its round trip: the pool's lock, the retry wrapper, response callbacks, observability
hooks. The publisher sends one command per flush, one flush at a time, so :class:`ScriptConnection`
keeps one redis-py ``Connection`` (its parser, connect and error types) and sends ``EVALSHA``/``EVAL``
on it directly. ``info`` and ``time`` (read once at start-up) go through a regular client.

The command is packed by hiredis (``hiredis.pack_command``, C): a flush of one job is ~48 words (the
job's hash as RQ writes it), which redis-py's packing turns into bytes word by word in Python, through
its ``Encoder``, even when hiredis is installed: ~42–48 µs a flush on this project's 2-core VM, ~6 µs
by hiredis. At full load a flush carries ~30 requests and that is ~1.5 µs a request; at half load
(bench (f)) it carried one to three on the VM where this was measured, and it was ~15–40 µs of each.

It has no socket timeout: the publisher bounds each write itself
(``publisher.FLUSH_DEADLINE_RESOLUTION``). A connection that fails or is cancelled mid-command is
closed (its reply could still come and answer the next command); the next command connects again. A
connection found dead when a command starts (Redis restarted since the last flush) is retried once on
a new one, as redis-py's client retries: the script's deadline still keeps a late write out, and the
flush's first job, looked for first, keeps a flush that ran before its reply was lost from being
written twice (``publisher._PUBLISH``).
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, DataError, ResponseError


def _unpackable(args: tuple[Any, ...]) -> Any:
    """The first word hiredis cannot pack (a bool, None, a bytearray: found by packing each alone)."""
    for arg in args:
        try:
            hiredis.pack_command((arg,))
        except TypeError:
            return arg
    return None


class ScriptConnection:
    def __init__(self, url: str, *, connect_timeout: float | None = None) -> None:
        # no socket timeout (redis-py 8 defaults to 5 s): a write under one is a task of its own
        # (``asyncio.wait_for``) and a read a timer; the publisher's deadline bounds the command
        self._client = aioredis.from_url(url, socket_timeout=None, socket_connect_timeout=connect_timeout)
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
        try:
            packed = hiredis.pack_command(args)
        except TypeError as exc:  # a value Redis has no word for: redis-py's error, naming its type
            raise DataError(f"Invalid input of type: '{type(_unpackable(args)).__name__}' ({exc})") from exc
        if not conn.is_connected:
            return await self._once(packed)
        try:
            return await self._once(packed)
        except ConnectionError:  # dead since the last command: once more, on a new connection
            return await self._once(packed)

    async def _once(self, packed: bytes) -> Any:
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
