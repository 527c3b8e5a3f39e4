"""Plain helpers the tests share, imported directly (``from tests.helpers import stored``); the fixtures
are in the ``conftest.py`` files.

What was stored or queued, the real gateway on a free port, the events and batches several test files
build, and what the forwarding tests inject (the secret key, the clock, RQ's scheduler at that clock).
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
import redis
from click.testing import Result
from psycopg.conninfo import make_conninfo
from rq import Queue
from rq.registry import ScheduledJobRegistry

from trackgate.gateway.app import create_app
from trackgate.migrate import migrate
from trackgate.schemas.destinations import FORWARD_QUEUE
from trackgate.schemas.event import Context, Event
from trackgate.schemas.jobs import PERSIST_QUEUE, MsgspecJSONSerializer, RefusedItem
from trackgate.schemas.request import Source
from trackgate.schemas.settings import ServerSettings
from trackgate.workers import store
from trackgate.workers.forward.outbox import EVENT_COLUMNS

# --- what was stored or queued --------------------------------------------------------------------------


def stored(db: psycopg.Connection, where: str = "TRUE", params: tuple = ()) -> list[dict]:
    """The stored events' rows by field, as readers see them (``store.row_fields``: the enrichment's
    columns folded back into ``enrichment``)."""
    cur = db.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY id", params)
    return [store.row_fields(row) for row in cur.fetchall()]


def id_of(source: Source | None) -> str | None:
    """The id of a source a lookup found, None when it found none."""
    return source.id if source is not None else None


def queued_jobs(rdb: redis.Redis) -> int:
    return rdb.llen(f"rq:queue:{PERSIST_QUEUE}")


class Cli(Protocol):
    """The ``cli`` fixture (tests/conftest.py): ``cli("sources", "list", ok=True).output``."""

    def __call__(self, *args: str, input: str | None = None, ok: bool = False) -> Result: ...


# --- the real gateway -----------------------------------------------------------------------------------


@contextmanager
def fresh_database(admin_url: str, prefix: str, before: str | None = None) -> Iterator[str]:
    """A database of its own on the test server, migrated (up to the migration ``before``, when given),
    dropped afterwards; yields its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    try:
        migrate(url, before=before)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    """``check()``'s first truthy answer, polled every 0.1 s; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_gateway(settings: ServerSettings) -> Iterator[str]:
    """The real gateway on uvicorn (uvloop, httptools) in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        http="httptools",
        log_level="warning",
        proxy_headers=False,  # as `trackgate serve` runs it: TRACKGATE_TRUSTED_PROXIES decides
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- events, refused items, batches ---------------------------------------------------------------------

RECEIVED_AT = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


def make_event(
    message_id: str, *, source_id: str = "src_a", received_at: datetime = RECEIVED_AT, **fields
) -> Event:
    """A canonical Segment track as the adapter makes it (``fields`` set or override the rest)."""
    return Event(
        id=fields.pop("id", f"01890000-0000-7000-8000-{abs(hash((source_id, message_id))) % 10**12:012d}"),
        message_id=message_id,
        source_id=source_id,
        dialect="segment",
        type=fields.pop("type", "track"),
        name=fields.pop("name", "Signed Up"),
        user_id=fields.pop("user_id", "u1"),
        context=fields.pop("context", Context(ip="203.0.113.9")),
        timestamp=received_at,
        received_at=received_at,
        raw='{"event":"Signed Up"}',
        **fields,
    )


def refused_item(
    key: str, raw: str, *, source_id: str = "src_ca", index: int = 0, code: str = "missing_event_id"
) -> RefusedItem:
    """A Commanders Act v2 item the adapter refused, as the gateway hands it to the workers."""
    return RefusedItem(
        key=key,
        source_id=source_id,
        dialect="commandersact",
        version="v2",
        index=index,
        code=code,
        reason=f"{code} (as an older rule said)",
        raw=raw,
        request_id="req-1",
        received_at=RECEIVED_AT,
    )


def rows(db: psycopg.Connection) -> list[dict]:
    """The quarantine table, oldest first."""
    cur = db.execute("SELECT * FROM quarantine ORDER BY id")
    names = [c.name for c in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def batch(prefix: str, n: int, **extra) -> dict:
    """A Segment ``/v1/batch`` body of ``n`` tracks whose message ids are ``<prefix>-<i>``."""
    return {
        "batch": [
            {
                "type": "track",
                "userId": f"u{i}",
                "event": "Order Completed",
                "messageId": f"{prefix}-{i}",
                "properties": {"revenue": i},
                **extra,
            }
            for i in range(n)
        ]
    }


def ingest(client, write_key, drain, body: dict) -> None:
    """Post a batch; ``drain`` stores it (None: the caller drains once for several posts)."""
    r = client.post("/v1/batch", json=body, auth=(write_key, ""))
    assert r.status_code == 200, r.text
    if drain is not None:
        drain()


# TinyTrail's documented page view (seeds/tinytrail-api.md, "Event Collection")
SEED_WEBSITE = "550e8400-e29b-41d4-a716-446655440000"
SEED_PAGE_VIEW = {
    "website_id": SEED_WEBSITE,
    "event_type": "page_view",
    "url": "https://example.com/blog/post-1?utm_source=twitter",
    "path": "/blog/post-1",
    "referrer": "https://t.co/abc123",
    "screen_width": 1920,
    "screen_height": 1080,
}


# --- forwarding: the secret key, the injected clock, RQ's scheduler at that clock -------------------------

SECRET_KEY = "test-secret-key-that-is-long-and-random-enough"
T0 = 1_900_000_000.0  # a fixed start for the injected clock
HOOK = "https://hooks.example.com/trackgate"


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def sent_ids(route, key: str = "events", field: str = "message_id") -> list[str]:
    """The ids a respx route was sent in the requests it answered 200."""
    ids = []
    for call in route.calls:
        if call.optional_response is not None and call.optional_response.status_code == 200:
            ids += [item[field] for item in json.loads(call.request.content)[key]]
    return ids


def next_scheduled(registry: ScheduledJobRegistry) -> float | None:
    first = registry.connection.zrange(registry.key, 0, 0, withscores=True)
    return float(first[0][1]) if first else None


def release_due(registry: ScheduledJobRegistry, now: float) -> int:
    """What RQ's scheduler does, at the injected time: move the jobs due by ``now`` to the queue."""
    from rq.job import Job

    queue = Queue(FORWARD_QUEUE, connection=registry.connection, serializer=MsgspecJSONSerializer)
    ids = registry.get_jobs_to_schedule(int(now))
    for job in Job.fetch_many(ids, connection=registry.connection, serializer=MsgspecJSONSerializer):
        if job is not None:
            queue._enqueue_job(job)
            registry.remove(job.id)
    return len(ids)


# --- browsers -------------------------------------------------------------------------------------------


def console_errors(driver: Any) -> list[str]:
    """A Chromium page's console messages at SEVERE level (errors, failed requests) since the last call
    (the ``chromium`` fixture in tests/e2e/conftest.py keeps them)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# --- the TinyTrail API (issue 12) ---------------------------------------------------------------------------

GOLDEN_API = Path(__file__).parent / "golden" / "tinytrail_api"


def shape(value: Any) -> Any:
    """The shape of a JSON value: objects by their keys, arrays by their first item, scalars by type
    (an integer and a float are both a number; null is its own type)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def golden_api(route: str) -> dict:
    """The document's example answer of ``route`` (tests/golden/tinytrail_api/<route>.json)."""
    return json.loads((GOLDEN_API / f"{route}.json").read_text())


def misfits(value: Any, example: Any, where: str = "$") -> list[str]:
    """Where ``value`` differs in shape from the document's ``example``: an object's set of keys, a
    scalar's type; every item of an array against the example's first item (an empty example array
    takes any array)."""
    if isinstance(example, dict):
        if not isinstance(value, dict):
            return [f"{where}: {shape(value)} instead of an object"]
        if set(value) != set(example):
            return [f"{where}: keys {sorted(value)} instead of {sorted(example)}"]
        return [m for key in example for m in misfits(value[key], example[key], f"{where}.{key}")]
    if isinstance(example, list):
        if not isinstance(value, list):
            return [f"{where}: {shape(value)} instead of an array"]
        if not example:
            return []
        return [m for i, item in enumerate(value) for m in misfits(item, example[0], f"{where}[{i}]")]
    if shape(value) != shape(example):
        return [f"{where}: {shape(value)} instead of {shape(example)}"]
    return []


def assert_document_shape(route: str, body: dict) -> None:
    """``body`` has the keys and value types of the document's example of ``route``."""
    assert misfits(body, golden_api(route)) == [], body


def new_account(db: psycopg.Connection, name: str) -> str:
    """An account as the API makes one (its id is its workspace)."""
    import uuid

    account_id = str(uuid.uuid4())
    db.execute(
        "INSERT INTO accounts (id, name, workspace) VALUES (%s, %s, %s)", (account_id, name, account_id)
    )
    return account_id
