"""The live debugger's HTTP side on a real gateway (uvicorn): the admin key traded for a token, the
Server-Sent Events stream of what the workers stored, refused requests from the gateway's error path,
and the page itself."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest

from tests.helpers import live_gateway
from trackgate import api_keys
from trackgate.gateway.debugger import KEY_CHECK_SECONDS, TOKEN_PREFIX, watch_flag
from trackgate.schemas import debug_feed
from trackgate.sources import announce_change, stored_digest
from trackgate.workers.debug_feed import WATCH

SECRET = "a-test-secret-key-that-is-long-enough"


@pytest.fixture
def admin_key(settings, db) -> str:
    return api_keys.create_key(
        msgspec.structs.replace(settings, secret_key=SECRET), settings.database_url
    ).key


@pytest.fixture
def gateway(settings, write_key) -> Iterator[str]:
    with live_gateway(settings) as base:
        yield base


def token(base: str, key: str) -> str:
    answer = httpx.post(f"{base}/debugger/token", headers={"X-API-KEY": key}, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["token"]


class Reader(threading.Thread):
    """Reads a stream's ``seen`` events into ``lines`` until ``close()`` (a plain socket and HTTP/1.0,
    so that the test can hang up at once)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.address = (parts.hostname or "", parts.port or 80)
        self.target = f"{parts.path}?{parts.query}"
        self.lines: list[dict] = []
        self.ids: list[str] = []
        self.status: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        with socket.create_connection(self.address, timeout=5) as sock:
            sock.sendall(f"GET {self.target} HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n".encode())
            sock.settimeout(0.1)
            buffer = b""
            event = None
            while not self.done.is_set():
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                if self.status is None and b"\r\n\r\n" in buffer:
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    self.status = int(head.split()[1])
                if self.status is None:
                    continue
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    line = raw.decode().rstrip("\r")
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("id: "):
                        self.ids.append(line.removeprefix("id: "))
                    elif line.startswith("data: ") and event == "seen":
                        self.lines.append(json.loads(line.removeprefix("data: ")))

    def close(self) -> None:
        """Hang up (the gateway then ends the stream)."""
        self.done.set()
        self.join(timeout=5)

    def wait_for(self, n: int, timeout: float = 15) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n:
            assert time.monotonic() < deadline, f"{len(self.lines)} of {n} lines: {self.lines}"
            time.sleep(0.05)
        return self.lines


def test_the_token_needs_an_admin_key_in_x_api_key(gateway, admin_key, rdb, db):
    missing = httpx.post(f"{gateway}/debugger/token")
    assert missing.status_code == 401
    assert missing.json() == {
        "status": "error",
        "error": {"code": "UNAUTHORIZED", "message": "send an API key in the X-API-KEY header"},
    }
    for wrong in ("tt_not-a-key", admin_key + "x", "not-even-the-prefix"):
        assert httpx.post(f"{gateway}/debugger/token", headers={"X-API-KEY": wrong}).status_code == 401
    answer = httpx.post(f"{gateway}/debugger/token", headers={"X-API-KEY": admin_key}).json()["data"]
    assert [(s["name"], s["dialect"]) for s in answer["sources"]] == [("web", "segment")]
    issued = answer["token"]
    assert len(issued) >= 40
    keys = [k.decode() for k in rdb.keys(TOKEN_PREFIX + "*")]
    assert len(keys) == 1 and issued not in keys[0]  # kept by its digest
    assert 0 < rdb.ttl(keys[0]) <= 300
    db.execute("UPDATE api_keys SET revoked_at = now()")
    time.sleep(5.1)  # the gateway's answer for a key is kept 5 s
    assert httpx.post(f"{gateway}/debugger/token", headers={"X-API-KEY": admin_key}).status_code == 401


def test_a_user_key_is_forbidden(gateway, settings, db):
    user_key = "tt_" + "u" * 43
    db.execute(
        "INSERT INTO api_keys (id, role, account_id, key_hash, key_encrypted)"
        " VALUES ('key_user', 'user', 'acct_1', %s, 'x')",
        (stored_digest(settings.database_url, user_key),),
    )
    answer = httpx.post(f"{gateway}/debugger/token", headers={"X-API-KEY": user_key})
    assert answer.status_code == 403
    assert answer.json()["error"] == {"code": "FORBIDDEN", "message": "this needs an admin API key"}


def test_the_stream_refuses_a_missing_or_unknown_token(gateway):
    for query in ("", "?token=nope"):
        answer = httpx.get(f"{gateway}/debugger/stream{query}")
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "UNAUTHORIZED"


def test_the_stream_shows_stored_events_and_refused_requests(
    gateway, admin_key, write_key, rdb, drain, source_id
):
    WATCH.forget()
    reader = Reader(f"{gateway}/debugger/stream?token={token(gateway, admin_key)}")
    reader.start()
    deadline = time.monotonic() + 5
    while not rdb.exists(debug_feed.WATCHERS):  # the open stream keeps the feed on
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.2)  # the gateway's watch flag is read once a second
    track = {"userId": "u1", "event": "Signed Up", "messageId": "m-1"}
    assert httpx.post(f"{gateway}/v1/track", json=track, auth=(write_key, "")).status_code == 200
    bad = httpx.post(f"{gateway}/v1/track", json={"userId": "u1"}, auth=(write_key, ""))
    assert bad.status_code == 400
    assert httpx.post(f"{gateway}/v1/track", json=track, auth=("nope", "")).status_code == 401
    drain()
    lines = reader.wait_for(3)
    reader.close()
    by_kind: dict[str, list[dict]] = {}
    for line in lines:
        by_kind.setdefault(line["kind"], []).append(line)
    assert [line["name"] for line in by_kind["stored"]] == ["Signed Up"]
    assert by_kind["stored"][0]["event"]["message_id"] == "m-1"
    missing_event, bad_key = sorted(by_kind["refused"], key=lambda line: line["status"])
    assert (missing_event["status"], missing_event["code"], missing_event["source_id"]) == (
        400,
        "missing_event",
        source_id,
    )
    assert json.loads(missing_event["raw"]) == {"userId": "u1"}
    assert missing_event["path"] == "/v1/track" and "event" in missing_event["reason"]
    assert (bad_key["status"], bad_key.get("source_id")) == (401, None)  # refused before its source was known
    assert reader.status == 200 and len(reader.ids) == 3


def test_a_new_stream_starts_with_the_backlog_and_filters(gateway, admin_key, rdb):
    for name, user in (("Signed Up", "u1"), ("Logged In", "u2"), ("Signed Out", "u1")):
        line = debug_feed.Seen(
            kind="stored", at=datetime.now(UTC), source_id="src_a", name=name, user_id=user
        )
        rdb.xadd(debug_feed.STREAM, {"d": debug_feed.encode(line)})
    reader = Reader(f"{gateway}/debugger/stream?token={token(gateway, admin_key)}&name=Signed*&user=u1")
    reader.start()
    assert [line["name"] for line in reader.wait_for(2)] == ["Signed Up", "Signed Out"]
    reader.close()
    after = reader.ids[0]
    resumed = Reader(f"{gateway}/debugger/stream?token={token(gateway, admin_key)}&after={after}")
    resumed.start()
    assert [line["name"] for line in resumed.wait_for(2)] == ["Logged In", "Signed Out"]
    resumed.close()


def test_a_revoked_key_fails_at_once_and_its_open_stream_ends(gateway, admin_key, settings, db):
    """``trackgate admin revoke-key`` (revoke, then announce) reaches the running gateway: its cached
    answer for the key is forgotten, so a token is refused on the next request, and a stream opened
    with the key's token ends within ``KEY_CHECK_SECONDS``."""
    reader = Reader(f"{gateway}/debugger/stream?token={token(gateway, admin_key)}")
    reader.start()
    deadline = time.monotonic() + 5
    while reader.status is None:
        assert time.monotonic() < deadline, "the stream did not open"
        time.sleep(0.05)
    assert reader.status == 200
    row = db.execute("SELECT id FROM api_keys").fetchone()
    assert row is not None
    key_id = row[0]
    # the gateway has just answered for this key: without the announcement it would be cached for 5 s
    assert api_keys.revoke(settings.database_url, key_id)
    heard, confirmed = announce_change(settings.redis_url)
    assert heard >= 1 and confirmed == heard
    refused = httpx.post(f"{gateway}/debugger/token", headers={"X-API-KEY": admin_key})
    assert refused.status_code == 401
    reader.join(timeout=KEY_CHECK_SECONDS + 5)
    assert not reader.is_alive(), "the stream of a revoked key is still open"


def test_refused_requests_write_nothing_while_nobody_watches(gateway, write_key, rdb):
    time.sleep(1.2)
    assert httpx.post(f"{gateway}/v1/track", json={"userId": "u1"}, auth=(write_key, "")).status_code == 400
    time.sleep(0.3)
    assert not rdb.exists(debug_feed.STREAM)


def test_the_page_and_its_script_are_served_from_the_gateway(gateway):
    page = httpx.get(f"{gateway}/debugger")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="debugger/debugger.js">' in page.text and "http" not in page.text.split("<body>")[1]
    script = httpx.get(f"{gateway}/debugger/debugger.js")
    assert script.status_code == 200 and "EventSource" in script.text and "sessionStorage" in script.text


class _ExpiringRedis:
    """A command that is cancelled as its own timeout expires: redis-py's ``asyncio.timeout`` then turns
    the cancel into ``TimeoutError`` (seen when the event loop had been paused, as a test harness does)."""

    async def exists(self, *_keys: str) -> int:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise TimeoutError from None
        return 0


def test_the_watch_loop_stops_although_its_cancel_came_out_as_a_timeout():
    async def scenario() -> None:
        runtime = SimpleNamespace(redis=_ExpiringRedis(), watched=True)
        stop = asyncio.Event()
        task = asyncio.create_task(watch_flag(runtime, stop))  # type: ignore[arg-type]  # a runtime's two fields
        await asyncio.sleep(0.05)  # inside exists()
        stop.set()
        task.cancel()
        await asyncio.wait_for(task, 2)  # before: the loop went on, and the gateway's lifespan hung
        assert runtime.watched is False

    asyncio.run(scenario())


def test_a_stream_position_that_is_not_a_stream_id_is_a_400(gateway, admin_key):
    for after in ("garbage", "1-2-3", "$"):
        answer = httpx.get(f"{gateway}/debugger/stream?token={token(gateway, admin_key)}&after={after}")
        assert answer.status_code == 400, after
        assert answer.json()["error"]["code"] == "INVALID_PAYLOAD"
        assert "stream id" in answer.json()["error"]["message"]
