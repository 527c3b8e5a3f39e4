"""Scripts served to browsers (TinyTrail's tracker, Segment's analytics.js and its chunks, OpenPanel's
op1.js): read once from the package, compressed once (gzip, and brotli), each encoding with its own strong
ETag; a matching ``If-None-Match`` is answered 304. ``warm`` does the compressing (~0.2 s of CPU, most of
it analytics.js at brotli's best) in a thread when a gateway starts, so no request waits for it."""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources.abc import Traversable

import brotli
from starlette.requests import Request
from starlette.responses import Response

SHORT = "public, max-age=3600"
"""A script whose name stays the same across versions: caches revalidate it hourly (ETag)."""
IMMUTABLE = "public, max-age=31536000, immutable"
"""A script whose name carries its content hash."""

ENCODINGS = ("br", "gzip")
"""Preferred first, when the client accepts both."""


@dataclass(frozen=True, slots=True)
class Script:
    bodies: dict[str, bytes]
    """Encoding (``identity``, ``gzip``, ``br``) -> body."""
    etags: dict[str, str]

    @classmethod
    def of(cls, body: bytes) -> Script:
        bodies = {
            "identity": body,
            "gzip": gzip.compress(body, compresslevel=9, mtime=0),
            "br": brotli.compress(body, mode=brotli.MODE_TEXT, quality=11),
        }
        digest = hashlib.sha256(body).hexdigest()[:32]
        etags = {
            encoding: f'"{digest}"' if encoding == "identity" else f'"{digest}-{encoding}"'
            for encoding in bodies
        }
        return cls(bodies=bodies, etags=etags)

    @property
    def version(self) -> str:
        """A short digest of the body: what a URL that names this version carries (``?v=``)."""
        return self.etags["identity"].strip('"')[:12]


def _static() -> Traversable:
    return importlib.resources.files("trackgate.gateway").joinpath("static")


@lru_cache(maxsize=64)
def packaged(path: str) -> Script:
    """``gateway/static/<path>``, loaded and compressed on first use (``FileNotFoundError`` if absent)."""
    return Script.of(_static().joinpath(path).read_bytes())


def warm() -> int:
    """Load and compress every packaged ``.js`` (the static folder and its subfolders); returns how many."""
    n = 0
    for folder in (_static(), *(entry for entry in _static().iterdir() if entry.is_dir())):
        prefix = "" if folder.name == "static" else folder.name + "/"
        for entry in folder.iterdir():
            if entry.name.endswith(".js") and entry.is_file():
                packaged(prefix + entry.name)
                n += 1
    return n


def accepted(accept_encoding: str) -> str:
    """The encoding to send: the first of ``ENCODINGS`` the ``Accept-Encoding`` header admits (q > 0),
    else ``identity``."""
    admitted: set[str] = set()
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            admitted.add(coding.strip())
    for encoding in ENCODINGS:
        if encoding in admitted:
            return encoding
    return "identity"


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


JAVASCRIPT = "application/javascript; charset=utf-8"


def script_response(
    request: Request, script: Script, cache_control: str = SHORT, media_type: str = JAVASCRIPT
) -> Response:
    encoding = accepted(request.headers.get("accept-encoding", ""))
    etag = script.etags[encoding]
    headers = {"ETag": etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    if encoding != "identity":
        headers["Content-Encoding"] = encoding
    return Response(script.bodies[encoding], media_type=media_type, headers=headers)
