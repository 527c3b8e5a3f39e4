"""``ingest.BodyReader``: a body that came whole in one message is taken as is; every other body goes
through ``read_body``; both give ``read_body``'s answer (bytes, or its error) and count the bytes sent."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import pytest

from trackgate.gateway.body import read_body
from trackgate.gateway.errors import BodyTooLarge, InvalidBody
from trackgate.gateway.ingest import BodyReader, ClientDisconnected

CAP = 100


def _receiver(messages: list[dict]):
    queue = list(messages)

    async def receive() -> dict:
        return queue.pop(0)

    return receive


def _messages(chunks: list[bytes]) -> list[dict]:
    return [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]


async def _chunks(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _outcome(coro) -> object:
    try:
        return asyncio.run(coro)
    except (BodyTooLarge, InvalidBody) as exc:
        return (type(exc), str(exc))


@pytest.mark.parametrize(
    ("chunks", "content_length"),
    [
        ([b'{"a":1}'], "7"),
        ([b'{"a":1}'], None),
        ([b""], "0"),
        ([b'{"a":', b"1}"], None),
        ([b"x" * 101], None),  # over the cap in one message
        ([b"x" * 60, b"x" * 60], None),  # over the cap across two
        ([b'{"a":1}'], "1000"),  # a Content-Length over the cap is refused whatever came
        ([b'{"a":1}'], "abc"),
        ([gzip.compress(b'{"a":1}')], None),
        ([gzip.compress(b"x" * 1000)], None),  # inflates past the cap
        ([b"\x1f\x8bnot gzip"], None),
    ],
)
def test_the_reader_answers_as_read_body_does(chunks, content_length):
    reader = BodyReader(_receiver(_messages(chunks)))
    got = _outcome(reader.read(CAP, content_length))
    expected = _outcome(read_body(_chunks(chunks), CAP, content_length))
    assert got == expected
    if not isinstance(expected, tuple) or content_length != "1000":
        assert reader.received == sum(map(len, chunks)) or isinstance(expected, tuple)


def test_a_client_that_disconnects_is_told_apart():
    for messages in (
        [{"type": "http.disconnect"}],
        [*_messages([b"{", b"}"])[:1], {"type": "http.disconnect"}],
    ):
        reader = BodyReader(_receiver(messages))
        with pytest.raises(ClientDisconnected):
            asyncio.run(reader.read(CAP, None))
