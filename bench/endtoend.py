"""Phases (g) and (h): the gateway and real ``trackgate worker`` processes together.

(g) accept -> row visible: a gateway under a constant rate of requests (``bench/latency``): ``/v1/batch``
calls of a few events each, as Segment's server SDKs send them, or single ``/v1/track`` calls; one worker
process storing; a poller asks PostgreSQL every ``POLL_S`` for the message ids answered 2xx and not yet
seen (``event_dedupe``'s primary key: its row commits in the transaction that stores the event). An
event's latency runs from its request's 2xx to the poll that first saw it (at most ``POLL_S`` late).

(h) scaling: the same backlog of ``/v1/track``-shaped jobs drained by one worker process, then by two;
events/s from the first stored row to the last, with the CPU split of the window: the workers, the
PostgreSQL backends of the bench database, redis-server, and the whole machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from bench import latency, servers
from bench.cpu import machine_busy_seconds, process_seconds, tree_seconds
from bench.persist import enqueue, reset_tables
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PERSIST_QUEUE
from trackgate.schemas.settings import ServerSettings

POLL_S = 0.05
REPO = Path(__file__).resolve().parent.parent


def worker_command() -> list[str]:
    return [sys.executable, "-m", "trackgate", "worker", "--queue", "persist"]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _stop(proc: subprocess.Popen) -> None:
    servers.stop(proc)


@dataclass
class Visibility:
    """Per message id: when its 2xx came (wall clock); when a poll first saw its row."""

    acked: dict[str, float] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    unseen: set[str] = field(default_factory=set)
    """Acknowledged and not seen yet: what the next poll asks for (at 5,000 events/s, going through
    every acknowledged id each poll took a noticeable part of a core from the load generator)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def latencies_ms(self) -> list[float]:
        return [1000 * (self.seen[m] - t) for m, t in self.acked.items() if m in self.seen]


def _wait_stored(database_url: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (count,) = conn.execute("SELECT count(*) FROM event_dedupe").fetchone() or (0,)
            if count >= n:
                return
            time.sleep(0.1)
    raise RuntimeError(f"the worker did not store the {n} warm-up events within {timeout:.0f}s")


def _poll(database_url: str, source_id: str, vis: Visibility, stop: threading.Event) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            finished = stop.is_set()
            with vis.lock:
                pending = list(vis.unseen)
            if pending:
                rows = conn.execute(
                    "SELECT message_id FROM event_dedupe WHERE source_id = %s AND message_id = ANY(%s)",
                    (source_id, pending),
                ).fetchall()
                now = time.time()
                with vis.lock:
                    for (m,) in rows:
                        vis.seen[m] = now
                        vis.unseen.discard(m)
            if finished:
                return
            time.sleep(POLL_S)


def visibility_phase(
    *,
    env: dict[str, str],
    database_url: str,
    redis_url: str,
    source_id: str,
    body: bytes,
    authorization: str,
    rate: float,
    duration_s: float,
    per_request: int = 1,
    settle_s: float = 30.0,
) -> dict:
    """Phase (g) at ``rate`` events/s: returns the figures (p50/p99/max ms, rate achieved, events not seen).

    ``per_request`` 1 posts ``body`` (a ``/v1/track`` call, message id ``bench-__SEQ__``) to
    ``/v1/track``; more posts it (a ``/v1/batch`` call of that many, ids ``bench-__SEQ__-<k>``) to
    ``/v1/batch``, at ``rate / per_request`` requests/s."""
    with redis.Redis.from_url(redis_url) as r:
        r.flushdb()
    reset_tables(database_url)
    vis = Visibility()
    stop = threading.Event()
    log = open(os.environ["BENCH_WORKER_LOG"], "w") if os.environ.get("BENCH_WORKER_LOG") else None  # noqa: SIM115
    worker = subprocess.Popen(
        worker_command(),
        cwd=REPO,
        env=_env({**env, "TRACKGATE_LOG_LEVEL": "INFO"} if log else env),
        start_new_session=True,
        stderr=log,
        stdout=log,
    )
    poller = threading.Thread(target=_poll, args=(database_url, source_id, vis, stop), daemon=True)
    try:
        with servers.serve("trackgate.gateway.asgi:app_from_env", factory=True, env=env) as (base, _):
            # warm the worker and the gateway (first connections, caches); measure once the worker has
            # stored the warm-up (it started with the gateway: its start-up is not the pipeline's latency)
            url = base + ("/v1/track" if per_request == 1 else "/v1/batch")
            requests_per_s = rate / per_request
            warm = latency.run_rate(url, body, authorization, rate=requests_per_s, duration_s=2, tag="gw")
            _wait_stored(database_url, warm.ok * per_request, settle_s)
            poller.start()
            suffixes = [""] if per_request == 1 else [f"-{k}" for k in range(per_request)]

            def on_ok(i: int, at: float) -> None:
                with vis.lock:
                    for suffix in suffixes:
                        message_id = f"bench-gx{i}{suffix}"
                        vis.acked[message_id] = at
                        vis.unseen.add(message_id)

            sent = latency.run_rate(
                url,
                body,
                authorization,
                rate=requests_per_s,
                duration_s=duration_s,
                tag="g",
                on_ok=on_ok,
            )
            deadline = time.monotonic() + settle_s
            while time.monotonic() < deadline:
                with vis.lock:
                    if len(vis.seen) >= len(vis.acked):
                        break
                time.sleep(0.2)
    finally:
        stop.set()
        if poller.is_alive():
            poller.join(10)
        _stop(worker)
    values = sorted(vis.latencies_ms())

    def pct(p: float) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")

    return {
        "rate": rate,
        "per_request": per_request,
        "duration_s": duration_s,
        "achieved_per_s": round(sent.ok * per_request / sent.duration_s, 1) if sent.duration_s else 0.0,
        "accept_p99_ms": round(sent.percentile(99), 2),
        "errors": sent.errors,
        "acked": len(vis.acked),
        "not_seen": len(vis.acked) - len(values),
        "p50_ms": round(pct(50), 1),
        "p99_ms": round(pct(99), 1),
        "max_ms": round(values[-1], 1) if values else float("nan"),
        "poll_ms": POLL_S * 1000,
    }


def _drain_with(settings: ServerSettings, env: dict[str, str], n_workers: int, n_events: int) -> dict:
    """Start ``n_workers`` burst workers on the queued backlog; time from the first stored row to the
    last (with every profile applied: no profile outbox row left), and take the CPU each part used
    meanwhile."""
    backend_start: dict[int, float] = {}
    backend_end: dict[int, float] = {}
    worker_seen: dict[int, float] = {}

    def cpu(r: redis.Redis, procs: list[subprocess.Popen]) -> dict[str, float]:
        info = r.info("cpu")
        for p in procs:  # a burst worker that finished first reads 0 (or nothing) from then on
            worker_seen[p.pid] = max(worker_seen.get(p.pid, 0.0), tree_seconds(p.pid))
        return {
            "workers": sum(worker_seen.values()),
            "redis": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "machine": machine_busy_seconds(),
        }

    with (
        psycopg.connect(settings.database_url, autocommit=True) as conn,
        redis.Redis.from_url(settings.redis_url) as r,
    ):
        (dbname,) = conn.execute("SELECT current_database()").fetchone() or ("",)
        procs = [
            subprocess.Popen([*worker_command(), "--burst"], cwd=REPO, env=_env(env), start_new_session=True)
            for _ in range(n_workers)
        ]
        first = last = None
        cpu0: dict[str, float] = {}
        cpu1: dict[str, float] = {}
        try:
            while True:
                # stored, and their profiles applied (an outbox row commits with its events)
                count, pending = conn.execute(
                    "SELECT (SELECT count(*) FROM event_dedupe), (SELECT count(*) FROM profile_outbox)"
                ).fetchone() or (0, 0)
                pids = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,),
                ).fetchall()
                now = time.monotonic()
                for p in procs:
                    worker_seen[p.pid] = max(worker_seen.get(p.pid, 0.0), tree_seconds(p.pid))
                for (pid,) in pids:
                    backend_end[pid] = process_seconds(pid)
                    if first is not None:
                        backend_start.setdefault(pid, 0.0)  # connected after the first row
                if first is None and count > 0:
                    first = now
                    cpu0 = cpu(r, procs)
                    backend_start = dict(backend_end)
                if count >= n_events and not pending:
                    last = now
                    cpu1 = cpu(r, procs)
                    break
                if all(p.poll() is not None for p in procs):
                    break
                time.sleep(0.05)
        finally:
            for p in procs:
                _stop(p)
    if first is None or last is None:
        raise RuntimeError(f"{n_workers} worker(s) did not store the {n_events} events")
    seconds = max(last - first, 1e-6)
    share = {k: round(100 * (cpu1[k] - cpu0[k]) / seconds) for k in cpu0}
    postgres = sum(backend_end[pid] - start for pid, start in backend_start.items())
    share["postgres"] = round(100 * postgres / seconds)
    share["other"] = share["machine"] - share["workers"] - share["postgres"] - share["redis"]
    return {
        "workers": n_workers,
        "events_per_s": round(n_events / seconds),
        "seconds": round(seconds, 2),
        "cpu": share,
    }


def scaling_phase(settings: ServerSettings, env: dict[str, str], events: list[Event]) -> dict:
    """Phase (h): the same backlog (``/v1/track``-shaped jobs) drained by one worker, then by two."""
    runs = []
    for n in (1, 2):
        with redis.Redis.from_url(settings.redis_url) as r:
            r.flushdb()
        reset_tables(settings.database_url)
        enqueue(settings, events, clients=64, per_request=1)
        with redis.Redis.from_url(settings.redis_url) as r:
            jobs = r.llen(f"rq:queue:{PERSIST_QUEUE}")
        run = _drain_with(settings, env, n, len(events))
        run["jobs"] = jobs
        runs.append(run)
    return {"runs": runs, "ratio": round(runs[1]["events_per_s"] / runs[0]["events_per_s"], 2)}
