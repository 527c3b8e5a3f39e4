"""``trackgate destinations test``: one synthetic event sent to a destination, the way a forward job
sends it (its dialect's encoder, its transport, its credentials), and the destination's answer.

Nothing is recorded: no delivery, no hold, no dead letter; a paused destination is tried too.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import msgspec
import psycopg
import uuid_utils

from trackgate.adapters import transports
from trackgate.adapters.registry import ADAPTERS
from trackgate.schemas.event import Context, Event, Library
from trackgate.schemas.settings import Settings
from trackgate.workers import destinations as destination_table
from trackgate.workers.forward.delivery import ERROR_BODY_CHARS


class TrialAnswer(msgspec.Struct, kw_only=True):
    destination_id: str
    url: str
    ok: bool
    status: int | None
    body: str
    error: str
    seconds: float


def synthetic_event(source_id: str = "src_trackgate_test", now: datetime | None = None) -> Event:
    """A track event named ``trackgate test`` that says what it is."""
    now = now or datetime.now(UTC)
    event_id = str(uuid_utils.uuid7())
    return Event(
        id=event_id,
        message_id=f"trackgate-test-{event_id}",
        source_id=source_id,
        dialect="segment",
        type="track",
        name="trackgate test",
        user_id="trackgate-test-user",
        anonymous_id="trackgate-test-anonymous",
        properties={"test": True, "sent_by": "trackgate destinations test"},
        context=Context(library=Library(name="trackgate", version="test")),
        timestamp=now,
        received_at=now,
        raw="{}",
    )


def try_destination(database_url: str, settings: Settings, ref: str) -> TrialAnswer:
    """Send :func:`synthetic_event` to destination ``ref`` (id or name); ``DestinationError`` if there
    is none, ``SecretKeyMissing`` if its credentials cannot be read."""
    with psycopg.connect(database_url) as conn:
        destination = destination_table.load(conn, settings.secret_key, destination_table.resolve(conn, ref))
    if destination is None:
        raise destination_table.DestinationError(f"no destination {ref!r}")
    transport = transports.TRANSPORTS[destination.kind]
    items = transports.encode(transport, ADAPTERS, [synthetic_event()])
    part = transports.plan(transport, items)[0]
    request = transports.render(transport, destination.base_url, destination.credentials, part, time.time())
    timeout = httpx.Timeout(settings.forward_read_timeout, connect=settings.forward_connect_timeout)
    started = time.monotonic()
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        try:
            response = client.request(
                request.method, request.url, headers=request.headers, content=request.content
            )
        except httpx.HTTPError as exc:
            return TrialAnswer(
                destination_id=destination.id,
                url=request.url,
                ok=False,
                status=None,
                body="",
                error=f"{type(exc).__name__}: {exc}"[:500],
                seconds=time.monotonic() - started,
            )
    return TrialAnswer(
        destination_id=destination.id,
        url=request.url,
        ok=transport.success(response.status_code, response.content),
        status=response.status_code,
        body=response.content[:ERROR_BODY_CHARS].decode("utf-8", "replace"),
        error="",
        seconds=time.monotonic() - started,
    )
