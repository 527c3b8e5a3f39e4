"""``ingest.decode_headers``: the headers dict the accept path builds, the same as decoding every name and
value (latin-1, the last of a repeated name wins) whether or not they were seen before."""

from __future__ import annotations

from trackgate.gateway import ingest


def _plain(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}


RAW = [
    (b"host", b"127.0.0.1:8000"),
    (b"authorization", b"Basic d2tfMTIzOg=="),
    (b"user-agent", "Mozilla/5.0 (caf\u00e9)".encode("latin-1")),
    (b"x-bytes", bytes(range(0x80, 0x100))),  # every byte past ASCII: latin-1 maps each to one character
    (b"x-long", b"v" * (ingest.DECODED_LONGEST + 1)),  # decoded every time, never kept
    (b"x-empty", b""),
    (b"x-twice", b"first"),
    (b"x-twice", b"second"),
]


def test_headers_decode_as_latin_1_seen_before_or_not():
    ingest._DECODED.clear()
    first = ingest.decode_headers(RAW)
    again = ingest.decode_headers([(bytes(k), bytes(v)) for k, v in RAW])  # new objects, equal bytes
    assert first == again == _plain(RAW)
    assert first["x-twice"] == "second"
    assert all(len(raw) <= ingest.DECODED_LONGEST for raw in ingest._DECODED)


def test_the_remembered_texts_start_afresh_when_full():
    ingest._DECODED.clear()
    for i in range(ingest.DECODED_KEPT + 10):
        raw = [(b"x-n", str(i).encode())]
        assert ingest.decode_headers(raw) == _plain(raw)
    assert len(ingest._DECODED) <= ingest.DECODED_KEPT
