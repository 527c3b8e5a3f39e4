"""Scripts served to browsers (gateway/scripts.py): analytics.js and its chunks, TinyTrail's tracker;
compressed by what the client accepts, each encoding with its own ETag, 304 on a match."""

from __future__ import annotations

import gzip
from pathlib import Path

import brotli
import pytest

from trackgate.gateway.scripts import accepted

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "static"
ANALYTICS = STATIC / "segment" / "analytics.min.js"
CHUNK = next((STATIC / "segment").glob("tsub-middleware.bundle.*.js"))


@pytest.mark.parametrize("cdn", ["", "/segment"])
def test_analytics_js_is_the_packaged_bundle_in_every_encoding(client, cdn):
    path = f"{cdn}/analytics.js/v1/wk_any/analytics.min.js"
    original = ANALYTICS.read_bytes()
    tags = set()
    for asked, encoding in (("identity", None), ("gzip, deflate", "gzip"), ("gzip, deflate, br", "br")):
        r = client.get(path, headers={"Accept-Encoding": asked})
        assert r.status_code == 200
        assert r.headers.get("content-encoding") == encoding
        assert r.content == original  # httpx decoded gzip and br
        assert r.headers["content-type"].startswith("application/javascript")
        assert r.headers["cache-control"] == "public, max-age=3600"
        assert r.headers["vary"] == "Accept-Encoding"
        tags.add(r.headers["etag"])
    assert len(tags) == 3  # one strong ETag per representation
    assert b"analytics-next/bundles/" in original  # where it loads its chunks from: served below


def test_compressed_bodies_are_smaller_and_valid():
    from trackgate.gateway.scripts import packaged

    script = packaged("segment/analytics.min.js")
    raw = script.bodies["identity"]
    assert gzip.decompress(script.bodies["gzip"]) == raw
    assert brotli.decompress(script.bodies["br"]) == raw
    assert len(script.bodies["br"]) < len(script.bodies["gzip"]) < len(raw) / 3


def test_warm_compresses_every_packaged_script():
    from trackgate.gateway.scripts import packaged, warm

    files = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*.js"))
    assert "segment/analytics.min.js" in files and "openpanel/op1.js" in files and "tracker.js" in files
    assert warm() == len(files)
    hits = packaged.cache_info().hits
    for name in files:
        packaged(name)
    assert packaged.cache_info().hits == hits + len(files)  # all compressed already


def test_if_none_match_is_304_per_encoding(client):
    path = "/analytics.js/v1/wk_any/analytics.min.js"
    first = client.get(path, headers={"Accept-Encoding": "gzip"})
    etag = first.headers["etag"]
    again = client.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag and again.headers["cache-control"] == "public, max-age=3600"
    weak = client.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304
    # the gzip tag does not validate the brotli body
    other = client.get(path, headers={"Accept-Encoding": "br", "If-None-Match": etag})
    assert other.status_code == 200 and other.headers["content-encoding"] == "br"


def test_chunks_are_immutable_and_unknown_ones_404(client):
    r = client.get(f"/analytics-next/bundles/{CHUNK.name}", headers={"Accept-Encoding": "br"})
    assert r.status_code == 200
    assert r.content == CHUNK.read_bytes()
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    for name in ("nope.bundle.0123abcd.js", "..%2F..%2Fapp.py", "update.sh", "LICENSE.MD"):
        assert client.get(f"/analytics-next/bundles/{name}").status_code == 404


@pytest.mark.parametrize("path", ["/op1.js", "/openpanel/op1.js"])
def test_openpanel_op1_js(client, path):
    r = client.get(path, headers={"Accept-Encoding": "br"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "br"
    assert r.content == (STATIC / "openpanel" / "op1.js").read_bytes()
    assert r.headers["cache-control"] == "public, max-age=3600"


def test_tracker_js_is_compressed_too(client):
    r = client.get("/js/tracker.js", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.content == (STATIC / "tracker.js").read_bytes()
    assert r.headers["cache-control"] == "public, max-age=86400"
    plain = client.get("/js/tracker.js", headers={"Accept-Encoding": "identity"})
    assert (
        client.get(
            "/js/tracker.js", headers={"If-None-Match": plain.headers["etag"], "Accept-Encoding": "identity"}
        ).status_code
        == 304
    )


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("", "identity"),
        ("identity", "identity"),
        ("gzip", "gzip"),
        ("GZIP, deflate", "gzip"),
        ("gzip, deflate, br, zstd", "br"),
        ("br;q=0, gzip;q=0.5", "gzip"),
        ("br;q=0.1", "br"),
        ("gzip;q=0", "identity"),
        ("gzip;q=bogus", "identity"),
        ("deflate", "identity"),
    ],
)
def test_accept_encoding(header, chosen):
    assert accepted(header) == chosen
