"""Issue 11, item 3, with real processes: a worker SIGKILLed after its store transaction committed
and before it queued the forward jobs. The events are stored; a healthy worker's sweep must forward
them, each once, within 60 s (before the outbox they waited for a replay by hand).

Runs on the servers of ``TRACKGATE_TEST_*`` (a fresh database of the session, the Redis database of
the test run); the destination is a webhook on a local HTTP server that records what it receives.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import SECRET_KEY
from trackgate.schemas.destinations import Filters
from trackgate.workers.destinations import add_destination

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEADLINE = 60.0


class Capture:
    """An HTTP server on a free local port that answers 200 and keeps the message ids it was sent."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with capture.lock:
                    capture.ids += [e["message_id"] for e in json.loads(body)["events"]]
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self) -> list[str]:
        with self.lock:
            return list(self.ids)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    yield server
    server.close()


@pytest.fixture
def workers(settings, tmp_path) -> Iterator:
    procs: list[subprocess.Popen] = []
    env = {
        **os.environ,
        "TRACKGATE_DATABASE_URL": settings.database_url,
        "TRACKGATE_REDIS_URL": settings.redis_url,
        "TRACKGATE_SECRET_KEY": SECRET_KEY,
        "TRACKGATE_LOG_LEVEL": "INFO",
    }

    def start(point: str = "") -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(procs)}-{point or 'healthy'}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "outbox_worker.py"), point],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # RQ's scheduler process goes with its session
        )
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(ProcessLookupError):  # a scheduler left by a killed worker
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_worker_killed_after_the_commit_and_before_the_enqueue_forwards_within_60_s(
    settings, db, client, write_key, capture, workers, tmp_path
):
    add_destination(
        settings.database_url,
        SECRET_KEY,
        kind="webhook",
        name="hook",
        base_url=capture.url,
        credentials={"secret": "s"},
        source_ids=[],
        filters=Filters(),
    )
    doomed = workers("after_commit")
    sent = [f"m-{secrets.token_hex(6)}" for _ in range(10)]
    body = {"batch": [{"type": "track", "event": "Fault", "userId": "u-1", "messageId": m} for m in sent]}
    assert client.post("/v1/batch", json=body, auth=(write_key, "")).status_code == 200
    assert doomed.wait(timeout=60) == -signal.SIGKILL, f"no kill; logs in {tmp_path}"
    killed_at = time.monotonic()
    # committed: the events and their delivery, whose job was never queued
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == len(sent)
    assert db.execute("SELECT status FROM deliveries").fetchall() == [("queued",)]
    workers()
    while sorted(capture.received()) != sorted(sent):
        assert time.monotonic() - killed_at < DEADLINE, (
            f"forwarded {len(capture.received())} of {len(sent)} in {DEADLINE:.0f} s; logs in {tmp_path}"
        )
        time.sleep(0.2)
    took = time.monotonic() - killed_at
    time.sleep(6)  # another sweep turn: nothing is sent twice
    assert sorted(capture.received()) == sorted(sent)
    assert db.execute("SELECT status FROM deliveries").fetchall() == [("delivered",)]
    print(f"forwarded {len(sent)} events {took:.1f} s after the kill")
