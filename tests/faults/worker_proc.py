"""A worker process for the fault suite: ``python worker_proc.py [fault point] [queue,...]``.

With a fault point it SIGKILLs itself at that point of its first job's life. The hooks are patched in
here, test-only: production code carries none. ``TRACKGATE_FAULTS_OLD=1`` runs the worker as trackgate
ran it before the reliable dequeue (RQ's SimpleWorker on both queues, RQ's defaults, forked
scheduler), to show the windows this suite closes.
"""

from __future__ import annotations

import functools
import os
import signal
import sys

import msgspec
import redis
from rq import Queue, SimpleWorker

from trackgate.schemas.destinations import FORWARD_QUEUE
from trackgate.schemas.jobs import PERSIST_QUEUE, MsgspecJSONSerializer
from trackgate.schemas.settings import configure_logging, settings_from_env
from trackgate.workers import profiles, profiles_outbox, runtime
from trackgate.workers import worker as trackgate_worker
from trackgate.workers.forward import outbox

POINTS = (
    "after_pop",
    "after_register",
    "in_store",
    "during_fanout",
    "after_commit",
    "in_profiles",
    "in_profiles_thread",
)
APPLIER_FAULT = "TRACKGATE_FAULTS_APPLIER_POINT"
"""Set for the worker's applier process (``workers/applier_process.py``), which inherits it."""


def die(*_args, **_kwargs):
    print(f"fault_point_kill pid={os.getpid()}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_worker(*_args, **_kwargs):
    """In the applier process: it and its worker killed at once (the OOM killer, a container's end)."""
    print(f"fault_point_kill pid={os.getppid()} applier={os.getpid()}", file=sys.stderr, flush=True)
    os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _existing(owner, name: str) -> None:
    # a point whose function was renamed or moved would never be reached: the worker would live on
    if not callable(getattr(owner, name, None)):
        raise SystemExit(f"fault point target {owner.__name__}.{name} does not exist")


def before(owner, name: str) -> None:
    """Die when ``owner.name`` is called."""
    _existing(owner, name)
    setattr(owner, name, die)


def after(owner, name: str) -> None:
    """Die right after ``owner.name`` returns."""
    _existing(owner, name)
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        original(*args, **kwargs)
        die()

    setattr(owner, name, wrapper)


def install(point: str) -> None:
    if point == "after_pop":  # the job id has left the queue; nothing registered yet
        before(SimpleWorker, "execute_job")
    elif point == "after_register":  # in the started registry, status still "queued"
        after(SimpleWorker, "prepare_execution")
    elif (
        point == "in_store"
    ):  # rows copied, the profile outbox row not yet written: the store transaction is open
        before(profiles_outbox, "write")
    elif point == "during_fanout":  # rows and forward intents committed; the forward jobs not queued
        before(outbox, "enqueue_or_defer")
    elif point == "after_commit":  # the job function returned (committed); RQ has not recorded it
        before(SimpleWorker, "handle_job_success")
    elif point == "in_profiles":  # events and outbox row committed; the applier process is applying it
        _existing(profiles, "apply")
        os.environ[APPLIER_FAULT] = point  # the applier process patches itself (below) and kills both
    elif point == "in_profiles_thread":  # the same with the applier a thread of the worker
        os.environ["TRACKGATE_PROFILE_APPLIER"] = "thread"
        before(profiles, "apply")
    else:
        raise SystemExit(f"unknown fault point {point!r}; one of {POINTS}")


def run_old(settings, queue_names: tuple[str, ...]) -> None:
    # the pool as it was: a job waited up to 30 s for a connection (psycopg_pool's default)
    runtime.configure(msgspec.structs.replace(settings, pg_pool_timeout=30.0))
    connection = redis.Redis.from_url(settings.redis_url)
    queues = [
        Queue(name, connection=connection, serializer=MsgspecJSONSerializer)
        for name in (PERSIST_QUEUE, FORWARD_QUEUE)
    ]
    worker = SimpleWorker(queues, connection=connection, serializer=MsgspecJSONSerializer)
    worker.work(with_scheduler=True, logging_level=settings.log_level)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1]:
        install(sys.argv[1])
    settings = settings_from_env().require()
    configure_logging(settings.log_level)
    # as the README runs it (both queues, RQ's BLPOP path before) unless told otherwise
    queues = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ("persist", "forward")
    if os.environ.get("TRACKGATE_FAULTS_OLD") == "1":
        run_old(settings, queues)
    else:
        trackgate_worker.run(settings, queues=queues)


if __name__ == "__mp_main__" and os.environ.get(APPLIER_FAULT) == "in_profiles":
    # this file is the worker's main module, which the applier process imports under this name first
    profiles.apply = die_with_worker

if __name__ == "__main__":
    main()
