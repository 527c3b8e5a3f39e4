"""A worker that loses no job when it is killed, and whose jobs run again within seconds if it is.

RQ 3 leaves three windows a ``kill -9`` falls into (read in ``rq/queue.py``, ``rq/worker/base.py``,
``rq/registry.py``, ``rq/intermediate_queue.py``):

- With more than one queue RQ dequeues with ``BLPOP``: between the pop and the job's registration the
  id is in no Redis list at all, so a worker killed there loses the job for good. (With one queue RQ
  uses ``BLMOVE`` into a per-queue "intermediate" list, whose cleanup fails a stuck job after a minute
  and only at maintenance time.)
- Between ``prepare_execution`` (the job is in the started registry) and ``prepare_job_execution``
  (its status becomes ``started``) the status is still ``queued``; ``StartedJobRegistry.cleanup``
  skips entries whose job is not ``started`` and then drops them: lost again.
- A started job of a dead worker is noticed only when its registry entry expires (job timeout + 60 s
  for a ``SimpleWorker``) *and* some worker's maintenance runs (every 600 s); the forked scheduler
  that would re-enqueue retries dies with its worker and another takes its lock only after 61 s
  plus a maintenance round.

:class:`ReliableWorker` closes them with a reliable dequeue and a keeper thread:

- Every dequeue moves the job id atomically (``LMOVE``/``BLMOVE``) from its queue into this worker's
  own processing list, ``trackgate:processing:<worker>``; the id leaves that list in the same Redis
  transaction that records the job's end (success, failure or retry, see :meth:`cleanup_execution`).
  Queues are polled in priority order with ``LMOVE``; when all are empty the worker blocks with
  ``BLMOVE`` on the first queue for at most :data:`BLOCK_SECONDS` (the other queues wait that long at
  most when idle).
- A keeper thread keeps ``trackgate:alive:<worker>`` alive (TTL :data:`ALIVE_TTL`, refreshed every
  :data:`TICK` s). It dies with its process, so a worker killed by any signal is known dead within
  :data:`ALIVE_TTL` seconds, however long its job was allowed to run.
- Each keeper looks for dead workers every tick and puts their jobs back (:func:`recover_worker`):
  one never started goes back to the front of its queue as is; one that was running counts as an
  attempt (RQ's ``AbandonedJobError``) and goes back to the front while it has retries left
  (``retries_left``), else into the failed registry, as RQ's own cleanup would do much later.
  Storage stays exactly-once because a re-run batch is deduplicated (``event_dedupe``).
- Jobs of one function (``Grouping``: the persist job) can run several at a time: after a dequeue the
  worker moves more ids of the same queue into its processing list (up to ``max_jobs`` jobs or
  ``max_size`` events), runs them with ONE call (one store transaction), and records each job's end
  only after that call returned (the commit). If the call raises, each job runs again alone, as RQ
  would run it (its own failure, retry, result), so a poison job fails alone and the others are
  stored (a job whose events the group already committed finds them claimed).
- The keeper also runs RQ's scheduler (retries scheduled for later) in-process, holding RQ's own
  scheduler lock with a TTL of :data:`ALIVE_TTL`: when its worker dies another worker's keeper takes
  the lock over within that time. No forked scheduler is left behind or lost.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
import redis
from rq import Queue, SimpleWorker
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.results import Result
from rq.scheduler import RQScheduler
from rq.scripts import acquire_or_refresh_lock, release_lock
from rq.timeouts import JobTimeoutException
from rq.utils import as_text, now
from rq.worker.base import WorkerStatus

from trackgate.workers.packed_job import PackedJob

log = logging.getLogger(__name__)

PREFIX = "trackgate"
WORKERS_KEY = f"{PREFIX}:reliable-workers"
"""Set of the names of workers that may hold a processing list."""
RECOVERY_LOCK = f"{PREFIX}:recovery-lock"
UNREADABLE_KEY = f"{PREFIX}:unreadable-jobs"
"""Ids of jobs whose data cannot be read (kept for an operator, never retried)."""

ALIVE_TTL = 10
"""Seconds after its last sign of life that a worker counts as dead and its jobs are put back."""
TICK = 1.0
"""Seconds between two rounds of the keeper: liveness, scheduled jobs, dead workers."""
BLOCK_SECONDS = 1
"""Longest blocking wait on the first queue when a worker listens on several."""
MAINTENANCE_INTERVAL = 30
"""RQ's own maintenance (registry cleanup): a fallback now, so every 30 s rather than 600 s."""
WORKER_TTL = 60
"""RQ's worker key TTL; RQ blocks at most ``WORKER_TTL - 15`` s per dequeue call and then heartbeats."""
PUBSUB_WAKE = 0.5
"""Seconds between two wakes of the thread reading RQ's command channel: at most this long to stop."""

_DONE = frozenset(
    {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED, JobStatus.SCHEDULED}
)
"""States in which a job id left in a processing list needs nothing more: RQ already ended it or
put it where it will run again (the scheduled registry)."""


def processing_key(worker_name: str) -> str:
    return f"{PREFIX}:processing:{worker_name}"


def alive_key(worker_name: str) -> str:
    return f"{PREFIX}:alive:{worker_name}"


class ReliableQueue(Queue):
    """A queue class whose ``dequeue_any`` moves the job id into a processing list instead of popping it.

    RQ calls ``worker.queue_class.dequeue_any`` (a classmethod without the worker), so each worker
    uses a subclass that carries its processing list's key (:func:`queue_class_for`)."""

    processing_key: ClassVar[str] = ""

    @classmethod
    def dequeue_any(  # type: ignore[override]
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: redis.Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        ordered = list(queues)
        target = cls.processing_key
        if not target:
            raise RuntimeError("ReliableQueue used without a processing list (use queue_class_for)")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = _poll(connection, ordered, target)
            if found is None and deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DequeueTimeout(timeout, [q.key for q in ordered])
                block = math.ceil(remaining) if len(ordered) == 1 else BLOCK_SECONDS
                job_id = connection.blmove(ordered[0].key, target, block, "LEFT", "RIGHT")
                if job_id is not None:
                    found = (ordered[0].key, as_text(job_id))
            if found is None:
                if deadline is None:
                    return None
                continue
            queue_key, job_id = found
            try:
                result = cls._fetch_dequeued_job(
                    connection,
                    queue_key,
                    job_id,
                    job_class=job_class,
                    serializer=serializer,
                    death_penalty_class=death_penalty_class,
                )
            except Exception:
                # RQ would raise with the id already popped (the job silently gone); keep its id
                log.exception("job_unreadable job_id=%s queue=%s", job_id, queue_key)
                with connection.pipeline(transaction=True) as pipe:
                    pipe.lrem(target, 1, job_id)
                    pipe.rpush(UNREADABLE_KEY, job_id)
                    pipe.execute()
                continue
            if result is None:  # its hash is gone (deleted, expired): nothing to run
                connection.lrem(target, 1, job_id)
                continue
            return result


_TAKE = """
local out = {}
for _ = 1, tonumber(ARGV[1]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not id then break end
  local hash = redis.call('HGETALL', ARGV[2] .. id)
  local kept = {}
  for i = 1, #hash, 2 do
    if hash[i + 1] ~= '' or hash[i] == 'data' then
      kept[#kept + 1] = hash[i]
      kept[#kept + 1] = hash[i + 1]
    end
  end
  out[#out + 1] = id
  out[#out + 1] = kept
end
return out
"""
"""KEYS: a queue, a processing list. ARGV: how many ids to move, the job key prefix. Moves up to that
many ids from the queue into the list, and returns each with its job's hash (id, {field, value, ...};
empty if the hash is gone). Fields with an empty value are left out: RQ's ``Job.restore`` reads them
as unset either way, and half of a queued job's 18 fields are empty (each costs redis-py's parser)."""

_REPLAY = """
local words = #ARGV == 1 and cjson.decode(ARGV[1]) or ARGV
local i, segment, skipped = 1, 0, {}
while i <= #words do
  segment = segment + 1
  local run = words[i] == '' or redis.call('EXISTS', words[i]) == 0
  local n = tonumber(words[i + 1])
  i = i + 2
  for _ = 1, n do
    local length = tonumber(words[i])
    if run then
      redis.call(unpack(words, i + 1, i + length))
    end
    i = i + length + 1
  end
  if not run then
    skipped[#skipped + 1] = segment
  end
end
return skipped
"""
"""Words: segments, each a guard key ('' for none), its number of commands, then each command as its
length and its words; as one JSON array of strings (``ARGV[1]``), or as ARGV itself when a word is
not text. Runs every command of each segment whose guard key does not exist, atomically (as RQ's
MULTI/EXEC would); returns the numbers (from 1) of the segments skipped.

Through redis-py's pipeline a command costs the worker ~25-30 µs of CPU (packing each word, parsing
its reply and MULTI's QUEUED, callbacks); as words of one script call, ~1.5 µs a word (redis-py's
packing); as one JSON array (msgspec), a fraction of that."""


class _NotText(Exception):
    """A recorded word that JSON cannot carry as is (bytes that are not UTF-8, another type)."""


def _as_text(words: list) -> list:
    """The words as redis-py's ``Encoder`` writes them, as text: a str as is, bytes decoded (UTF-8),
    an int or a float by its ``repr``; :class:`_NotText` for anything else."""
    out = []
    for word in words:
        kind = type(word)
        if kind is str:
            out.append(word)
        elif kind is int or kind is float:
            out.append(repr(word))
        elif kind is bytes:
            try:
                out.append(word.decode())
            except UnicodeDecodeError:
                raise _NotText from None
        elif isinstance(word, str):  # RQ's str enums (a status, a state): their value, as redis-py sends it
            out.append(word.encode().decode())
        else:
            raise _NotText
    return out


_encode_json = msgspec.json.Encoder().encode


def _recorded(recorder: Any) -> list:
    """The commands RQ wrote into a pipeline that is never executed, and the pipeline emptied."""
    commands = list(recorder.command_stack)
    recorder.reset()
    return commands


def _delete_finished(job: Job, pipe: Any) -> None:
    """RQ's ``Job.delete`` of a finished job kept for 0 s, for a job whose only execution this worker
    just cleaned up (``cleanup_execution``, in ``pipe``): the same keys deleted, without the reads RQ
    makes first (its status, its registries, its executions: ~4 round trips a job, 40% of a drain of
    1-event jobs in py-spy)."""
    pipe.delete(
        job.key,
        job.dependents_key,
        job.dependencies_key,
        Result.get_key(job.id),
        job.execution_registry.key,
    )


def _size(grouping: Grouping, job: Job) -> int:
    try:
        return grouping.size(job)
    except Exception:  # unreadable: weighs nothing here, and fails alone after the group fails
        return 0


def _poll(connection: redis.Redis, queues: Sequence[Queue], target: str) -> tuple[str, str] | None:
    for queue in queues:
        job_id = connection.lmove(queue.key, target, "LEFT", "RIGHT")
        if job_id is not None:
            return queue.key, as_text(job_id)
    return None


def queue_class_for(worker_name: str) -> type[ReliableQueue]:
    return type("ReliableQueue", (ReliableQueue,), {"processing_key": processing_key(worker_name)})


@dataclass(frozen=True, slots=True)
class Grouping:
    """Jobs of ``func_name`` that a worker runs several at a time, with one call of ``run``."""

    func_name: str
    run: Callable[[list[Job]], object]
    """Does the work of all the jobs at once (all of it, or raises having done none that counts)."""
    size: Callable[[Job], int]
    """A job's weight (its events); a job whose size cannot be read weighs 0 (it fails in ``run``)."""
    max_jobs: int = 32
    max_size: int = 2000
    """Most a group's sizes add up to (a first job bigger than this runs alone)."""
    alone: Callable[[Exception], bool] = lambda exc: True
    """Whether the jobs of a group that raised ``exc`` run again one by one (the failure may be one
    job's); if not (it is no job's fault, e.g. the database is unreachable), each job fails with it
    at once and RQ retries each on its own schedule, without holding the worker N times as long."""


class ReliableWorker(SimpleWorker):
    """RQ's SimpleWorker (jobs run in this process) with a reliable dequeue and a keeper thread.

    Run it with ``with_scheduler=False``: the keeper runs the scheduler, in this process."""

    def __init__(self, queues: Sequence[Queue], *, grouping: Grouping | None = None, **kwargs: Any):
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        kwargs.setdefault("job_class", PackedJob)
        super().__init__(queues, **kwargs)
        self.queue_class = queue_class_for(self.name)
        self.processing_key = processing_key(self.name)
        self.keeper: Keeper | None = None
        self.grouping = grouping
        self._take_script = self.connection.register_script(_TAKE)
        self._replay_script = self.connection.register_script(_REPLAY)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        """RQ's ``execute_job`` prepared ``job``'s execution and calls this: a job of the grouping's
        function takes the jobs queued behind it along (:meth:`_take_group`) and runs with them."""
        grouping = self.grouping
        if grouping is None or grouping.max_jobs <= 1 or job.func_name != grouping.func_name:
            return super().perform_job(job, queue, execution)
        group, others = self._take_group(job, queue, grouping)
        if len(group) == 1:
            done = super().perform_job(job, queue, execution)
        else:
            done = self._execute_group(group, [execution, *self._prepare_group(group)], queue, grouping)
        for other, other_queue in others:  # another function's job met in the queue: alone, after
            other_execution = self.prepare_execution(other)
            super().perform_job(other, other_queue, other_execution)
        return done

    def _take_group(
        self, first: Job, queue: Queue, grouping: Grouping
    ) -> tuple[list[Job], list[tuple[Job, Queue]]]:
        """``first`` and the jobs behind it in ``queue``, each moved into the processing list: up to
        ``max_jobs - 1`` ids moved and their hashes read by one script (:data:`_TAKE`); from the first
        that would take the group over ``max_size``, they go back to the head of the queue in their
        order (a job of another function is run alone after the group)."""
        size = _size(grouping, first)
        if size >= grouping.max_size or grouping.max_jobs <= 1:
            return [first], []
        taken = self._take_script(
            keys=[queue.key, self.processing_key],
            args=[grouping.max_jobs - 1, self.job_class.redis_job_namespace_prefix],
        )
        ids = [as_text(raw) for raw in taken[0::2]]
        group, others, back = [first], [], []  # type: list[Job], list[tuple[Job, Queue]], list[str]
        for job_id, job in zip(ids, self._restore_taken(ids, taken[1::2]), strict=True):
            if job is None:
                continue  # gone or unreadable: already out of the processing list
            if back:
                back.append(job_id)
            elif size + (job_size := _size(grouping, job)) > grouping.max_size:
                # it and the jobs behind it wait for the next dequeue (weighed before its function is
                # read: a job going back is neither inflated nor decoded when its description says its size)
                back.append(job_id)
            elif job.func_name != grouping.func_name:
                others.append((job, queue))
            else:
                group.append(job)
                size += job_size
        if back:
            with self.connection.pipeline(transaction=True) as pipe:
                for job_id in reversed(back):
                    pipe.lrem(self.processing_key, 1, job_id)
                    pipe.lpush(queue.key, job_id)
                pipe.execute()
        return group, others

    def _restore_taken(self, ids: list[str], hashes: list[list[bytes]]) -> list[Job | None]:
        """The jobs of ids just moved into the processing list, from their hashes as :data:`_TAKE`
        read them (as RQ's ``Job.fetch_many`` makes them); a job whose hash is gone leaves the list,
        one that cannot be read is set aside (as ``dequeue_any`` does): None."""
        jobs: list[Job | None] = []
        for job_id, flat in zip(ids, hashes, strict=True):
            job = None
            if flat:
                job = self.job_class(job_id, connection=self.connection, serializer=self.serializer)
                try:
                    job.restore(dict(zip(flat[0::2], flat[1::2], strict=True)))
                except NoSuchJobError:
                    job = None
                except Exception:
                    log.exception("job_unreadable job_id=%s", job_id)
                    with self.connection.pipeline(transaction=True) as pipe:
                        pipe.lrem(self.processing_key, 1, job_id)
                        pipe.rpush(UNREADABLE_KEY, job_id)
                        pipe.execute()
                    jobs.append(None)
                    continue
            if job is None:
                self.connection.lrem(self.processing_key, 1, job_id)
            jobs.append(job)
        return jobs

    def _prepare_group(self, jobs: list[Job]) -> list[Execution]:
        """RQ's ``prepare_execution`` of every job but the first (RQ prepared it), and
        ``prepare_job_execution`` of every job: their commands recorded from RQ's own API and run by
        one script (atomic, as RQ's transaction); returns the new executions. (The job's own
        heartbeat, which ``prepare_for_execution`` writes again at once, is left out.)"""
        executions = []
        recorder = self.connection.pipeline(transaction=True)  # never executed: RQ writes into it
        for job in jobs[1:]:
            executions.append(
                Execution.create(job, self.get_heartbeat_ttl(job), pipeline=recorder, worker_name=self.name)
            )
        self.set_state(WorkerStatus.BUSY, pipeline=recorder)
        self.heartbeat(max(self.get_heartbeat_ttl(job) for job in jobs), pipeline=recorder)
        for job in jobs:
            job.prepare_for_execution(self.name, pipeline=recorder)
            recorder.persist(job.key)
        self._replay([("", _recorded(recorder))])
        for execution in executions:
            self.executions[execution.id] = execution
        return executions

    def _execute_group(
        self, jobs: list[Job], executions: list[Execution], queue: Queue, grouping: Grouping
    ) -> bool:
        """Run ``jobs`` with one call of ``grouping.run``; only once it returned (committed), record
        each job's success. If it raises, run each job alone (RQ's own path: success, failure or
        retry per job), or fail each (``grouping.alone``). True when the group succeeded."""
        started = now()
        for job in jobs:
            job.started_at = started
        timeout = max(job.timeout or self.queue_class.DEFAULT_TIMEOUT for job in jobs)
        try:
            with self.death_penalty_class(timeout, JobTimeoutException, job_id=jobs[0].id):
                grouping.run(jobs)
        except Exception as exc:
            alone = grouping.alone(exc)
            log.warning(
                "job_group_failed n_jobs=%d error=%s: %s; %s",
                len(jobs),
                type(exc).__name__,
                str(exc)[:200],
                "running each job alone" if alone else "each job failed (and retried) with it",
            )
            exc_info = sys.exc_info()
            for job, execution in zip(jobs, executions, strict=True):
                if alone:
                    super().perform_job(job, queue, execution)
                else:
                    self._finalize_failure(job, queue, execution, exc_info)
            return False
        self._finish_group(jobs, executions, queue)
        return True

    def _finish_group(self, jobs: list[Job], executions: list[Execution], queue: Queue) -> None:
        """Each job's success as RQ's ``handle_job_success`` records it: the first job's by RQ itself
        (``_finalize_success``), then, for the others with nothing else to do on success (no callback,
        repeat, webhook or rate limit: the persist jobs), RQ's commands recorded from its own API and
        run by one script, which leaves to RQ's own ``_finalize_success`` (after it) any job that has
        dependents by then (they must be enqueued); any other job goes through RQ's own path too."""
        self._finalize_success(jobs[0], queue, executions[0], None)
        plain: list[tuple[Job, Execution]] = []
        special: list[tuple[Job, Execution]] = []
        for job, execution in zip(jobs[1:], executions[1:], strict=True):
            simple = not (job.success_callback or job.repeats_left or job.webhooks or job.has_rate_limit)
            (plain if simple else special).append((job, execution))
        ended = now()
        recorder = self.connection.pipeline(transaction=True)  # never executed: RQ writes into it
        segments: list[tuple[str, list]] = []
        for job, execution in plain:
            job.ended_at = ended
            job._status = JobStatus.FINISHED
            job._result = None
            self.increment_successful_job_count(pipeline=recorder)
            self.increment_total_working_time(ended - (job.started_at or ended), recorder)
            result_ttl = job.get_result_ttl(self.default_result_ttl)
            if result_ttl != 0:
                job._handle_success(
                    result_ttl,
                    pipeline=recorder,
                    worker_name=self.name,
                    execution_id=execution.id,
                    execution_started_at=execution.created_at,
                    execution_ended_at=ended,
                )
            self.cleanup_execution(job, pipeline=recorder, execution=execution)
            if result_ttl == 0 and not job.group_id:
                _delete_finished(job, recorder)
            else:
                job.cleanup(result_ttl, pipeline=recorder, remove_from_queue=False)
            segments.append((job.dependents_key, _recorded(recorder)))
        if segments:
            special += [plain[i] for i in self._replay(segments)]  # dependents: RQ enqueues them
        for job, execution in special:
            self._finalize_success(job, queue, execution, None)

    def _replay(self, segments: list[tuple[str, list]]) -> list[int]:
        """Run recorded commands with one script (:data:`_REPLAY`, atomic); a segment whose guard key
        exists is skipped. Returns the indexes of the skipped segments."""
        argv: list = []
        for guard, commands in segments:
            argv += (guard, len(commands))
            for args, _options in commands:
                argv.append(len(args))
                argv += args
        try:
            words = [_encode_json(_as_text(argv))]
        except _NotText:  # e.g. a job's zlib data (a result kept): the words as they are
            words = argv
        return [int(n) - 1 for n in self._replay_script(args=words)]

    def work(self, *args: Any, **kwargs: Any) -> bool:
        if kwargs.get("with_scheduler"):
            raise ValueError("ReliableWorker runs the scheduler in its keeper: pass with_scheduler=False")
        self.keeper = Keeper(self)
        self.keeper.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self.keeper.stop()
            self.keeper = None

    def teardown(self) -> None:
        """RQ's teardown, with a stop request during it noted instead of raised.

        The loop has ended (it was asked to stop, or a burst ran dry): RQ's handler, still installed,
        raises ``StopRequested`` out of an idle worker, and out of ``teardown`` that escaped as a
        traceback at exit (seen when SIGTERM came as the worker was already stopping), with the
        worker's registration and its command channel left behind. A later signal, a second apart,
        forces the stop as RQ's second signal does."""
        signal.signal(signal.SIGINT, self._stop_while_stopping)
        signal.signal(signal.SIGTERM, self._stop_while_stopping)
        super().teardown()

    def _stop_while_stopping(self, signum: int, frame: Any) -> None:
        self.log.info("Worker %s: stop requested while stopping", self.name)
        self._shutdown_requested_date = now()
        signal.signal(signal.SIGINT, self.request_force_stop)
        signal.signal(signal.SIGTERM, self.request_force_stop)

    def subscribe(self) -> None:
        """RQ's command channel, read by a thread that wakes every ``PUBSUB_WAKE`` seconds, not 60.

        redis-py 8.2's ``PubSubWorkerThread.stop()`` waits for the thread without a timeout, and RQ's
        thread sleeps up to 60 s in a read once it is unsubscribed: a stopping worker (every burst
        drain, every shutdown) hung up to a minute. RQ 3.0's own ``subscribe``, with a short wake."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        # RQ declares the attribute as None (its __init__ value)
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=PUBSUB_WAKE, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def cleanup_execution(self, job: Job, pipeline: Any, execution: Any = None) -> None:
        """Every end of a job (success, failure, retry) passes here inside the transaction that records
        it: the id leaves the processing list in that same transaction."""
        super().cleanup_execution(job, pipeline, execution)
        pipeline.lrem(self.processing_key, 1, job.id)


class Keeper(threading.Thread):
    """The worker's sign of life, the scheduler, and the recovery of dead workers' jobs."""

    def __init__(self, worker: ReliableWorker):
        super().__init__(name=f"trackgate-keeper-{worker.name}", daemon=True)
        self.worker_name = worker.name
        self.connection: redis.Redis = worker.connection
        self.serializer = worker.serializer
        self.job_class = worker.job_class
        self.queue_names = [q.name for q in worker.queues]
        self.scheduler = RQScheduler(
            worker.queues, connection=worker.connection, serializer=worker.serializer, name=worker.name
        )
        self._stop_event = threading.Event()
        self._locks: set[str] = set()
        self._recover_after = 0.0
        self._mark_alive()  # before the first dequeue: its processing list is never taken for a dead one's

    def _mark_alive(self) -> None:
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.set(alive_key(self.worker_name), "1", ex=ALIVE_TTL)
            pipe.sadd(WORKERS_KEY, self.worker_name)
            pipe.execute()

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except redis.RedisError as exc:  # Redis away: try again next tick
                # the others' keys may have expired meanwhile: let them say they live before judging them
                self._recover_after = time.monotonic() + ALIVE_TTL + 2 * TICK
                log.warning("keeper_redis_error worker=%s error=%r", self.worker_name, exc)
            except Exception:
                log.exception("keeper_error worker=%s", self.worker_name)
            self._stop_event.wait(max(0.05, TICK - (time.monotonic() - started)))

    def tick(self) -> None:
        self._mark_alive()
        self.schedule()
        if time.monotonic() < self._recover_after:
            return
        for name in dead_workers(self.connection, exclude=self.worker_name):
            recover_worker(self.connection, name, serializer=self.serializer, job_class=self.job_class)

    def schedule(self) -> None:
        """Hold RQ's scheduler lock of each queue (short TTL) and enqueue the jobs that are due."""
        held = set()
        for name in self.queue_names:
            key = RQScheduler.get_locking_key(name)
            if acquire_or_refresh_lock(self.connection, key, self.worker_name, ALIVE_TTL) != "taken":
                held.add(name)
        if held != self._locks:
            if held - self._locks:
                log.info(
                    "scheduler_locks_acquired worker=%s queues=%s",
                    self.worker_name,
                    sorted(held - self._locks),
                )
            self._locks = held
            self.scheduler._acquired_locks = held
            self.scheduler.prepare_registries(held)
        if held:
            self.scheduler.enqueue_scheduled_jobs()

    def stop(self) -> None:
        """A clean exit: stop the thread, give the scheduler locks back, put back what is still ours."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5)
        try:
            for name in self._locks:
                release_lock(self.connection, RQScheduler.get_locking_key(name), self.worker_name)
            recover_worker(
                self.connection, self.worker_name, serializer=self.serializer, job_class=self.job_class
            )
            self.connection.delete(alive_key(self.worker_name))
        except redis.RedisError as exc:  # what is left is recovered by the others once our key expires
            log.warning("keeper_stop_failed worker=%s error=%r", self.worker_name, exc)


def dead_workers(connection: redis.Redis, exclude: str = "") -> list[str]:
    names = sorted(as_text(n) for n in connection.smembers(WORKERS_KEY))
    names = [n for n in names if n != exclude]
    if not names:
        return []
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(alive_key(name))
        alive = pipe.execute()
    return [name for name, is_alive in zip(names, alive, strict=True) if not is_alive]


def recover_worker(
    connection: redis.Redis, worker_name: str, *, serializer: Any = None, job_class: Any = None
) -> int:
    """Put back the jobs in a (dead, or cleanly stopping) worker's processing list; forget the worker
    once its list is empty. One recoverer at a time (a lock), so no job is put back twice.
    Returns how many jobs went back to a queue."""
    token = f"{worker_name}:{time.monotonic_ns()}"
    if not connection.set(RECOVERY_LOCK, token, nx=True, ex=30):
        return 0
    requeued = 0
    try:
        key = processing_key(worker_name)
        for raw in connection.lrange(key, 0, -1):
            if _recover_job(
                connection, worker_name, as_text(raw), serializer=serializer, job_class=job_class
            ):
                requeued += 1
        if connection.llen(key) == 0:  # forget the worker (a dead one adds nothing to its list)
            connection.srem(WORKERS_KEY, worker_name)
    finally:
        release_lock(connection, RECOVERY_LOCK, token)
    if requeued:
        log.warning("worker_recovered worker=%s n_requeued=%d", worker_name, requeued)
    return requeued


def _recover_job(
    connection: redis.Redis, worker_name: str, job_id: str, *, serializer: Any, job_class: Any
) -> bool:
    key = processing_key(worker_name)
    cls = job_class or Job
    try:
        job = cls.fetch(job_id, connection=connection, serializer=serializer)
    except NoSuchJobError:
        connection.lrem(key, 1, job_id)
        return False
    except Exception:
        log.exception("job_unreadable job_id=%s worker=%s", job_id, worker_name)
        with connection.pipeline(transaction=True) as pipe:
            pipe.lrem(key, 1, job_id)
            pipe.rpush(UNREADABLE_KEY, job_id)
            pipe.execute()
        return False
    status = job.get_status(refresh=False)
    queue = Queue(job.origin, connection=connection, serializer=serializer, job_class=cls)
    elsewhere = (
        status in _DONE
        or (status == JobStatus.QUEUED and connection.lpos(queue.key, job_id) is not None)
        or (status == JobStatus.STARTED and job.worker_name not in (None, "", worker_name))
        or _in_other_processing_list(connection, worker_name, job_id)
    )
    if elsewhere:  # ended, or already waiting or running elsewhere (e.g. RQ's own cleanup retried it)
        connection.lrem(key, 1, job_id)
        return False
    attempted = status == JobStatus.STARTED
    registry = queue.started_job_registry
    members: list[bytes] = connection.zrange(registry.key, 0, -1)  # type: ignore[assignment]
    entries = [m for m in members if as_text(m).startswith(f"{job_id}:")]
    with connection.pipeline(transaction=True) as pipe:
        pipe.lrem(key, 1, job_id)
        if entries:
            pipe.zrem(registry.key, *entries)
        if attempted and not (job.retries_left and job.retries_left > 0):
            log.error("job_abandoned_failed job_id=%s worker=%s (no retries left)", job_id, worker_name)
            record_job_failure(job, f"AbandonedJobError: worker {worker_name} died running it", pipe)
            pipe.execute()
            return False
        if attempted:
            assert job.retries_left is not None
            job.retries_left -= 1
        queue._enqueue_job(job, pipeline=pipe, at_front=True)
        pipe.execute()
    log.warning(
        "job_requeued job_id=%s queue=%s dead_worker=%s attempted=%s retries_left=%s",
        job_id,
        queue.name,
        worker_name,
        attempted,
        job.retries_left,
    )
    return True


def _in_other_processing_list(connection: redis.Redis, worker_name: str, job_id: str) -> bool:
    others = [as_text(n) for n in connection.smembers(WORKERS_KEY)]
    others = [n for n in others if n != worker_name]
    if not others:
        return False
    with connection.pipeline(transaction=False) as pipe:
        for name in others:
            pipe.lpos(processing_key(name), job_id)
        return any(pos is not None for pos in pipe.execute())
