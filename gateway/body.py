"""Reading a request body: a hard size cap, gzip detected by its magic bytes and
inflated in bounded steps, so neither a huge body, a gzip bomb nor a client that sends its body a
byte at a time holds the gateway's memory or a connection for long."""

from __future__ import annotations

import itertools
import operator
import re
import zlib
from collections.abc import AsyncIterator

from trackgate.gateway.errors import BodyTooLarge, GatewayError, InvalidBody

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 64 * 1024
MAX_DEPTH = 256
"""Deepest nesting of JSON arrays and objects an event may have (200 levels inside ``properties`` are
stored: tests/gateway/test_segment_http.py). A fixed limit, far under Python's recursion limit: how
deep msgspec can go depends on the stack it is called from, and the job that carries an event is
encoded and decoded deeper, and from deeper stacks, than the gateway parsed it, so an event the gateway
took could make a 500 or a job no worker can decode (found by tests/faults/test_fuzz.py)."""
_STRINGS = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:\\?\Z|")', re.S)
"""A JSON string; one never closed runs to the end (so every quote matches: one linear pass)."""
_OPEN_IS_ONE = bytes.maketrans(b"[{]}", b"\x01\x01\x00\x00")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class RequestTimeout(GatewayError):
    """The client did not send its whole body in time (``TRACKGATE_HTTP_BODY_TIMEOUT_SECONDS``);
    nothing was stored. The connection is closed after the answer: the rest of the body may still come."""

    status = 408
    code = "request_timeout"

    def __init__(self, message: str):
        super().__init__(message, headers={"Connection": "close"})


async def read_body(stream: AsyncIterator[bytes], cap: int, content_length: str | None = None) -> bytes:
    """The body, inflated if it is gzip, refused as soon as it passes ``cap`` bytes (either form).

    Works for chunked bodies with no Content-Length; a Content-Length over the cap is refused before
    anything is read. The caller keeps the deadline (``gateway/deadlines.py``: ``RequestTimeout``).
    """
    refuse_declared(content_length, cap)
    return finished(await _receive(stream, cap), cap)


def refuse_declared(content_length: str | None, cap: int) -> None:
    """``BodyTooLarge`` for a Content-Length over ``cap``, before anything is read."""
    if content_length is not None and content_length.isdigit() and int(content_length) > cap:
        raise BodyTooLarge(f"request body is {content_length} bytes, over the {cap}-byte limit")


def finished(body: bytes, cap: int) -> bytes:
    """A received body, checked against ``cap`` and inflated if it is gzip."""
    if len(body) > cap:
        raise BodyTooLarge(f"request body is over the {cap}-byte limit")
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


def nested_deeper(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON ``text`` nests arrays and objects more than ``limit`` levels deep.

    Two counts for almost every event (fewer brackets than the limit); otherwise linear, at C speed:
    strings dropped, then the running depth (twice the openers so far, less the brackets so far)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _STRINGS.sub(b"", text.encode("utf-8", "surrogatepass")).translate(_OPEN_IS_ONE, _NOT_BRACKETS)
    opened = map(operator.mul, itertools.accumulate(brackets), itertools.repeat(2))
    return max(map(operator.sub, opened, itertools.count(1)), default=0) > limit
