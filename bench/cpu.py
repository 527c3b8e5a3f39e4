"""CPU seconds of processes and of the machine, for the phases that split a run's CPU ((d), (g),
(h), ``bench reports``): psutil, which the project depends on already (``trackgate/embedded.py``).

A process that is gone, or not this user's to read, reads as 0 seconds; only processes on this
machine can be read (a remote server's pid names some other local process or none:
:func:`is_postgres` tells)."""

from __future__ import annotations

import time

import psutil
import psycopg

_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


def process_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (0 if it cannot be read)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except _GONE:
        return 0.0
    return times.user + times.system


def tree_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` and its live descendants have used so far (a worker and its
    profile applier process, ``workers/applier_process.py``)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except _GONE:
        return 0.0
    return process_seconds(pid) + sum(process_seconds(child.pid) for child in children)


def is_postgres(pid: int) -> bool:
    """Whether ``pid`` is a PostgreSQL process of this machine."""
    try:
        return psutil.Process(pid).name() == "postgres"
    except _GONE:
        return False


def postgres_pids() -> list[int]:
    """Every PostgreSQL process of this machine (other databases' backends and the server's own)."""
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy so far (everything but idle and I/O wait)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def backend_pids(database_url: str) -> list[int]:
    """The local PostgreSQL backends connected to ``database_url``'s database (this query's excluded)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows if is_postgres(pid)]


class CpuMeter:
    """The CPU this process and a database's PostgreSQL backends use between ``start`` and ``stop``:
    where the time of a run goes, steadier than its wall-clock on a shared VM.

    The backends are listed at ``start`` and again at ``stop`` (one that connected meanwhile counts
    from 0); one that exited before ``stop`` is not counted, nor are the server's own processes
    (WAL writer, checkpointer, autovacuum). A server that is not on this machine reads as None."""

    def __init__(self, database_url: str, children: list[int] | None = None):
        self.database_url = database_url
        self.children = children or []
        """Processes whose CPU counts with this one's (a profile applier process); read at ``stop``
        while they are alive."""
        self.backends: dict[int, float] = {}
        self.python = 0.0

    def start(self) -> None:
        self.backends = {pid: process_seconds(pid) for pid in backend_pids(self.database_url)}
        self.python = time.process_time() + sum(process_seconds(pid) for pid in self.children)

    def stop(self) -> tuple[float, float | None]:
        """(this process's and its ``children``'s CPU seconds, the backends' CPU seconds, None if none
        is local) since ``start``."""
        python = time.process_time() + sum(process_seconds(pid) for pid in self.children) - self.python
        pids = set(self.backends) | set(backend_pids(self.database_url))
        if not pids:
            return python, None
        return python, sum(max(0.0, process_seconds(pid) - self.backends.get(pid, 0.0)) for pid in pids)
