"""Reading a request body: a hard size cap, a deadline, and gzip detected by its magic bytes and
inflated in bounded steps, so neither a huge body, a gzip bomb nor a client that sends its body a
byte at a time holds the gateway's memory or a connection for long."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

from trackgate.gateway.errors import BodyTooLarge, GatewayError, InvalidBody

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 64 * 1024


class RequestTimeout(GatewayError):
    """The client did not send its whole body in time (``TRACKGATE_HTTP_BODY_TIMEOUT_SECONDS``);
    nothing was stored. The connection is closed after the answer: the rest of the body may still come."""

    status = 408
    code = "request_timeout"

    def __init__(self, message: str):
        super().__init__(message, headers={"Connection": "close"})


async def read_body(
    stream: AsyncIterator[bytes], cap: int, content_length: str | None = None, timeout: float | None = None
) -> bytes:
    """The body, inflated if it is gzip, refused as soon as it passes ``cap`` bytes (either form), or
    with ``RequestTimeout`` (408) when it has not all arrived within ``timeout`` seconds.

    Works for chunked bodies with no Content-Length; a Content-Length over the cap is refused before
    anything is read.
    """
    if content_length is not None and content_length.isdigit() and int(content_length) > cap:
        raise BodyTooLarge(f"request body is {content_length} bytes, over the {cap}-byte limit")
    if timeout is None:
        body = await _receive(stream, cap)
    else:
        try:
            async with asyncio.timeout(timeout):
                body = await _receive(stream, cap)
        except TimeoutError:
            raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
    if body[:2] == GZIP_MAGIC:
        return inflate(body, cap)
    return body


async def _receive(stream: AsyncIterator[bytes], cap: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in stream:
        if not chunk:
            continue
        size += len(chunk)
        if size > cap:
            raise BodyTooLarge(f"request body is over the {cap}-byte limit")
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def inflate(data: bytes, cap: int) -> bytes:
    """gunzip ``data`` (concatenated members allowed), never producing more than ``cap`` bytes."""
    out: list[bytes] = []
    size = 0
    while data:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            while True:
                piece = inflater.decompress(data, _CHUNK)
                size += len(piece)
                if size > cap:
                    raise BodyTooLarge(f"inflated request body is over the {cap}-byte limit")
                out.append(piece)
                data = inflater.unconsumed_tail
                if inflater.eof or not (data or piece):
                    break
        except zlib.error as exc:
            raise InvalidBody(f"request body is not valid gzip: {exc}") from exc
        if not inflater.eof:
            raise InvalidBody("request body is truncated gzip")
        data = inflater.unused_data.lstrip(b"\x00")
    return b"".join(out)
