"""The bench's CPU figures (``bench/cpu.py``): what a run's PostgreSQL backends used, and the bound
PostgreSQL's own CPU sets on (d)."""

from __future__ import annotations

import os

import psycopg

from bench import cpu
from bench.run import _postgres_bound


def test_the_meter_reads_the_backends_cpu_and_not_its_own_connection(database_url):
    with psycopg.connect(database_url, autocommit=True) as busy:
        meter = cpu.CpuMeter(database_url)
        meter.start()
        assert busy.info.backend_pid in meter.backends  # connected before start: measured
        busy.execute("SELECT count(*) FROM generate_series(1, 3000000)").fetchone()
        python, postgres = meter.stop()
    assert postgres is not None and postgres > 0.05  # a few hundred ms of the server's CPU
    assert 0 <= python < postgres


def test_a_pid_that_is_not_postgresql_is_not_measured():
    assert not cpu.is_postgres(os.getpid())  # this Python process
    assert not cpu.is_postgres(2**22 + 1)  # no such process


def test_the_bound_is_the_raw_copy_seconds_over_each_worker_runs_postgresql_cpu():
    rows = [
        {"role": "baseline", "events": 1000, "seconds": 0.02, "postgres_cpu_s": 0.015},
        {"role": "measured", "events": 1000, "seconds": 0.1, "postgres_cpu_s": 0.05, "events_per_job": 100.0},
        {"role": "info", "events": 1000, "seconds": 0.1, "postgres_cpu_s": 0.08, "events_per_job": 64.0},
        {"role": "info", "events": 1000, "seconds": 0.1, "postgres_cpu_s": None, "events_per_job": 1.0},
    ]
    head, _ = _postgres_bound(rows)
    assert head == (
        "PostgreSQL CPU a stored event: worker 50.0 µs (0.40x, 100-event jobs),"
        " 80.0 µs (0.25x, 64-event jobs); raw COPY 20.0 µs an event (wall)"
    )
    assert _postgres_bound(rows[1:]) == []  # without the baseline there is nothing to divide
    assert _postgres_bound([rows[0], rows[3]]) == []  # no worker run's CPU was read (a remote server)
