"""Commanders Act's HTTP surface: ``POST /events`` and ``POST /events/batch`` (v2 and deprecated v1).

The vendor answers 200 to every request but a body that is too large or not JSON (400), and drops
the events it cannot take. The gateway answers the same statuses, but its 200 says what happened:
``{"accepted": n, "refused": [{"index", "code", "reason"}]}``; the refused items are kept in
quarantine (``trackgate quarantine list``) instead of being lost. A missing or unknown source key is
a 401 (the vendor's behaviour there is undocumented).
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from trackgate.adapters import commandersact
from trackgate.gateway.auth import new_key
from trackgate.gateway.dialect import Dialect
from trackgate.gateway.errors import Unauthorized
from trackgate.gateway.ingest import Accepted, Auth, AuthContext, IngestRoute, Reply
from trackgate.gateway.responses import default_error

DIALECT = "commandersact"
PREFIXES = ("", "/commandersact")

_encode = msgspec.json.encode


def authenticate(ctx: AuthContext) -> Auth[None]:
    """``Authorization: Bearer <source key>`` or, when that header is absent, ``?token=``: both are
    known before the body is read, so a bad key is refused without reading it."""
    incoming = ctx.incoming
    key = commandersact.credentials(incoming.headers, None) or incoming.query.get("token")
    if not key:
        raise Unauthorized(
            "no source key: send ?token=<source key> or Authorization: Bearer <source key>",
            code="missing_credentials",
        )
    return Auth(ctx.runtime.sources.authenticate(DIALECT, key), None)


def respond(accepted: Accepted) -> Reply:
    """200, with how many events were accepted and why each refused one was refused."""
    body = {
        "accepted": len(accepted.events),
        "refused": [{"index": r.index, "code": r.code, "reason": r.reason} for r in accepted.refused],
    }
    return Reply(200, _encode(body))


def ingest_routes() -> dict[str, IngestRoute[None]]:
    """POST /events and /events/batch, at the root (the vendor's paths) and under /commandersact."""
    paths = {
        "/events": _route("event", commandersact.MAX_EVENT_BYTES),
        "/events/batch": _route("batch", commandersact.MAX_BATCH_BYTES),
    }
    return {f"{prefix}{path}": route for prefix in PREFIXES for path, route in paths.items()}


def _route(call: str, cap: int) -> IngestRoute[None]:
    return IngestRoute(
        adapter=commandersact,
        call=call,
        cap=cap,
        authenticate=authenticate,
        respond=respond,
        partial=commandersact,
    )


def render_error(status: int, code: str, message: str, path: str | None) -> Response:
    """The default shape; Commanders Act documents 200 for everything but a request too large or not
    JSON: 400."""
    return default_error(400 if status == 413 else status, code, message, path)


def new_source(key: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """A Commanders Act source: one source key (``?token=`` or ``Authorization: Bearer``)."""
    key = key or new_key()
    return {"key": key, "extra_keys": {}, "settings": {}, "show": {"source key": key}}


def demo_lines(base: str, demo: dict[str, Any]) -> list[str]:
    """A curl line for ``up``: a v2 search event, its event id and timestamp made by the shell."""
    return [
        f"  curl -sS '{base}/events?tc_s=1&token={demo['key']}' -H 'Content-Type: application/json' "
        """-d '{"event_name":"search","search_term":"t-shirts","user":{"id":"12345"},"""
        """"context":{"event_id":"demo-'"$(date +%s%N)"'","event_timestamp":'"$(date +%s000)"'}}'"""
    ]


SPEC = Dialect(
    name=DIALECT,
    adapter=commandersact,
    ingest=ingest_routes(),
    render_error=render_error,
    new_source=new_source,
    demo_lines=demo_lines,
)
