"""Running an RQ worker on trackgate's queues."""

from __future__ import annotations

import logging

import psycopg
import psycopg_pool
import redis
from rq import Queue

from trackgate.schemas import metrics
from trackgate.schemas.destinations import FORWARD_QUEUE
from trackgate.schemas.jobs import PERSIST_FUNC, PERSIST_QUEUE, MsgspecJSONSerializer
from trackgate.schemas.settings import ServerSettings, Settings, tune_gc
from trackgate.workers import applier_process, jobs, profiles_outbox, runtime
from trackgate.workers.forward import outbox
from trackgate.workers.reliable import Grouping, ReliableWorker


def build_worker(settings: ServerSettings, queue_names: tuple[str, ...] = (PERSIST_QUEUE,)) -> ReliableWorker:
    """A SimpleWorker: jobs run in this process, so the PostgreSQL pool lives across jobs and a batch
    costs no fork (RQ's own benchmark: ~1k jobs/s against ~150/s for the forking worker).

    Reliable (``workers/reliable.py``): a job taken from a queue is in this worker's processing list
    until RQ has recorded its end, and is back in its queue within ~``ALIVE_TTL`` s if the worker dies;
    the worker runs RQ's scheduler in a thread (``work(with_scheduler=False)``).

    Persist jobs are stored several at a time, in one transaction (:func:`persist_grouping`)."""
    runtime.configure(settings)
    quiet_job_lines()
    connection = redis.Redis.from_url(settings.redis_url)
    queues = [Queue(name, connection=connection, serializer=MsgspecJSONSerializer) for name in queue_names]
    return ReliableWorker(
        queues, connection=connection, serializer=MsgspecJSONSerializer, grouping=persist_grouping(settings)
    )


def persist_grouping(settings: ServerSettings) -> Grouping:
    """Queued persist jobs taken together: up to ``TRACKGATE_WORKER_GROUP_JOBS`` jobs holding at most
    ``TRACKGATE_WORKER_GROUP_EVENTS`` events, stored in one transaction."""
    return Grouping(
        PERSIST_FUNC,
        run=lambda group: jobs.persist_batches([job.args[0] for job in group]),
        size=jobs.job_size,
        max_jobs=settings.worker_group_jobs,
        max_size=settings.worker_group_events,
        alone=lambda exc: not unreachable(exc),
    )


def unreachable(exc: Exception) -> bool:
    """A failure that is no job's fault: PostgreSQL or Redis away (no connection from the pool, a
    connection lost or refused, the server shutting down). A failed group's jobs then each fail and
    are retried on their own, instead of each being tried again at once (waiting for the pool again).
    Anything else (a refused value, a deadlock, out of lock memory) may be one job's: run each alone."""
    if isinstance(exc, psycopg_pool.PoolTimeout | redis.RedisError):
        return True
    if isinstance(exc, psycopg.OperationalError):
        return exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))
    return False


QUEUES = {"persist": PERSIST_QUEUE, "forward": FORWARD_QUEUE}


def run(
    settings: ServerSettings, *, burst: bool = False, queues: tuple[str, ...] = ("persist", "forward")
) -> None:
    """Queues in priority order; run a worker per queue so a slow destination never delays persisting."""
    worker = build_worker(settings, tuple(QUEUES[name] for name in queues))
    if settings.worker_metrics_port:
        serve_metrics(settings.host, settings.worker_metrics_port)
    outbox.start_sweeper(runtime.current())  # forwards whose jobs were never queued, busy or idle
    if PERSIST_QUEUE in worker.queue_names():  # profiles applied beside the store, on a second backend
        start_profile_applier(settings)
    tune_gc()
    try:
        worker.work(burst=burst, with_scheduler=False, logging_level=settings.log_level)
    finally:
        profiles_outbox.stop_applier(timeout=PROFILES_STOP_SECONDS)
        metrics.mark_process_dead()


def start_profile_applier(
    settings: Settings, metrics_path: str | None = None
) -> profiles_outbox.Applier | applier_process.ApplierProcess:
    """The profile applier a persist worker runs beside it (``TRACKGATE_PROFILE_APPLIER``): a child
    process (its metrics into ``metrics_path``, by default the run's directory), or a thread on a
    connection of this process's pool. ``profiles_outbox.after_commit`` wakes it from now on."""
    if settings.profile_applier == "process":
        return applier_process.start(settings, metrics_path)
    return profiles_outbox.start_applier(runtime.current())


PROFILES_STOP_SECONDS = 5.0
"""Longest a stopping worker spends applying the profile outbox's pending rows (what is left stays
pending for the next worker)."""


class MetricsPortTaken(Exception):
    """``TRACKGATE_WORKER_METRICS_PORT`` cannot be bound (the message says what to do)."""


def serve_metrics(host: str, port: int) -> None:
    """This process's ``/metrics`` (every process's, in multiprocess mode) on ``host:port``, from a
    thread: for workers that share no ``PROMETHEUS_MULTIPROC_DIR`` with a gateway (one container each)."""
    from prometheus_client import start_http_server

    metrics.worker()  # the families show (at 0) before the first job
    try:
        start_http_server(port, host, registry=metrics.registry())
    except OSError as exc:
        raise MetricsPortTaken(
            f"cannot serve the worker's metrics on {host}:{port} ({exc.strerror}): pick another"
            " TRACKGATE_WORKER_METRICS_PORT, or 0 for none"
        ) from exc
    logging.getLogger(__name__).info("worker_metrics_serving address=%s:%d", host, port)


JOB_LINES = frozenset(
    {
        "Worker %s: %s: %s (%s)",  # dequeued (with its description), and "Job OK"
        "Worker %s: %s: %s",  # dequeued
        "Worker %s: job %s result discarded immediately",
        "Worker %s: job %s result is kept for %s seconds",
        "Successfully completed %s job in %ss on worker %s",
        "Successfully completed job %s in %ss on worker %s",
    }
)
"""RQ 3's INFO lines for every job (``rq/worker/base.py``): four a job, more than the job's own."""


class JobLinesToDebug(logging.Filter):
    """RQ's per-job lines at DEBUG: dropped unless the worker logs at DEBUG (``TRACKGATE_LOG_LEVEL``).
    Each job still logs ``batch_stored`` (or ``forward_done``) at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.msg in JOB_LINES:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def quiet_job_lines() -> None:
    """Install :class:`JobLinesToDebug` on RQ's worker logger (once)."""
    rq_log = logging.getLogger("rq.worker")
    if not any(isinstance(f, JobLinesToDebug) for f in rq_log.filters):
        rq_log.addFilter(JobLinesToDebug())
