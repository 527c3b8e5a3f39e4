"""What a worker process holds across jobs: its settings and a PostgreSQL pool (:class:`WorkerRuntime`).

Built on the first job (or by ``trackgate worker`` before it starts), never at import time. Jobs get
it typed from :func:`current` and hand it down (``forward.delivery.forward_batch(rt, ...)``); the
forwarding clients (httpx, Redis) are ``workers/forward/resources.py``.
"""

from __future__ import annotations

import time

import psycopg
from psycopg_pool import ConnectionPool

from trackgate.schemas.settings import Settings, settings_from_env


class WorkerRuntime:
    settings: Settings
    pool: ConnectionPool[psycopg.Connection]
    last_prune: float
    """``time.monotonic()`` of the last dedupe prune (0: never)."""

    def __init__(self, settings: Settings, max_size: int = 3) -> None:
        if not settings.database_url:
            raise ValueError("TRACKGATE_DATABASE_URL is not set")
        self.settings = settings
        self.pool = ConnectionPool(
            settings.database_url,
            connection_class=psycopg.Connection,
            min_size=1,
            # a job, the forward outbox's sweeper, the profile applier thread (profiles_outbox.py); an
            # applier process needs one (applier_process.py)
            max_size=max_size,
            open=True,
            # no check per checkout (a round trip per job): a broken connection fails the job, which
            # RQ retries, and the pool replaces the connection
            name="trackgate-worker",
            # fail fast while PostgreSQL is down: the job fails and RQ retries it later (backoff)
            timeout=settings.pg_pool_timeout,
            kwargs={"connect_timeout": max(1, round(settings.pg_connect_timeout))},
        )
        self.last_prune = 0.0

    def prune_due(self, every_seconds: float = 3600.0) -> bool:
        """Whether the dedupe table is due a prune (then the next hour is not)."""
        now = time.monotonic()
        if now - self.last_prune >= every_seconds:
            self.last_prune = now
            return True
        return False

    def close(self) -> None:
        self.pool.close()


_current: WorkerRuntime | None = None


def configure(settings: Settings) -> WorkerRuntime:
    global _current
    if _current is not None:
        _current.close()
    _current = WorkerRuntime(settings)
    return _current


def current() -> WorkerRuntime:
    """The process's runtime, built from the environment on first use (e.g. under plain ``rq worker``)."""
    global _current
    if _current is None:
        _current = WorkerRuntime(settings_from_env())
    return _current
