"""trackgate's benchmark: one command, one run, one machine, eight measurements against their baselines.

    python -m bench                 # from the repository root (or: python bench/run.py)
    python -m bench --duration 5 --connections 64 --json bench.json

(a) a bare Starlette hello-world (``bench/hello.py``), requests/s;
(b) single-event ``POST /v1/track`` on the gateway, acknowledged only once the event is in Redis;
(c) ``POST /v1/batch`` with 100 events a request, events/s;
(d) events persisted per second by one RQ worker, against a raw COPY of the same rows;
(e) the enrichment chain's cost (``bench/enrich.py``);
(f) p99 of ``/v1/track`` at half its maximum rate over hello-world's p99 at that rate (``bench/latency``);
(g) accept -> row visible, p99, at a constant rate with one worker process (``bench/endtoend.py``): the
    issue's 5,000 events/s for 60 s as Segment's Node SDK sends them (``/v1/batch`` of 15), then
    ``/v1/track`` calls at 1,000/s (reported);
(h) 2 worker processes / 1 on the same backlog, with the CPU split.

Goals (issue 14): (b) >= 0.8 x (a) in requests/s; (c) >= 4 x (a) in events/s; (d) >= 0.5 x raw COPY
(>= 0.3 x for /v1/track-shaped jobs); (e) <= 1.3; (f) <= 2; (g) <= 1 s; (h) reported.

(a), (b) and (c) each run in their own uvicorn subprocess with identical settings (one process,
uvloop, httptools, no access log), loaded by wrk with identical settings (``-t1 -c64`` by default),
after a short warm-up. After (b) and (c) the gateway is stopped gracefully and the events in the RQ
queue are counted: every 2xx must be there (the durable ack), and nothing beyond the requests still in
flight when wrk stopped. Everything runs on 127.0.0.1: a fresh PostgreSQL database (dropped at the
end) and one Redis database (flushed before each phase; db 0 is refused).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import resource
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlsplit
from urllib.request import urlopen

from redis.connection import parse_url

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import psycopg  # noqa: E402
import redis  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from bench import endtoend, latency, loadgen, payloads, persist, profiling, queued, servers  # noqa: E402
from bench import enrich as enrich_phase  # noqa: E402
from bench.cpu import machine_busy_seconds, process_seconds  # noqa: E402
from trackgate.migrate import migrate  # noqa: E402
from trackgate.schemas.jobs import PERSIST_QUEUE  # noqa: E402
from trackgate.schemas.settings import ServerSettings, settings_from_env  # noqa: E402
from trackgate.sources import add_source  # noqa: E402

GOAL_TRACK = 0.8
GOAL_BATCH = 4.0
GOAL_PERSIST = 0.5
GOAL_PERSIST_TRACK = 0.3
"""(d) for ``/v1/track``-shaped jobs (the second ``--worker-request-sizes`` run, 1-event requests)."""
GOAL_TAIL = 2.0
"""(f) p99 of ``/v1/track`` at half its maximum rate over hello-world's p99 at that rate (at most)."""
GOAL_VISIBLE_MS = 1000.0
"""(g) accept -> row visible, p99, with one worker at a sustained rate (at most)."""
VISIBLE_KEPT_UP = 0.95
"""(g) passes only when its events were acknowledged at this part of the asked rate, at least."""
BATCH_EVENTS = 100
GATEWAY_APP = "trackgate.gateway.asgi:app_from_env"
LOOPBACK = {"127.0.0.1", "localhost", "::1", ""}


@dataclass
class HttpPhase:
    name: str
    what: str
    events_per_request: int
    requests_ok: int
    non_2xx: int
    socket_errors: int
    duration_s: float
    req_per_s: float
    events_per_s: float
    latency_ms: dict[str, float]
    cpu: dict[str, float] = field(default_factory=dict)
    """Share of one core used during the measured window: server, redis-server, wrk, whole machine."""
    queued: dict | None = None
    durable_ok: bool | None = None
    note: str = ""
    rounds_req_per_s: list[int] = field(default_factory=list)
    round: int = 1


@dataclass
class Report:
    machine: dict
    settings: dict
    http: list[HttpPhase] = field(default_factory=list)
    """One run per phase: the median of its rounds."""
    http_rounds: list[HttpPhase] = field(default_factory=list)
    """Every round of every phase."""
    persist: list[dict] = field(default_factory=list)
    enrich: dict | None = None
    """Phase (e): the enrichment chain's cost per event against storing alone."""
    tail: dict | None = None
    """Phase (f): p99 at a constant rate, hello-world and ``/v1/track``."""
    visible: list[dict] = field(default_factory=list)
    """Phase (g): accept -> row visible with one worker at a constant rate; the first run is the goal's
    (``--visible-rate`` events/s in ``--visible-batch``-event requests), the second (if any) single
    ``/v1/track`` calls at ``--visible-track-rate``."""
    scaling: dict | None = None
    """Phase (h): 2 workers / 1 worker on the same backlog, with the CPU split."""
    ratios: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- machine ----------------------------------------------------------------------------------


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "?"
    versions: dict[str, str | None] = {}
    for dist in ("starlette", "uvicorn", "uvloop", "httptools", "msgspec", "redis", "rq", "psycopg"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    affinity: int | None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "nproc": affinity,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "packages": versions,
    }


# --- setup ------------------------------------------------------------------------------------


def _check_loopback(url: str, what: str) -> None:
    host = str((urlsplit(url).hostname if "://" in url else conninfo_to_dict(url).get("host")) or "")
    if host not in LOOPBACK and not host.startswith("/"):
        raise SystemExit(f"{what} must be on this machine (127.0.0.1), got host {host!r}")


def _redis_db(url: str) -> int:
    """The database a Redis URL names (``/N``, or ``?db=N`` of a unix socket's), as redis-py reads it."""
    return int(parse_url(url).get("db") or 0)


class Database:
    """A fresh database for this run, migrated, with one Segment source; dropped on close."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.name = f"trackgate_bench_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
            (self.server_version,) = conn.execute("SHOW server_version").fetchone() or ("?",)
        self.url = make_conninfo(admin_url, dbname=self.name)
        migrate(self.url)
        self.write_key = "wk_bench_" + secrets.token_hex(12)
        self.source, _ = add_source(self.url, "segment", "bench", self.write_key)

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# --- HTTP phases ------------------------------------------------------------------------------


def _queued(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as r:
        return int(r.llen(f"rq:queue:{PERSIST_QUEUE}"))


def _flush(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as r:
        r.flushdb()


def _cpu_now(pid: int, redis_url: str) -> dict[str, float]:
    """CPU seconds used so far by the server, redis-server, finished children (wrk), the machine."""
    with redis.Redis.from_url(redis_url) as r:
        info = r.info("cpu")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "server": process_seconds(pid),
        "redis": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        "wrk": children.ru_utime + children.ru_stime,
        "machine": machine_busy_seconds(),
        "t": time.monotonic(),
    }


def _cpu_share(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    wall = after["t"] - before["t"]
    return {k: round(100 * (after[k] - before[k]) / wall, 1) for k in before if k != "t"}


def _wait_quiet(redis_url: str, timeout: float = 20.0, still: float = 1.0) -> None:
    """Wait until the queue has not grown for ``still`` seconds: requests the warm-up cut off at its
    end are still being answered (and published) after wrk has gone."""
    deadline = time.monotonic() + timeout
    with redis.Redis.from_url(redis_url) as r:
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = r.llen(f"rq:queue:{PERSIST_QUEUE}")
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= still:
                return
            time.sleep(0.1)


class PhaseSpec(TypedDict):
    """What differs between the HTTP phases (a), (b), (c): ``http_phase``'s keyword arguments."""

    what: str
    app: str
    factory: bool
    env: dict[str, str]
    path: str
    body_file: Path
    events_per_request: int
    check_queue: bool


class PhaseCommon(TypedDict):
    """``http_phase``'s keyword arguments that every HTTP phase shares."""

    authorization: str
    args: argparse.Namespace
    wrk: loadgen.WrkSettings
    redis_url: str


def http_phase(
    name: str,
    what: str,
    *,
    label: str,
    profile: bool = True,
    app: str,
    factory: bool,
    env: dict[str, str],
    path: str,
    body_file: Path,
    events_per_request: int,
    authorization: str,
    args: argparse.Namespace,
    wrk: loadgen.WrkSettings,
    redis_url: str,
    check_queue: bool,
) -> HttpPhase:
    ready = (
        {"ready_path": "/health", "ready_method": "GET"}
        if factory
        else {
            "ready_path": path,
            "ready_method": "POST",
            "ready_headers": {"Content-Type": "application/json"},
            "ready_body": b"{}",
        }
    )
    _flush(redis_url)
    print(f"  ({label}) {what}: starting server, warming up {args.warmup:g}s ...", flush=True)
    with servers.serve(app, factory=factory, env=env, **ready) as (base, proc):
        url = base + path
        if args.warmup > 0:
            loadgen.run_wrk(url, body_file, authorization, args.warmup, wrk, tag="w")
        if check_queue:
            _wait_quiet(redis_url)
        else:
            time.sleep(0.3)
        _flush(redis_url)
        stop_profile = None
        if args.profile and profile:
            stop_profile = profiling.attach(proc.pid, args.profile / f"{name}.txt", duration_s=args.duration)
        print(f"  ({label}) measuring {args.duration:g}s ...", flush=True)
        cpu_before = _cpu_now(proc.pid, redis_url)
        result = loadgen.run_wrk(url, body_file, authorization, args.duration, wrk, tag="m")
        cpu = _cpu_share(cpu_before, _cpu_now(proc.pid, redis_url))
        if stop_profile:
            stop_profile()
    # The server has shut down gracefully: all it accepted is in Redis now.
    phase = HttpPhase(
        name=name,
        what=what,
        events_per_request=events_per_request,
        requests_ok=result.ok,
        non_2xx=result.non_2xx,
        socket_errors=result.socket_errors,
        duration_s=result.duration_s,
        req_per_s=result.rps,
        events_per_s=result.rps * events_per_request,
        latency_ms={k: v / 1000 for k, v in result.latency_us.items()},
        cpu=cpu,
    )
    if check_queue:
        with redis.Redis.from_url(redis_url) as r:
            q = queued.count_queued(r)
        acked = result.ok * events_per_request
        # wrk stops counting at the deadline: requests then in flight (at most one per connection)
        # may still have been accepted and published, but never acknowledged.
        in_flight = wrk.connections * events_per_request
        phase.queued = {
            "jobs": q.jobs,
            "events": q.events,
            "events_per_job": round(q.events_per_job, 1),
            "acked_events": acked,
            "unacked_in_flight": q.events - acked,
            "distinct_ids": q.distinct_ids,
            "distinct_message_ids": q.distinct_message_ids,
            "bad_jobs": q.bad_jobs,
        }
        phase.durable_ok = (
            acked <= q.events <= acked + in_flight
            and q.distinct_ids == q.events
            and q.distinct_message_ids == q.events
            and q.bad_jobs == 0
        )
        if not phase.durable_ok:
            phase.note = "queue check FAILED"
    return phase


# --- the run ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10, help="seconds of load per HTTP phase (10)")
    p.add_argument("--warmup", type=float, default=2, help="seconds of warm-up load per server (2)")
    p.add_argument("--connections", "-c", type=int, default=64, help="wrk connections (64)")
    p.add_argument("--threads", "-t", type=int, default=1, help="wrk threads (1)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the HTTP phases this many times (a, b, c, a, b, c, ...); "
        "each phase reports its median round (1)",
    )
    p.add_argument("--events", type=int, default=50_000, help="events for the worker phase (50000)")
    p.add_argument(
        "--worker-rounds",
        type=int,
        default=1,
        help="run phase (d) this many times (raw COPY, then each request size, again and again); "
        "each ratio is the median of its rounds' ratios, each row the run of that median (1)",
    )
    p.add_argument(
        "--worker-request-sizes",
        default="100,1",
        help="phase (d) enqueues the events as requests of these sizes, one run each; the first is "
        "the one the ratio uses (100,1)",
    )
    p.add_argument("--phases", default="abcdefgh", help="which phases to run (abcdefgh)")
    p.add_argument(
        "--tail-rate",
        type=float,
        default=0,
        help="(f) requests/s for both servers (default: half of (b)'s req/s in this run)",
    )
    p.add_argument("--tail-duration", type=float, default=10, help="(f) seconds at that rate per server (10)")
    p.add_argument(
        "--visible-rate",
        type=float,
        default=5000,
        help="(g) events/s sustained with one worker, the goal's run (5000, the issue's figure)",
    )
    p.add_argument(
        "--visible-batch",
        type=int,
        default=15,
        help="(g) events a request in the goal's run: a /v1/batch call of that many (15: the flushAt of "
        "Segment's Node SDK); 1 posts single /v1/track calls",
    )
    p.add_argument("--visible-duration", type=float, default=60, help="(g) seconds at that rate (60)")
    p.add_argument(
        "--visible-track-rate",
        type=float,
        default=1000,
        help="(g) then single /v1/track calls at this rate, reported (1000; 0: no such run); at 5,000/s "
        "the gateway and the Python load generator take both cores of a 2-core machine",
    )
    p.add_argument(
        "--visible-track-duration", type=float, default=30, help="(g) seconds of that /v1/track run (30)"
    )
    p.add_argument(
        "--scaling-events", type=int, default=20_000, help="(h) backlog: events as 1-event requests (20000)"
    )
    p.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="an existing database to connect to; the bench creates and drops its own next to it",
    )
    p.add_argument(
        "--redis",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        help="a Redis database the bench may flush (not db 0)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-' for stdout)")
    p.add_argument("--profile", metavar="DIR", type=Path, help="py-spy each measured window into DIR")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--keep-db", action="store_true", help="do not drop the bench database")
    args = p.parse_args(argv)
    args.phases = set(args.phases.lower())
    args.worker_request_sizes = [int(x) for x in str(args.worker_request_sizes).split(",") if x.strip()]
    if args.duration <= 0 or args.duration > 120 or args.warmup < 0 or args.warmup > 30:
        p.error("--duration must be in (0, 120] and --warmup in [0, 30] seconds")
    if not 1 <= args.rounds <= 5:
        p.error("--rounds must be in [1, 5]")
    if not 1 <= args.worker_rounds <= 5:
        p.error("--worker-rounds must be in [1, 5]")
    if not 1 <= args.events <= 1_000_000:
        p.error("--events must be in [1, 1000000]")
    if args.visible_rate <= 0 or args.visible_track_rate < 0:
        p.error("--visible-rate must be more than 0 and --visible-track-rate 0 (none) or more")
    if not 1 <= args.visible_batch <= 100:
        p.error("--visible-batch must be in [1, 100] events a request")
    if not (0 < args.visible_duration <= 600 and 0 < args.visible_track_duration <= 600):
        p.error("--visible-duration and --visible-track-duration must be in (0, 600] seconds")
    return args


def run(args: argparse.Namespace) -> Report:
    _check_loopback(args.postgres, "--postgres")
    _check_loopback(args.redis, "--redis")
    if _redis_db(args.redis) == 0:
        raise SystemExit("--redis must name a database other than 0 (the bench flushes it), e.g. /12")
    if args.phases & set("abc"):
        loadgen.wrk_path()  # fail early, with install instructions
    if args.profile:
        if profiling.py_spy() is None:
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        args.profile.mkdir(parents=True, exist_ok=True)

    wrk = loadgen.WrkSettings(threads=args.threads, connections=args.connections)
    machine = machine_info()
    with redis.Redis.from_url(args.redis) as r:
        machine["redis"] = r.info("server").get("redis_version")
    report = Report(
        machine=machine,
        settings={
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "wrk": " ".join(wrk.args()),
            "wrk_version": loadgen.wrk_version() if args.phases & set("abc") else None,
            "uvicorn": "gateway.server.uvicorn_options "
            + " ".join(servers.UVICORN_SETTINGS)
            + " (1 process)",
            "events_d": args.events,
            "rounds": args.rounds,
            "worker_rounds": args.worker_rounds,
            "profiling": bool(args.profile),
        },
    )
    print(_machine_line(machine), flush=True)

    db = Database(args.postgres)
    machine["postgres"] = db.server_version
    authorization = "Basic " + base64.b64encode(f"{db.write_key}:".encode()).decode()
    env = {
        "TRACKGATE_DATABASE_URL": db.url,
        "TRACKGATE_REDIS_URL": args.redis,
        "TRACKGATE_LOG_LEVEL": "WARNING",
    }
    try:
        with tempfile.TemporaryDirectory(prefix="trackgate-bench-") as tmp:
            track_file = Path(tmp) / "track.json"
            track_file.write_bytes(payloads.track_body())
            batch_file = Path(tmp) / "batch.json"
            batch_file.write_bytes(payloads.batch_body(BATCH_EVENTS))
            report.settings["track_body_bytes"] = track_file.stat().st_size
            report.settings["batch_body_bytes"] = batch_file.stat().st_size
            common = PhaseCommon(authorization=authorization, args=args, wrk=wrk, redis_url=args.redis)
            specs: dict[str, PhaseSpec] = {
                "a": {
                    "what": "hello-world", "app": "bench.hello:app", "factory": False, "env": {},
                    "path": "/v1/track", "body_file": track_file, "events_per_request": 1,
                    "check_queue": False,
                },
                "b": {
                    "what": "/v1/track", "app": GATEWAY_APP, "factory": True, "env": env,
                    "path": "/v1/track", "body_file": track_file, "events_per_request": 1,
                    "check_queue": True,
                },
                "c": {
                    "what": f"/v1/batch x{BATCH_EVENTS}", "app": GATEWAY_APP,
                    "factory": True, "env": env, "path": "/v1/batch", "body_file": batch_file,
                    "events_per_request": BATCH_EVENTS, "check_queue": True,
                },
            }  # fmt: skip
            runs: dict[str, list[HttpPhase]] = {name: [] for name in specs if name in args.phases}
            for i in range(args.rounds):
                for name, runs_of in runs.items():
                    label = name if args.rounds == 1 else f"{name}, round {i + 1}/{args.rounds}"
                    phase = http_phase(name, label=label, profile=i == 0, **specs[name], **common)
                    phase.round = i + 1
                    runs_of.append(phase)
            for runs_of in runs.values():
                report.http_rounds.extend(runs_of)
                # the median run stands for the phase (the upper one of an even number)
                chosen = sorted(runs_of, key=lambda p: p.req_per_s)[len(runs_of) // 2]
                chosen.rounds_req_per_s = [round(p.req_per_s) for p in runs_of]
                report.http.append(chosen)
            if "f" in args.phases:
                b = next((p for p in report.http if p.name == "b"), None)
                rate = args.tail_rate or (b.req_per_s / 2 if b else 0)
                if rate <= 0:
                    raise SystemExit("(f) needs (b) in the same run, or --tail-rate")
                report.tail = tail_phase(args, env, authorization, track_file.read_bytes(), rate)
            if "g" in args.phases:
                visible_runs: list[tuple[float, int, float]] = [
                    (args.visible_rate, args.visible_batch, args.visible_duration)
                ]
                if args.visible_track_rate > 0:
                    visible_runs.append((args.visible_track_rate, 1, args.visible_track_duration))
                for rate, per_request, duration in visible_runs:
                    shape = "/v1/track" if per_request == 1 else f"/v1/batch of {per_request}"
                    print(f"  (g) accept -> visible, {rate:g} events/s ({shape}) for {duration:g}s ...")
                    body = (
                        track_file.read_bytes()
                        if per_request == 1
                        else payloads.batch_body(per_request, seed=3)
                    )
                    report.visible.append(
                        endtoend.visibility_phase(
                            env=env,
                            database_url=db.url,
                            redis_url=args.redis,
                            source_id=db.source.id,
                            body=body,
                            authorization=authorization,
                            rate=rate,
                            duration_s=duration,
                            per_request=per_request,
                        )
                    )
        if "h" in args.phases:
            print(f"  (h) scaling: {args.scaling_events} events as 1-event requests, 1 then 2 workers ...")
            events = payloads.canonical_events(args.scaling_events, db.source.id)
            persist.ensure_partitions(db.url, events)
            report.scaling = endtoend.scaling_phase(worker_settings(args, db), env, events)
        if "d" in args.phases:
            report.persist = persist_phase(args, db)
        if "e" in args.phases:
            report.enrich = enrich_phase_run(args, db)
    finally:
        _flush(args.redis)
        if not args.keep_db:
            db.drop()

    _ratios(report)
    for phase in report.http_rounds:
        other = phase.cpu.get("machine", 0) - sum(phase.cpu.get(k, 0) for k in ("server", "redis", "wrk"))
        if other > 25:
            where = (
                phase.name if len(report.http_rounds) == len(report.http) else f"{phase.name}#{phase.round}"
            )
            report.warnings.append(
                f"({where}) other processes used {other:.0f}% of a core during the measured window: "
                "figures are disturbed (re-run on a quiet machine; --rounds 3 reports medians)"
            )
        if phase.durable_ok is False:
            report.problems.append(f"({phase.name}) queued events do not match the 2xx count: {phase.queued}")
        if phase.non_2xx or phase.socket_errors:
            report.problems.append(
                f"({phase.name}) {phase.non_2xx} non-2xx responses, {phase.socket_errors} socket errors"
            )
    return report


def worker_settings(args: argparse.Namespace, db: Database) -> ServerSettings:
    """The worker's settings: the bench's servers, and any other ``TRACKGATE_*`` of the environment
    (``TRACKGATE_WORKER_GROUP_JOBS=1`` measures one job per transaction)."""
    return settings_from_env(database_url=db.url, redis_url=args.redis, log_level="WARNING").require()


def _flush_counts(base: str) -> tuple[float, float] | None:
    """The gateway's (flushes, lingered flushes) from its ``/metrics`` (None: a commit without them, or
    metrics off). A scrape moves the serving process's latest counts in first; the bench's gateway is
    one process."""
    try:
        with urlopen(base + "/metrics", timeout=5) as answer:
            page = answer.read().decode()
    except OSError:
        return None
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            found[sample.name] = sample.value
    flushes = found.get("trackgate_publish_flushes_total")
    lingered = found.get("trackgate_publish_lingered_flushes_total")
    return None if flushes is None or lingered is None else (flushes, lingered)


def tail_phase(
    args: argparse.Namespace, env: dict[str, str], authorization: str, body: bytes, rate: float
) -> dict:
    """(f): hello-world, then ``/v1/track``, each alone at the same constant rate; p99 of each."""
    out: dict = {"rate": round(rate), "duration_s": args.tail_duration, "profiled": bool(args.profile)}
    for name, app, factory, server_env in (
        ("hello", "bench.hello:app", False, {}),
        ("track", GATEWAY_APP, True, env),
    ):
        _flush(args.redis)
        print(f"  (f) {name} at {rate:,.0f} requests/s for {args.tail_duration:g}s ...", flush=True)
        ready = (
            {"ready_path": "/health"}
            if factory
            else {"ready_path": "/v1/track", "ready_method": "POST", "ready_body": b"{}"}
        )
        with servers.serve(app, factory=factory, env=server_env, **ready) as (base, proc):
            url = base + "/v1/track"
            latency.run_rate(url, body, authorization, rate=rate, duration_s=2, tag=f"fw{name}")
            stop_profile = None
            if args.profile:
                stop_profile = profiling.attach(
                    proc.pid, args.profile / f"f_{name}.txt", duration_s=args.tail_duration
                )
            counts = _flush_counts(base) if factory else None
            server_cpu = process_seconds(proc.pid)
            jobs = _queued(args.redis)
            result = latency.run_rate(
                url, body, authorization, rate=rate, duration_s=args.tail_duration, tag=f"f{name}"
            )
            server_cpu = process_seconds(proc.pid) - server_cpu
            jobs = _queued(args.redis) - jobs
            after = _flush_counts(base) if counts is not None else None
            if stop_profile:
                stop_profile()
        out[name] = result.summary()
        # the server's CPU at this rate: a request's cost here, with small flushes, is (f)'s cause
        out[name]["server_cpu_pct"] = round(100 * server_cpu / result.duration_s, 1)
        out[name]["server_cpu_us"] = round(1e6 * server_cpu / result.ok, 1) if result.ok else None
        # requests a job: how many each of the gateway's flushes carried (hello-world queues none)
        out[name]["requests_a_job"] = round(result.ok / jobs, 1) if jobs > 0 else None
        # the share of the gateway's flushes that lingered (TRACKGATE_PUBLISH_LINGER_ABOVE_CPU_PCT)
        if counts is not None and after is not None and after[0] > counts[0]:
            out[name]["lingered_pct"] = round(100 * (after[1] - counts[1]) / (after[0] - counts[0]))
    out["ratio"] = round(out["track"]["p99_ms"] / out["hello"]["p99_ms"], 2)
    return out


def persist_phase(args: argparse.Namespace, db: Database) -> list[dict]:
    settings = worker_settings(args, db)
    print(f"  (d) building {args.events} canonical events ...", flush=True)
    events = payloads.canonical_events(args.events, db.source.id)
    persist.ensure_partitions(db.url, events)

    # warm-up: a few jobs through the worker, a small COPY (connections, catalog caches, partitions)
    warm = payloads.canonical_events(min(2000, args.events), db.source.id)
    for e in warm:
        e.message_id = "warm-" + e.message_id
    persist.run_worker_phase(settings, warm, clients=args.connections, per_request=BATCH_EVENTS)
    persist.run_copy_phase(db.url, warm)

    rounds = args.worker_rounds
    copies: list[persist.Timed] = []
    runs: list[list[persist.Timed]] = [[] for _ in args.worker_request_sizes]
    for r in range(rounds):
        of = "" if rounds == 1 else f" (round {r + 1}/{rounds})"
        print(f"  (d) raw COPY{of} ...", flush=True)
        copies.append(persist.run_copy_phase(db.url, events))
        for i, size in enumerate(args.worker_request_sizes):
            print(f"  (d) worker, events enqueued as {size}-event requests{of} ...", flush=True)
            profile = None
            if args.profile and r == 0:
                out = args.profile / f"d{'' if i == 0 else '_' + str(size)}.txt"

                def profile(out=out):  # with the worker's profile applier process
                    return profiling.attach(os.getpid(), out, idle=True, subprocesses=True)

            timed = persist.run_worker_phase(
                settings, events, clients=args.connections, per_request=size, profile=profile
            )
            runs[i].append(timed)
    results = persist_rows(copies, runs)
    built, copied = persist.run_prebuilt_phase(db.url, events)
    for t in (built, copied):
        results.append({"role": "info", **asdict(t), "events_per_s": t.events_per_s})
    persist.reset_tables(db.url)
    return results


def persist_rows(copies: list[persist.Timed], runs: list[list[persist.Timed]]) -> list[dict]:
    """Phase (d)'s rows from its rounds: the median raw COPY (the baseline), then per request size the
    run whose ratio to its own round's COPY is the median of that size's rounds (runs sharing a minute
    of the VM are compared, not the best with the best; of an even number, the lower middle one). With
    more than one round, each size's row keeps every round's ratio (``round_ratios``) and the median
    (``ratio``), which the ratio uses."""
    order = sorted(range(len(copies)), key=lambda k: copies[k].events_per_s)
    copy = copies[order[(len(order) - 1) // 2]]
    results: list[dict] = [{"role": "baseline", **asdict(copy), "events_per_s": copy.events_per_s}]
    for i, size_runs in enumerate(runs):
        ratios = [t.events_per_s / c.events_per_s for t, c in zip(size_runs, copies, strict=True)]
        median = sorted(range(len(ratios)), key=ratios.__getitem__)[(len(ratios) - 1) // 2]
        timed = size_runs[median]
        row = {
            "role": "measured" if i == 0 else "info",
            **asdict(timed),
            "events_per_s": timed.events_per_s,
            "events_per_job": round(timed.events / timed.jobs, 1) if timed.jobs else None,
        }
        if len(ratios) > 1:
            row["round_ratios"] = [round(x, 3) for x in ratios]
            row["ratio"] = ratios[median]
        results.append(row)
    return results


def enrich_phase_run(args: argparse.Namespace, db: Database) -> dict:
    settings = worker_settings(args, db)
    print(f"  (e) enrichment chain: store vs store+chain, {args.events} events ...", flush=True)
    events = payloads.canonical_events(args.events, db.source.id)
    for e in events:
        e.message_id = "e-" + e.message_id
    persist.ensure_partitions(db.url, events)
    return enrich_phase.run_phase(settings, events)


def _ratios(report: Report) -> None:
    by = {p.name: p for p in report.http}
    a = by.get("a")
    if a and "b" in by:
        value = by["b"].req_per_s / a.req_per_s
        report.ratios.append(_ratio("(b) / (a)", "requests/s", value, GOAL_TRACK))
    if a and "c" in by:
        value = by["c"].events_per_s / a.req_per_s
        report.ratios.append(_ratio("(c) / (a)", "events/s vs hello requests/s", value, GOAL_BATCH))
    if report.enrich:
        e = report.enrich
        report.ratios.append(
            {
                "ratio": "(e) store+chain / store",
                "unit": "seconds per event (at most)",
                "value": round(e["ratio"], 3),
                "goal": e["goal"],
                "pass": e["pass"],
                "at_most": True,
            }
        )
    measured = [r for r in report.persist if r["role"] in ("measured", "info") and r.get("jobs", 0) > 1]
    baseline = [r for r in report.persist if r["role"] == "baseline"]
    if measured and baseline:
        copy = baseline[0]["events_per_s"]

        def ratio_of(row: dict) -> float:  # the median of its rounds' ratios, when it had several
            return row["ratio"] if "ratio" in row else row["events_per_s"] / copy

        def rounds_of(row: dict) -> str:
            n = len(row.get("round_ratios", ()))
            return f", median of {n} rounds" if n else ""

        unit = f"events/s, {measured[0]['events_per_job']:g}-event jobs{rounds_of(measured[0])}"
        report.ratios.append(_ratio("(d) / raw COPY", unit, ratio_of(measured[0]), GOAL_PERSIST))
        if len(measured) > 1:
            unit = (
                f"events/s, {measured[1]['events_per_job']:g}-event jobs (/v1/track traffic)"
                f"{rounds_of(measured[1])}"
            )
            value = ratio_of(measured[1])
            report.ratios.append(_ratio("(d) track / raw COPY", unit, value, GOAL_PERSIST_TRACK))
    if report.tail:
        t = report.tail
        report.ratios.append(
            {
                "ratio": "(f) p99 track / hello",
                "unit": f"p99 at {t['rate']:,} requests/s, half of (b) (at most)",
                "value": t["ratio"],
                "goal": GOAL_TAIL,
                "pass": t["ratio"] <= GOAL_TAIL,
                "at_most": True,
            }
        )
    for i, v in enumerate(report.visible):
        seconds = v["p99_ms"] / 1000
        goal = i == 0  # the goal's run; a /v1/track run after it is reported
        if v["not_seen"]:  # acknowledged and not stored within 30 s: a check failed, whatever the run
            report.problems.append(
                f"(g) {v['not_seen']:,} acknowledged events not visible within 30 s {_shape(v)}"
            )
        if v.get("errors"):
            report.problems.append(f"(g) {v['errors']:,} requests not answered 2xx {_shape(v)}")
        report.ratios.append(
            {
                "ratio": "(g) accept->row p99" if goal else "(g) /v1/track ->row p99",
                "unit": f"seconds (not a ratio), at {v['rate']:g} events/s {_shape(v)}, one worker"
                + (" (at most)" if goal else " (reported, no goal)"),
                "value": round(seconds, 3),
                "goal": GOAL_VISIBLE_MS / 1000 if goal else None,
                "pass": not goal
                or (seconds <= GOAL_VISIBLE_MS / 1000 and v["not_seen"] == 0 and _kept_up(v)),
                "at_most": True,
                "suffix": "s",
            }
        )
    if report.scaling:
        sc = report.scaling
        report.ratios.append(
            {
                "ratio": "(h) 2 workers / 1",
                "unit": "events/s on the same backlog (reported, no goal)",
                "value": sc["ratio"],
                "goal": None,
                "pass": True,
            }
        )


def _kept_up(visible: dict) -> bool:
    """A PASS at a rate is one measured at that rate: not when the load generator fell behind."""
    return visible["achieved_per_s"] >= VISIBLE_KEPT_UP * visible["rate"]


def _shape(visible: dict) -> str:
    n = visible.get("per_request", 1)
    return "as /v1/track calls" if n == 1 else f"as /v1/batch calls of {n}"


def _ratio(name: str, unit: str, value: float, goal: float) -> dict:
    return {"ratio": name, "unit": unit, "value": round(value, 3), "goal": goal, "pass": value >= goal}


# --- output -----------------------------------------------------------------------------------


def _machine_line(m: dict) -> str:
    return (
        f"machine: {m['nproc']} CPU(s) ({m['cpu_model']}), Python {m['python']} "
        f"({m['implementation']}), Linux {m['kernel']}"
    )


def _postgres_bound(persist: list[dict]) -> list[str]:
    """What PostgreSQL's own CPU a stored event allows (d) at most. The worker's statements run on two
    backends (the store's and the profile applier's, ``workers/profiles_outbox.py``), at most one
    each at a time: an event takes the worker at least half their CPU for it, all of it when they
    cannot overlap. (d), the raw COPY's seconds an event over the worker's, is at most the raw COPY's
    seconds an event over that (if the worker's Python took no time at all)."""

    def pg_us(r: dict) -> float | None:
        cpu = r.get("postgres_cpu_s")
        return 1e6 * cpu / r["events"] if cpu and r["events"] else None

    base = next((r for r in persist if r["role"] == "baseline" and r["events"] and r["seconds"]), None)
    runs = [(r, us) for r in persist if r.get("events_per_job") is not None and (us := pg_us(r))]
    if base is None or not runs:
        return []
    raw_us = 1e6 * base["seconds"] / base["events"]
    bounds = ", ".join(
        f"{us:.1f} µs ({raw_us / us:.2f}x, {r['events_per_job']:g}-event jobs)" for r, us in runs
    )
    return [
        f"PostgreSQL CPU a stored event: worker {bounds}; raw COPY {raw_us:.1f} µs an event (wall)",
        "  (each x: the most (d) could reach with the worker's Python taking no time at all and its two"
        " backends never overlapping; twice that if they always did)",
    ]


def _profile_lag(persist: list[dict]) -> list[str]:
    """How far each worker run's profiles trailed its store (``bench.persist.ProfileLag``)."""
    return [
        f"profiles behind the store, {r['events_per_job']:g}-event jobs: {lag['rows']} outbox rows,"
        f" lag mean {1e3 * lag['mean_s']:.0f} ms, p99 <= {lag['p99_at_most_s']:g} s;"
        f" all applied {1e3 * lag['settled_after_s']:.0f} ms after the last job (counted in (d))"
        for r in persist
        if (lag := r.get("profile_lag")) and lag["rows"]
    ]


def render(report: Report) -> str:
    m = report.machine
    s = report.settings
    out = ["", "trackgate benchmark", "=" * 100, _machine_line(m)]
    out.append(
        f"servers: PostgreSQL {m.get('postgres', '?')}, Redis {m.get('redis', '?')}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    )
    out.append(
        f"load: {s.get('wrk_version') or 'wrk'}, {s['wrk']}, {s['duration_s']:g}s measured after "
        f"{s['warmup_s']:g}s warm-up; uvicorn {s['uvicorn']}"
    )
    if "track_body_bytes" in s:
        out.append(
            f"bodies: track {s['track_body_bytes']} B, batch {s['batch_body_bytes']} B "
            f"({BATCH_EVENTS} events); unique messageId per event"
        )
    if s.get("profiling"):
        out.append("NOTE: py-spy was sampling during the measured windows; figures are perturbed.")
    if report.http:
        out += ["", "HTTP (wrk)"]
        head = f"{'phase':<24}{'req/s':>10}{'events/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        head += f"{'2xx':>10}{'non-2xx':>9}{'sock err':>9}   CPU% server/redis/wrk/machine"
        out += [head, "-" * len(head)]
        for p in report.http:
            lat = p.latency_ms
            out.append(
                f"{'(' + p.name + ') ' + p.what:<24}{p.req_per_s:>10,.0f}{p.events_per_s:>12,.0f}"
                f"{lat['p50']:>9.2f}{lat['p99']:>9.2f}{lat['max']:>9.1f}"
                f"{p.requests_ok:>10,}{p.non_2xx:>9,}{p.socket_errors:>9,}   "
                + "/".join(f"{p.cpu.get(k, 0):.0f}" for k in ("server", "redis", "wrk", "machine"))
            )
        if len(report.http_rounds) > len(report.http):
            for p in report.http:
                out.append(
                    f"  ({p.name}) median of {len(p.rounds_req_per_s)} rounds; req/s per round: "
                    + ", ".join(f"{x:,}" for x in p.rounds_req_per_s)
                )
        for p in report.http:
            if p.queued is None:
                continue
            q = p.queued
            verdict = "OK" if p.durable_ok else "FAILED"
            out.append(
                f"  ({p.name}) durable ack {verdict}: {q['events']:,} events queued in {q['jobs']:,} RQ jobs "
                f"({q['events_per_job']:g} events/job) for {q['acked_events']:,} acknowledged "
                f"(+{q['unacked_in_flight']:,} in flight at wrk's stop); distinct ids {q['distinct_ids']:,}, "
                f"message ids {q['distinct_message_ids']:,}"
            )
    if report.persist:
        out += ["", f"Persist ({s['events_d']:,} events into PostgreSQL)"]
        head = (
            f"{'run':<44}{'events/s':>12}{'seconds':>10}{'jobs':>8}{'events/job':>12}"
            f"   CPU µs/event python/postgres"
        )
        out += [head, "-" * len(head)]
        for r in report.persist:
            tag = {"baseline": "[baseline] ", "measured": "(d) ", "info": "    "}[r["role"]]
            per_job = r.get("events_per_job")
            cpu = ""
            if r.get("python_cpu_s") is not None and r["events"]:
                cpu = "   " + "/".join(
                    f"{1e6 * r[k] / r['events']:.1f}" for k in ("python_cpu_s", "postgres_cpu_s")
                )
            out.append(
                f"{tag + r['label']:<44}{r['events_per_s']:>12,.0f}{r['seconds']:>10.2f}"
                f"{r['jobs'] or '':>8}{per_job if per_job is not None else '':>12}{cpu}"
            )
        for r in report.persist:
            if r.get("round_ratios"):
                out.append(
                    f"  {r['label']}: ratio to its round's raw COPY, per round "
                    + ", ".join(f"{x:.2f}" for x in r["round_ratios"])
                    + " (the row above is the median round's; the COPY row the median COPY)"
                )
        out += _postgres_bound(report.persist)
        out += _profile_lag(report.persist)
    if report.enrich:
        e = report.enrich
        out += [
            "",
            f"Enrichment chain ({e['events']:,} events, {e['batch']:,}-event batches, "
            f"{e['distinct_user_agents']} distinct user agents, median of {e['rounds']} rounds)",
        ]
        out.append(f"  store only            {e['store_us_per_event']:8.1f} µs/event")
        out.append(
            f"  store + chain         {e['store_chain_us_per_event']:8.1f} µs/event "
            f"(chain {e['chain_us_per_event']:.1f} µs/event, warm caches)"
        )
        out.append(
            f"  chain, caches cold    {e['cold_chain_us_per_event']:8.1f} µs/event "
            f"(store+chain / store {e['cold_ratio']:.2f}x on the first pass)"
        )
    if report.tail:
        t = report.tail
        out += [
            "",
            f"Tail latency at a constant {t['rate']:,} requests/s ({t['duration_s']:g}s each, "
            "bench/latency.py)",
        ]
        profiled = ", py-spy attached" if t.get("profiled") else ""
        for name in ("hello", "track"):
            x = t[name]
            out.append(
                f"  {name:<6} achieved {x['achieved_per_s']:>9,.0f}/s  p50 {x['p50_ms']:7.2f}"
                f"  p90 {x['p90_ms']:7.2f}  p99 {x['p99_ms']:7.2f}  max {x['max_ms']:8.1f} ms"
                f"  errors {x['errors']}  server CPU {x.get('server_cpu_pct', 0):.0f}%"
                f" ({x.get('server_cpu_us') or 0:.0f} µs a request{profiled})"
                + (f", {x['requests_a_job']:.1f} requests a job" if x.get("requests_a_job") else "")
                + (f", {x['lingered_pct']}% of them lingered" if x.get("lingered_pct") is not None else "")
            )
    for v in report.visible:
        out += [
            "",
            f"Accept -> row visible, one worker, {v['rate']:g} events/s {_shape(v)} for {v['duration_s']:g}s "
            f"(achieved {v['achieved_per_s']:,.0f} events/s; polled every {v['poll_ms']:g} ms)"
            + ("" if _kept_up(v) else ": behind the asked rate, no PASS"),
            f"  p50 {v['p50_ms']:.0f} ms  p99 {v['p99_ms']:.0f} ms  max {v['max_ms']:.0f} ms; "
            f"{v['acked']:,} events acknowledged, {v['not_seen']:,} not visible within 30 s; "
            f"accept p99 {v['accept_p99_ms']:.1f} ms",
        ]
    if report.scaling:
        out += [
            "",
            "Scaling: the same backlog (1-event requests, 64 publishers: /v1/track-shaped jobs), one worker"
            " process then two (first row to last)",
        ]
        for run in report.scaling["runs"]:
            c = run["cpu"]
            out.append(
                f"  {run['workers']} worker(s): {run['events_per_s']:>7,} events/s in {run['seconds']:.1f}s;"
                f" CPU % workers {c['workers']}, PostgreSQL {c['postgres']}, redis {c['redis']},"
                f" other {c['other']}, machine {c['machine']} (of 200)"
            )
    if report.ratios:
        out += ["", "Ratios"]
        head = f"{'ratio':<26}{'value':>8}{'goal':>8}  {'result':<7}unit"
        out += [head, "-" * len(head)]
        for r in report.ratios:
            suffix = r.get("suffix", "x")
            goal = (
                "" if r["goal"] is None else ("<= " if r.get("at_most") else ">= ") + f"{r['goal']:g}{suffix}"
            )
            result = "-" if r["goal"] is None else "PASS" if r["pass"] else "MISS"
            out.append(f"{r['ratio']:<26}{r['value']:>7.2f}{suffix}{goal:>8}  {result:<7}{r['unit']}")
    if report.warnings:
        out += ["", "Warnings:"] + [f"  - {w}" for w in report.warnings]
    if report.problems:
        out += ["", "Problems:"] + [f"  - {p}" for p in report.problems]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        report = run(args)
    except loadgen.WrkMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    print(render(report))
    print(f"(whole run: {time.monotonic() - started:.0f}s)")
    if args.json:
        text = json.dumps(asdict(report), indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    if report.problems:
        return 1
    if args.strict and not all(r["pass"] for r in report.ratios):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
