"""Where the processes of one run keep their Prometheus values (``PROMETHEUS_MULTIPROC_DIR``).

prometheus-client's multiprocess mode: each process writes its counters to memory-mapped files in one
directory and ``GET /metrics`` sums them, so a scrape that lands on any gateway process sees the whole
run. The directory must start empty for each run (files of an earlier run would be summed in), and must
be in the environment before any process of the run first uses a metric. How each command sets it up:

- ``trackgate up``: ``<data dir>/metrics`` (or ``PROMETHEUS_MULTIPROC_DIR`` when set), emptied at start
  and shared by the gateway and both workers: one ``/metrics`` shows everything.
- ``trackgate serve``: ``PROMETHEUS_MULTIPROC_DIR`` when set, emptied at start (so start workers that
  share it after the gateway); else a fresh temporary directory, removed when the gateway stops.
- ``trackgate worker``: joins ``PROMETHEUS_MULTIPROC_DIR`` when set (never empties it); else, serving
  its own ``/metrics`` on ``TRACKGATE_WORKER_METRICS_PORT`` with its profile applier in a child process
  (``workers/applier_process.py``), a fresh temporary directory for the two of them, removed when it
  stops; else it counts in its own process. On exit it marks itself dead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trackgate.schemas.metrics import MULTIPROC_ENV


def share(path: str | os.PathLike[str]) -> str:
    """Make ``path`` this run's directory: created, emptied of an earlier run's files, put in the
    environment that this process and the ones it starts inherit."""
    folder = Path(path).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.db"):
        old.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return str(folder)


@contextlib.contextmanager
def for_gateway(enabled: bool = True) -> Iterator[str | None]:
    """``trackgate serve``: the given directory emptied, or a temporary one for this run."""
    if not enabled:
        yield None
        return
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        yield share(given)
        return
    with _temporary("trackgate-metrics-") as made:
        yield made


@contextlib.contextmanager
def for_worker(enabled: bool) -> Iterator[str | None]:
    """``trackgate worker``: the shared directory when set (kept as it is); else, when ``enabled`` (it
    serves its own ``/metrics`` and has a child process that counts too), a temporary one for this run."""
    given = os.environ.get(MULTIPROC_ENV)
    if given or not enabled:
        yield given or None
        return
    with _temporary("trackgate-worker-metrics-") as made:
        yield made


@contextlib.contextmanager
def _temporary(prefix: str) -> Iterator[str]:
    """A fresh directory made this run's, out of the environment and removed when the run ends."""
    made = tempfile.mkdtemp(prefix=prefix)
    try:
        yield share(made)
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(made, ignore_errors=True)


def for_up(data_dir: str, enabled: bool = True) -> str | None:
    """``trackgate up``: one directory for the gateway and the workers it starts."""
    if not enabled:
        return None
    return share(os.environ.get(MULTIPROC_ENV) or Path(data_dir) / "metrics")
