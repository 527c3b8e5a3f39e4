"""The profile outbox's applier in a child process of the worker (``TRACKGATE_PROFILE_APPLIER=process``,
the default).

As a thread (``profiles_outbox.Applier``), the applier's Python (~30 µs an event of bench (d)'s) and the
store's took turns under the worker's one GIL: a `py-spy` profile of one worker had the store thread
waiting for the GIL much of the time it counted as running, with a core idle. In a process of its own
the applier runs the same :class:`~trackgate.workers.profiles_outbox.Applier` thread on its own pool,
beside the store instead of between its statements (README, Benchmark: the fourteenth step).

Nothing about exactly-once changes: the outbox rows are durable in PostgreSQL when the store commits,
and an application deletes the rows it applied in its own transaction, whoever runs it. The two
processes talk in single bytes over one ``multiprocessing`` pipe (a socket pair; a byte is written
whole or not at all, so no message is ever cut):

- the worker writes ``w`` after each store commit (:meth:`ApplierProcess.wake`: never blocks; with the
  socket full the child has wakes enough pending, and it also looks every ``POLL_SECONDS``);
- ``s`` asks for a round that starts after it (:meth:`ApplierProcess.settle`), answered ``d`` (done) or
  ``n`` (that round failed);
- ``q`` (:meth:`ApplierProcess.stop`), the pipe's end (the worker is gone, even killed), or SIGTERM
  makes the child apply what is pending, for at most :data:`STOP_SECONDS`, and exit (a worker's later
  commits are then applied by the worker itself: ``profiles_outbox.after_commit`` finds no live
  applier; rows an application cut short left stay pending: its transaction rolls back). The child
  ignores SIGINT: a Ctrl-C on ``trackgate up`` reaches the whole process group, and the worker, not
  its applier, decides when to stop.

Its metrics (the profile lag, the outbox's backlog) go to the run's ``PROMETHEUS_MULTIPROC_DIR``, which
the child inherits: ``trackgate worker`` gives itself one when it serves its own ``/metrics`` without a
shared directory (``trackgate.metrics_dir.for_worker``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection

from trackgate.schemas import metrics
from trackgate.schemas.metrics import MULTIPROC_ENV
from trackgate.schemas.settings import Settings, configure_logging, tune_gc
from trackgate.workers import profiles_outbox
from trackgate.workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)

WAKE, SETTLE, QUIT = b"w", b"s", b"q"
READY, DONE, FAILED = b"r", b"d", b"n"

START_SECONDS = 60.0
"""Longest the worker waits for its applier to start (import, connect) before it goes on without it:
``profiles_outbox.after_commit`` then applies on the store's connection, as with no applier."""
STOP_SECONDS = 5.0
"""Longest the child spends applying what is pending once told to stop (the thread's limit under a
stopping worker, ``workers.worker.PROFILES_STOP_SECONDS``); what is left stays pending."""


class ApplierProcess:
    """The worker's side of the child process: what ``profiles_outbox`` calls an applier (``wake``,
    ``is_alive``, ``settle``, ``stop``)."""

    def __init__(self, settings: Settings, metrics_path: str | None = None) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: the worker has threads (its pool's)
        self._channel, child = context.Pipe()
        self._fd = self._channel.fileno()
        self._lock = threading.Lock()  # one writer at a time; the channel closed under it
        self._settling = threading.Lock()
        self._closed = False
        self.process = context.Process(
            target=main,
            args=(settings, child, metrics.multiprocess_dir() if metrics_path is None else metrics_path),
            name="trackgate-profile-applier",
            daemon=True,
        )
        self.process.start()
        child.close()  # the worker keeps only its own end: the child sees EOF once the worker is gone
        self.ready = self._channel.poll(START_SECONDS) and self._receive() == READY
        os.set_blocking(self._fd, False)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def is_alive(self) -> bool:
        return self.ready and self.process.is_alive()

    def wake(self) -> None:
        with self._lock:
            self._write(WAKE)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until a round of the child's that started after this call has ended (everything
        committed before it is applied, unless that round failed); False if ``timeout`` passed first
        or the child is gone. (The bench and the tests settle; a worker never does.)"""
        with self._settling:
            if not self.is_alive():
                return False
            while self._channel.poll(0) and self._receive():  # the answer to a settle that timed out
                pass
            with self._lock:
                os.set_blocking(self._fd, True)  # the socket may be full of wakes: wait for room
                try:
                    self._write(SETTLE)
                finally:
                    os.set_blocking(self._fd, False)
            return self._channel.poll(timeout) and self._receive() == DONE

    def stop(self, timeout: float | None = None) -> None:
        """Ask the child to apply what is pending and exit; kill it after ``timeout`` seconds (what it
        had not applied stays pending for the next applier)."""
        with self._lock:
            if self.process.is_alive() and not self._write(QUIT):
                self.process.terminate()  # the socket is full: SIGTERM means the same to the child
        self.process.join(timeout)
        if self.process.is_alive():
            log.warning("profile_applier_killed pid=%s after_seconds=%s", self.process.pid, timeout)
            self.process.kill()
            self.process.join()
            metrics.mark_process_dead(self.process.pid)  # it could not: its gauges would stay
        with self._lock:
            if not self._closed:
                self._closed = True
                self._channel.close()

    def _write(self, message: bytes) -> bool:
        """One byte to the child, never blocking unless the caller made the socket blocking; False if
        it could not be written (the socket full, the child or this end gone)."""
        if self._closed:
            return False
        try:
            return os.write(self._fd, message) == 1
        except OSError:  # BlockingIOError (full), BrokenPipeError (the child gone)
            return False

    def _receive(self) -> bytes:
        try:
            return os.read(self._fd, 1)
        except OSError:
            return b""


def start(settings: Settings, metrics_path: str | None = None) -> ApplierProcess:
    """This worker's applier process: ``profiles_outbox.after_commit`` wakes it from now on (unless
    it did not start: ``ready`` says)."""
    applier = ApplierProcess(settings, metrics_path)
    if applier.ready:
        profiles_outbox.use_applier(applier)
    else:
        log.warning("profile_applier_not_started: the store applies the profile outbox itself")
        applier.stop(timeout=0)
    return applier


def main(settings: Settings, channel: Connection, metrics_path: str | None) -> None:
    """The child: an ``Applier`` thread on a pool of its own, woken, settled and stopped by the
    worker's messages."""
    if metrics_path:
        os.environ[MULTIPROC_ENV] = metrics_path
        _count_in_files()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminated)
    configure_logging(settings.log_level, settings.log_format)
    rt = WorkerRuntime(settings, max_size=1)
    applier = profiles_outbox.Applier(rt)
    applier.start()
    tune_gc()
    fd = channel.fileno()
    try:
        os.write(fd, READY)
        _relay(fd, applier)
    except _Terminated:
        log.info("profile_applier_terminated: applying what is pending, then exiting")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut this short
        applier.stop(timeout=STOP_SECONDS)  # a round cut short rolls back: its rows stay pending
        rt.close()
        metrics.mark_process_dead()


def _relay(fd: int, applier: profiles_outbox.Applier) -> None:
    while True:
        messages = os.read(fd, 4096)
        if not messages:  # the worker is gone
            return
        if QUIT in messages:
            return
        if SETTLE in messages:
            os.write(fd, DONE if applier.settle() else FAILED)
        elif WAKE in messages:
            applier.wake()


def _count_in_files() -> None:
    """prometheus-client chooses between in-process values and the run's files when it is first
    imported (``schemas/metrics.py``). The child imports the worker's main module first (spawn), which
    may have imported it already: choose again, now that the directory is set (no metric exists yet:
    they are made on first use)."""
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


class _Terminated(Exception):
    """SIGTERM reached the applier process."""


def _terminated(_signum: int, _frame: object) -> None:
    raise _Terminated
