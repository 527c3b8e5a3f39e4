"""``python -m bench reports``: TinyTrail's reports over N generated events (10 million by default).

    python -m bench reports                      # 10,000,000 events: generated once, then reused
    python -m bench reports --events 200000      # a small run
    python -m bench reports --redis redis://127.0.0.1:6379/13 --port 18400

1. The data (``bench/reports_data.py``): a database ``bench_reports_<N>_v<version>`` next to
   ``--postgres`` holding N events of one TinyTrail website over the last 12 months, generated with the
   real adapter and enrichment chain and COPYed; kept between runs (``--regenerate`` to make it again).
2. The aggregation: every closed day not yet aggregated (``--reaggregate``: all of them) through the
   reports' own job function, ``trackgate.workers.aggregate.aggregate(day, source_id, database_url)``,
   days spread over ``--processes`` processes; its time is printed.
3. The reports: the gateway in its own uvicorn process (as ``bench/servers.py`` runs it, API rate limit
   off), an admin key made for the run, then every report (the nine; ``sources`` with each
   ``group_by``; ``summary`` also with ``compare``; ``funnel`` with three steps) for ``period=7d`` and
   ``period=12m``: ``--warmups`` calls, then ``--calls`` timed calls each, one after the other on one
   keep-alive connection; p50/p95 of the wall time per call, PASS when p95 is under the goal
   (7d: 300 ms, 12m: 1 s).
4. The accept path beside them: ``POST /v1/track`` req/s with wrk (the settings of ``python -m bench``'s
   phase (b)), alone, then while one client calls the reports in a loop, then alone again; PASS when
   the figure under reports is at least 90% of the mean of the two alone.
5. Sizes: ``events`` (every partition, heap + TOAST) and each of its indexes, the aggregate tables and
   their indexes (``report_*``), in bytes and in bytes per million events.

When a report misses its goal, the plan of its slowest statement (EXPLAIN ANALYZE, by ``auto_explain``
in the gateway's own sessions: :func:`explain_slow`) is printed after the figures (``--no-explain``: not).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from redis.connection import parse_url

from bench import cpu, loadgen, payloads, reports_data, servers
from trackgate.api_keys import create_key
from trackgate.schemas.settings import ServerSettings
from trackgate.sources import add_source
from trackgate.workers.aggregate import aggregate

GATEWAY_APP = "trackgate.gateway.asgi:app_from_env"
GOALS_MS = {"7d": 300.0, "12m": 1000.0}
GOAL_ACCEPT = 0.9
"""The accept path's req/s while reports run, at least this share of its req/s alone."""
FUNNEL_STEPS = reports_data.FUNNEL


@dataclass(frozen=True)
class ReportCall:
    name: str
    path: str
    params: tuple[tuple[str, str], ...] = ()


def report_calls(website_id: str, period: str) -> list[ReportCall]:
    """Every report, as the dashboard and the document call them, for one period."""
    base = (("website_id", website_id), ("period", period))
    steps = tuple(("steps[]", s) for s in FUNNEL_STEPS)
    r = "/api/v1/reports/"
    return [
        ReportCall("summary", r + "summary", base),
        ReportCall("summary compare", r + "summary", (*base, ("compare", "previous_period"))),
        ReportCall("pages", r + "pages", base),
        ReportCall("sources channel", r + "sources", (*base, ("group_by", "channel"))),
        ReportCall("sources domain", r + "sources", (*base, ("group_by", "domain"))),
        ReportCall("sources utm", r + "sources", (*base, ("group_by", "utm"))),
        ReportCall("devices", r + "devices", base),
        ReportCall("flow", r + "flow", base),
        ReportCall("funnel (3 steps)", r + "funnel", (*base, *steps)),
        ReportCall("realtime", r + "realtime", (("website_id", website_id),)),
        ReportCall("custom-events", r + "custom-events", base),
        ReportCall("timeseries", r + "timeseries", base),
        ReportCall("timeseries visits", r + "timeseries", (*base, ("metric", "visits"))),
    ]


@dataclass
class Latency:
    report: str
    period: str
    calls: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    max_ms: float | None = None
    goal_ms: float = 0.0
    first_ms: float | None = None
    """The first (warm-up) call: what a report costs when the gateway's short-lived cache of
    today's raw numbers has nothing for it yet (the reports before it may have filled it)."""
    error: str | None = None
    times_ms: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.error is None and self.p95_ms is not None and self.p95_ms < self.goal_ms


@dataclass
class Result:
    data: dict
    aggregation: dict = field(default_factory=dict)
    check: dict = field(default_factory=dict)
    load: dict[str, list[float]] = field(default_factory=dict)
    """The machine's load average (1, 5, 15 min) before and after the timed phases: on a shared
    2-core machine anything much above 2 means the figures carry other people's work."""
    latencies: list[Latency] = field(default_factory=list)
    accept: dict = field(default_factory=dict)
    sizes: list[dict] = field(default_factory=list)
    explains: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# --- aggregation ------------------------------------------------------------------------------------


def _aggregate_one(job: tuple[str, str, str]) -> float:
    day, source_id, url = job
    started = time.monotonic()
    aggregate(day=day, source_id=source_id, database_url=url)
    return time.monotonic() - started


def days_to_aggregate(data: reports_data.BenchData, everything: bool) -> list[date]:
    """The closed days of the data; without ``everything`` only those ``report_days`` does not mark
    clean (aggregated after the day closed, no late event since)."""
    today = datetime.now(UTC).date()
    last = min(data.last_day, today - timedelta(days=1))
    closed = [data.first_day + timedelta(days=i) for i in range((last - data.first_day).days + 1)]
    if everything or not closed:
        return closed
    with psycopg.connect(data.url) as conn:
        clean = {
            row[0]
            for row in conn.execute(
                "SELECT day FROM report_days WHERE source_id = %s AND NOT dirty", (data.source_id,)
            )
        }
    return [d for d in closed if d not in clean]


def analyze_aggregates(url: str) -> None:
    """ANALYZE the aggregate tables just filled, as autovacuum soon would: a year of rows written at
    once would otherwise be planned with the statistics of an empty table for the first minute."""
    with psycopg.connect(url, autocommit=True) as conn:
        names = [row[0] for row in conn.execute(AGGREGATE_TABLES_SQL)]
        for name in names:
            conn.execute(f'ANALYZE "{name}"')


AGGREGATE_TABLES_SQL = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'report\\_%'
"""


def run_aggregation(
    data: reports_data.BenchData, processes: int, everything: bool, progress: Callable[[str], None]
) -> dict:
    days = days_to_aggregate(data, everything)
    if not days:
        progress("  aggregates: every closed day is aggregated already (--reaggregate to rebuild them)")
        return {"days": 0, "seconds": 0.0}
    progress(f"  aggregating {len(days)} closed days ({processes} processes) ...")
    jobs = [(d.isoformat(), data.source_id, data.url) for d in days]
    started = time.monotonic()
    if processes <= 1:
        per_day = [_aggregate_one(job) for job in jobs]
    else:  # spawn, not fork: a fork of a process with threads (a test's pools) can hang on their locks
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            per_day = pool.map(_aggregate_one, jobs, chunksize=4)
    seconds = time.monotonic() - started
    analyze_aggregates(data.url)
    out = {
        "days": len(days),
        "seconds": round(seconds, 1),
        "day_p50_ms": round(statistics.median(per_day) * 1000),
        "day_max_ms": round(max(per_day) * 1000),
    }
    progress(f"  aggregated {len(days)} days in {seconds:.0f} s (a day: median {out['day_p50_ms']} ms)")
    return out


# --- the gateway ------------------------------------------------------------------------------------


def gateway_env(data: reports_data.BenchData, redis_url: str, extra: dict[str, str] | None = None) -> dict:
    return {
        "TRACKGATE_DATABASE_URL": data.url,
        "TRACKGATE_REDIS_URL": redis_url,
        "TRACKGATE_LOG_LEVEL": "WARNING",
        "TRACKGATE_API_RATE_LIMIT": "0",
        **(extra or {}),
    }


def time_report(client: httpx.Client, call: ReportCall, period: str, calls: int, warmups: int) -> Latency:
    latency = Latency(call.name, period, calls, goal_ms=GOALS_MS[period])
    times: list[float] = []
    for i in range(warmups + calls):
        started = time.perf_counter()
        response = client.get(call.path, params=call.params)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            latency.error = f"HTTP {response.status_code}: {response.text[:200]}"
            return latency
        if i == 0:
            latency.first_ms = round(elapsed, 1)
        if i >= warmups:
            times.append(elapsed)
    times.sort()
    latency.times_ms = [round(t, 1) for t in times]
    latency.p50_ms = round(statistics.median(times), 1)
    latency.p95_ms = round(percentile(times, 95), 1)
    latency.max_ms = round(times[-1], 1)
    return latency


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile (p95 of 20 calls is the 19th fastest)."""
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def time_reports(
    base: str, key: str, website_id: str, calls: int, warmups: int, progress: Callable[[str], None]
) -> list[tuple[ReportCall, Latency]]:
    out: list[tuple[ReportCall, Latency]] = []
    with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=120) as client:
        for period in GOALS_MS:
            for call in report_calls(website_id, period):
                latency = time_report(client, call, period, calls, warmups)
                verdict = latency.error or f"p50 {latency.p50_ms} ms, p95 {latency.p95_ms} ms"
                progress(f"    {period:>3} {call.name:<20} {verdict}")
                out.append((call, latency))
    return out


CHECK_SQL = """
SELECT count(*) FROM events
WHERE source_id = %s AND type = 'page' AND "timestamp" >= %s AND "timestamp" < %s
  AND NOT coalesce(is_bot, false)
  AND NOT coalesce(is_excluded, false)
"""


def check_pageviews(base: str, key: str, data: reports_data.BenchData) -> dict:
    """The 12m summary's page views against a count of the raw rows (that the timed calls did the real
    work, over aggregates and today's events together)."""
    with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=120) as client:
        response = client.get(
            "/api/v1/reports/summary", params={"website_id": data.website_id, "period": "12m"}
        )
    if response.status_code != 200:
        return {"ok": False, "error": f"HTTP {response.status_code}: {response.text[:200]}"}
    body = response.json()["data"]
    start = date.fromisoformat(body["period"]["start"])
    end = date.fromisoformat(body["period"]["end"]) + timedelta(days=1)
    with psycopg.connect(data.url) as conn:
        row = conn.execute(CHECK_SQL, (data.source_id, start, end)).fetchone()
    counted = int(row[0]) if row else -1
    reported = body["metrics"]["pageviews"]["value"]
    return {"ok": reported == counted, "reported": reported, "counted": counted, "period": body["period"]}


# --- the accept path beside the reports ---------------------------------------------------------------


class ReportLoop:
    """One client calling every report (7d and 12m, in turn) until stopped."""

    def __init__(self, base: str, key: str, website_id: str):
        self.calls = [(c, p) for p in GOALS_MS for c in report_calls(website_id, p)]
        self.base, self.key = base, key
        self.done = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, headers={"X-API-KEY": self.key}, timeout=120) as client:
            i = 0
            while not self._stop.is_set():
                call, _ = self.calls[i % len(self.calls)]
                try:
                    ok = client.get(call.path, params=call.params).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.done += 1
                self.errors += not ok
                i += 1

    def __enter__(self) -> ReportLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(150)


def cpu_seconds(pid: int, database_url: str) -> dict[str, Any]:
    """CPU seconds so far of the gateway process, of the PostgreSQL backends serving the bench's
    database (by pid: ``pg_stat_activity``) and of every PostgreSQL process on the machine (other
    people's databases too), of this process (the report loop's client), of the machine."""
    backends = {backend: cpu.process_seconds(backend) for backend in cpu.backend_pids(database_url)}
    postgres = sum(cpu.process_seconds(p) for p in cpu.postgres_pids())
    me = os.times()
    return {
        "gateway": cpu.process_seconds(pid),
        "backends": backends,
        "postgres": postgres,
        "client": me.user + me.system,  # this process: the report loop's HTTP client
        "machine": cpu.machine_busy_seconds(),
        "t": time.monotonic(),
    }


def cpu_share(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Percent of one core used between two :func:`cpu_seconds`: ``pg_bench`` is the bench database's
    backends (one that started meanwhile counts whole; one that ended meanwhile is missed), ``postgres``
    every PostgreSQL process (those that ended meanwhile missed)."""
    wall = after["t"] - before["t"]
    out = {
        k: round(100 * max(0.0, after[k] - before[k]) / wall, 1)
        for k in ("gateway", "postgres", "client", "machine")
    }
    used = sum(t - before["backends"].get(b, 0.0) for b, t in after["backends"].items())
    out["pg_bench"] = round(100 * max(0.0, used) / wall, 1)
    return out


def accept_path(
    base: str,
    gateway_pid: int,
    database_url: str,
    key: str,
    website_id: str,
    write_key: str,
    duration: float,
    rounds: int,
    progress: Callable[[str], None],
) -> dict:
    """``/v1/track`` req/s with wrk: alone, with the report loop, alone, ... (``rounds`` runs with the
    loop, one alone before and after each); the ratio of the medians."""
    import base64

    authorization = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    wrk = loadgen.WrkSettings()
    alone: list[float] = []
    beside: list[float] = []
    cpu_alone: list[dict[str, float]] = []
    cpu_beside: list[dict[str, float]] = []
    loop_calls = loop_errors = bad = 0
    with tempfile.TemporaryDirectory(prefix="trackgate-bench-reports-") as tmp:
        body = Path(tmp) / "track.json"
        body.write_bytes(payloads.track_body())
        url = base + "/v1/track"
        loadgen.run_wrk(url, body, authorization, 2, wrk, tag="w")  # warm-up
        for i in range(2 * rounds + 1):
            with_reports = i % 2 == 1
            label = "with the report loop" if with_reports else "alone"
            progress(f"    /v1/track {label}: {duration:g} s of wrk {' '.join(wrk.args())} ...")
            before = cpu_seconds(gateway_pid, database_url)
            if with_reports:
                with ReportLoop(base, key, website_id) as loop:
                    result = loadgen.run_wrk(url, body, authorization, duration, wrk, tag=f"r{i}")
                loop_calls += loop.done
                loop_errors += loop.errors
                beside.append(result.rps)
            else:
                result = loadgen.run_wrk(url, body, authorization, duration, wrk, tag=f"a{i}")
                alone.append(result.rps)
            share = cpu_share(before, cpu_seconds(gateway_pid, database_url))
            (cpu_beside if with_reports else cpu_alone).append(share)
            bad += result.non_2xx + result.socket_errors
            progress(
                f"      {result.rps:,.0f} req/s; CPU % of a core: gateway {share['gateway']:.0f}, "
                f"PostgreSQL {share['pg_bench']:.0f} (all databases {share['postgres']:.0f}), "
                f"bench client {share['client']:.0f}, "
                f"machine {share['machine']:.0f}"
            )
    ratio = statistics.median(beside) / statistics.median(alone) if alone else 0.0
    return {
        "alone_rps": [round(x) for x in alone],
        "with_reports_rps": [round(x) for x in beside],
        "ratio": round(ratio, 3),
        "goal": GOAL_ACCEPT,
        "pass": ratio >= GOAL_ACCEPT,
        "report_calls_during": loop_calls,
        "report_errors_during": loop_errors,
        "track_errors": bad,
        "duration_s": duration,
        "cpu_alone": cpu_alone,
        "cpu_with_reports": cpu_beside,
    }


# --- sizes ----------------------------------------------------------------------------------------

EVENTS_SIZES_SQL = """
SELECT sum(pg_table_size(relid)) FROM pg_partition_tree('events') WHERE isleaf
"""
EVENTS_INDEXES_SQL = """
SELECT i.relname, (SELECT sum(pg_relation_size(t.relid)) FROM pg_partition_tree(i.oid) t WHERE t.isleaf)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = 'events'::regclass ORDER BY 2 DESC
"""
AGGREGATE_SIZES_SQL = """
SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'report\\_%' ORDER BY 1
"""


def sizes(url: str, events: int) -> list[dict]:
    per_million = 1_000_000 / events
    rows: list[dict] = []

    def add(what: str, size: int | None) -> None:
        size = int(size or 0)
        rows.append({"what": what, "bytes": size, "bytes_per_million_events": round(size * per_million)})

    with psycopg.connect(url) as conn:
        add("events (heap + TOAST, all partitions)", conn.execute(EVENTS_SIZES_SQL).fetchone()[0])  # type: ignore[index]
        for name, size in conn.execute(EVENTS_INDEXES_SQL).fetchall():
            add(f"  index {name}", size)
        for name, table, indexes in conn.execute(AGGREGATE_SIZES_SQL).fetchall():
            add(f"{name} (heap + TOAST)", table)
            add(f"  {name} indexes", indexes)
    return rows


# --- EXPLAIN of a slow report -----------------------------------------------------------------------


EXPLAIN_SETTINGS = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "50ms",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_timing": "on",
}


def server_log(url: str) -> Path | None:
    """PostgreSQL's log file, where ``auto_explain`` writes: Debian's ``/var/log/postgresql/
    postgresql-<major>-main.log`` (the logging collector is off there), or the collector's file."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_current_logfile(), current_setting('server_version_num')").fetchone()
        data_dir = conn.execute("SELECT current_setting('data_directory', true)").fetchone()
    assert row is not None
    if row[0]:
        path = Path(row[0])
        return path if path.is_absolute() else Path(str(data_dir[0] if data_dir else "")) / path
    guess = Path(f"/var/log/postgresql/postgresql-{int(row[1]) // 10000}-main.log")
    return guess if guess.exists() else None


def plans_in(text: str, database: str) -> list[str]:
    """The ``auto_explain`` entries of ``database`` in a piece of the log (an entry's first line has the
    log prefix with ``@<database>``; its plan lines follow, without a prefix)."""
    entries: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line[:4].isdigit() and line[4:5] == "-":  # a new entry
            current = None
            if f"@{database} " in line and "plan:" in line:
                current = [line]
                entries.append(current)
        elif current is not None:
            current.append(line)
    return ["\n".join(e) for e in entries]


def short_plan(entry: str, query_chars: int = 300) -> str:
    """An ``auto_explain`` entry with its query text cut to its first ``query_chars`` characters: the
    report SQL runs to hundreds of lines; the plan (from its first node) is kept whole."""
    lines = entry.split("\n")
    first_node = next(
        (i for i, line in enumerate(lines) if "(cost=" in line or "(actual" in line), len(lines)
    )
    query = " ".join(line.strip() for line in lines[1:first_node])
    if len(query) > query_chars:
        query = query[:query_chars] + " ..."
    return "\n".join([lines[0], "\t" + query, *lines[first_node:]])


def _duration(entry: str) -> float:
    try:
        return float(entry.split("duration: ", 1)[1].split(" ms", 1)[0])
    except (IndexError, ValueError):
        return 0.0


def explain_slow(
    data: reports_data.BenchData, env: dict[str, str], port: int, key: str, misses: list[ReportCall]
) -> dict[str, str]:
    """The plan of the slowest statement behind each report that missed its goal: the database is set
    to load ``auto_explain`` in every new session (statements over 50 ms, with ANALYZE and BUFFERS,
    into PostgreSQL's log), a fresh gateway answers each missed report twice, and the plans its
    sessions logged meanwhile are read back from the log. The settings are reset afterwards."""
    log = server_log(data.url)
    if log is None or not os.access(log, os.R_OK):
        return {call.name: "(no plan: PostgreSQL's log file cannot be read here)" for call in misses}
    out: dict[str, str] = {}
    with psycopg.connect(data.url, autocommit=True) as conn:
        for name, value in EXPLAIN_SETTINGS.items():
            conn.execute(f'ALTER DATABASE "{data.name}" SET {name} = {psycopg.sql.quote(value)}')
    try:
        with (
            servers.serve(GATEWAY_APP, factory=True, env=env, port=port) as (base, _proc),
            httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=120) as client,
        ):
            for call in misses:
                offset = log.stat().st_size
                for _ in range(2):
                    client.get(call.path, params=call.params)
                time.sleep(0.5)
                with log.open("rb") as f:
                    f.seek(offset)
                    text = f.read().decode("utf-8", "replace")
                entries = sorted(plans_in(text, data.name), key=_duration, reverse=True)
                label = f"{call.name} ({dict(call.params).get('period', '')})"
                out[label] = short_plan(entries[0]) if entries else "(no statement over 50 ms was logged)"
    finally:
        with psycopg.connect(data.url, autocommit=True) as conn:
            for name in EXPLAIN_SETTINGS:
                conn.execute(f'ALTER DATABASE "{data.name}" RESET {name}')
    return out


# --- output ---------------------------------------------------------------------------------------


def render(result: Result) -> str:
    d = result.data
    out = ["", "trackgate reports benchmark", "=" * 100]
    out.append(
        f"data: {d['events']:,} events of one TinyTrail website, {d['first_day']} .. {d['last_day']}, "
        f"database {d['name']} ({'reused' if d['reused'] else 'generated'}; "
        f"generation took {d['generate_seconds']:.0f} s)"
    )
    agg = result.aggregation
    if agg.get("days"):
        out.append(
            f"aggregation: {agg['days']} closed days in {agg['seconds']:.0f} s "
            f"(a day: median {agg['day_p50_ms']} ms, max {agg['day_max_ms']} ms)"
        )
    if result.check.get("ok"):
        c = result.check
        out.append(
            f"check: summary 12m page views {c['reported']:,} = {c['counted']:,} page views counted in the "
            f"raw rows ({c['period']['start']} .. {c['period']['end']}, bots and excluded traffic left out)"
        )
    if result.load:
        out.append(
            "load average (1/5/15 min) before the timed phases "
            + "/".join(f"{x:g}" for x in result.load.get("before", []))
            + ", after "
            + "/".join(f"{x:g}" for x in result.load.get("after", []))
            + f" ({os.cpu_count()} CPUs)"
        )
    if result.latencies:
        out += [
            "",
            "Reports (ms per call, wall time from the client; p95 of the timed calls must be under the goal;"
            " 1st: the first warm-up call)",
        ]
        head = f"{'report':<22}{'period':>7}{'1st':>9}{'p50':>9}{'p95':>9}{'max':>9}{'goal':>8}  result"
        out += [head, "-" * len(head)]
        for lat in result.latencies:
            if lat.error:
                out.append(f"{lat.report:<22}{lat.period:>7}  ERROR {lat.error}")
                continue
            out.append(
                f"{lat.report:<22}{lat.period:>7}{lat.first_ms or 0:>9.1f}"
                f"{lat.p50_ms:>9.1f}{lat.p95_ms:>9.1f}{lat.max_ms:>9.1f}"
                f"{lat.goal_ms:>8.0f}  {'PASS' if lat.passed else 'MISS'}"
            )
    a = result.accept
    if a:
        out += ["", "Accept path (POST /v1/track, wrk) beside the reports"]
        out.append("  alone (req/s):                " + ", ".join(f"{x:,}" for x in a["alone_rps"]))
        out.append(
            "  with a report loop (req/s):   "
            + ", ".join(f"{x:,}" for x in a["with_reports_rps"])
            + f"   ({a['report_calls_during']} report calls, {a['report_errors_during']} errors)"
        )
        for what, shares in (("alone", a["cpu_alone"]), ("with reports", a["cpu_with_reports"])):
            out.append(
                f"  CPU % of a core, {what + ':':<14} "
                + ", ".join(
                    f"gateway {c['gateway']:.0f} / PG {c['pg_bench']:.0f} (all {c['postgres']:.0f})"
                    f" / bench {c['client']:.0f}"
                    f" / all {c['machine']:.0f}"
                    for c in shares
                )
            )
        out.append(
            f"  median with / median alone:   {a['ratio']:.2f}x (goal >= {a['goal']}x) "
            f"{'PASS' if a['pass'] else 'MISS'}"
            + (f"; {a['track_errors']} non-2xx or socket errors" if a["track_errors"] else "")
        )
    if result.sizes:
        out += ["", f"Sizes ({d['events']:,} events)"]
        head = f"{'relation':<52}{'MB':>10}{'bytes / million events':>26}"
        out += [head, "-" * len(head)]
        for row in result.sizes:
            out.append(f"{row['what']:<52}{row['bytes'] / 1e6:>10.1f}{row['bytes_per_million_events']:>26,}")
    for name, plan in result.explains.items():
        out += ["", f"EXPLAIN ANALYZE of {name}'s slowest statement", plan]
    if result.problems:
        out += ["", "Problems:"] + [f"  - {p}" for p in result.problems]
    return "\n".join(out) + "\n"


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench reports", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000_000, help="events to generate (10,000,000)")
    p.add_argument(
        "--postgres",
        default=os.environ.get("TRACKGATE_BENCH_DATABASE_URL")
        or os.environ.get("BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test"),
        help="an existing database on the local server; the bench keeps its own bench_reports_* next to it",
    )
    p.add_argument(
        "--redis",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        help="a Redis database the bench may flush (not db 0)",
    )
    p.add_argument("--port", type=int, default=0, help="the gateway's port (default: a free one)")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="generating and aggregating")
    p.add_argument("--calls", type=int, default=20, help="timed calls per report and period (20)")
    p.add_argument("--warmups", type=int, default=2, help="untimed calls before them (2)")
    p.add_argument("--duration", type=float, default=10, help="seconds of wrk per accept-path run (10)")
    p.add_argument("--accept-rounds", type=int, default=2, help="wrk runs beside the reports (2)")
    p.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the gateway under test, e.g. TRACKGATE_REPORTS_RAW_CACHE_SECONDS=0 (repeatable)",
    )
    p.add_argument("--regenerate", action="store_true", help="generate the events again")
    p.add_argument("--reaggregate", action="store_true", help="rebuild every closed day's aggregates")
    p.add_argument("--skip", default="", help="phases to leave out: any of 'reports,accept,sizes'")
    p.add_argument("--no-explain", dest="explain", action="store_false", help="no EXPLAIN of missed reports")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = p.parse_args(argv)
    if args.events < 1000:
        p.error("--events must be at least 1000")
    if not 1 <= args.calls <= 1000 or not 0 <= args.warmups <= 100:
        p.error("--calls must be in [1, 1000] and --warmups in [0, 100]")
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    pairs = [item.partition("=") for item in args.gateway_env]
    if any(not name.startswith("TRACKGATE_") or not eq for name, eq, _ in pairs):
        p.error("--gateway-env takes TRACKGATE_NAME=VALUE")
    args.gateway_env = {name: value for name, _, value in pairs}
    return args


def _redis_db(url: str) -> int:
    """The database a Redis URL names (``/N``, or ``?db=N`` of a unix socket's), as redis-py reads it."""
    return int(parse_url(url).get("db") or 0)


def run(args: argparse.Namespace, progress: Callable[[str], None] = print) -> Result:
    if _redis_db(args.redis) == 0:
        raise SystemExit("--redis must name a database other than 0 (the bench flushes it), e.g. /12")
    if "accept" not in args.skip:
        loadgen.wrk_path()  # fail early, with install instructions
    data = reports_data.ensure_database(
        args.postgres, args.events, processes=args.processes, regenerate=args.regenerate, progress=progress
    )
    result = Result(data={**asdict(data), "url": None})
    result.aggregation = run_aggregation(data, args.processes, args.reaggregate, progress)
    secret_key = "bench-reports-" + secrets.token_urlsafe(24)
    settings = ServerSettings(database_url=data.url, redis_url=args.redis, secret_key=secret_key)
    key = create_key(settings, data.url, label="bench reports").key
    write_key = "wk_bench_" + secrets.token_hex(12)
    accept_source, _ = add_source(data.url, "segment", f"bench-accept-{secrets.token_hex(4)}", write_key)
    env = gateway_env(data, args.redis, {"TRACKGATE_SECRET_KEY": secret_key, **args.gateway_env})
    timed: list[tuple[ReportCall, Latency]] = []
    try:
        with redis.Redis.from_url(args.redis) as r:
            r.flushdb()
        progress("  starting the gateway ...")
        with servers.serve(GATEWAY_APP, factory=True, env=env, port=args.port) as (base, proc):
            result.load["before"] = [round(x, 2) for x in os.getloadavg()]
            if "reports" not in args.skip:
                result.check = check_pageviews(base, key, data)
                progress(f"  check: {result.check}")
                if not result.check["ok"]:
                    result.problems.append(
                        f"12m page views reported differ from the raw count: {result.check}"
                    )
                progress(f"  reports: {args.warmups} warm-up + {args.calls} timed calls each")
                timed = time_reports(base, key, data.website_id, args.calls, args.warmups, progress)
                result.latencies = [lat for _, lat in timed]
            if "accept" not in args.skip:
                progress("  accept path beside the reports:")
                result.accept = accept_path(
                    base,
                    proc.pid,
                    data.url,
                    key,
                    data.website_id,
                    write_key,
                    args.duration,
                    args.accept_rounds,
                    progress,
                )
        result.load["after"] = [round(x, 2) for x in os.getloadavg()]
        misses = [call for call, lat in timed if not lat.passed and lat.error is None]
        if misses and args.explain:
            progress(f"  EXPLAIN ANALYZE of {len(misses)} missed reports (auto_explain) ...")
            result.explains = explain_slow(data, env, args.port, key, misses)
    finally:
        with redis.Redis.from_url(args.redis) as r:
            r.flushdb()
        with psycopg.connect(data.url, autocommit=True) as conn:
            conn.execute("DELETE FROM sources WHERE id = %s", (accept_source.id,))
            conn.execute("DELETE FROM api_keys WHERE label = 'bench reports'")
    if "sizes" not in args.skip:
        result.sizes = sizes(data.url, data.events)
    for lat in result.latencies:
        if lat.error:
            result.problems.append(f"{lat.report} {lat.period}: {lat.error}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    result = run(args, progress=lambda line: print(line, flush=True))
    print(render(result))
    print(f"(whole run: {time.monotonic() - started:.0f}s)")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=2, default=str) + "\n")
    if result.problems:
        return 1
    missed = [lat for lat in result.latencies if not lat.passed]
    if args.strict and (missed or (result.accept and not result.accept["pass"])):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
