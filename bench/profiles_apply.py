"""Profile application's cost in process: ``store.store_group`` with and without ``profiles.apply``.

The events are bench (d)'s (``bench/payloads.py``: the real Segment adapter, a userId from 100,000
users and a fresh anonymousId each), stored in ``--job``-event transactions into fresh tables (truncated
before each run), alternately without and with ``apply``. Prints, per run, the wall seconds, the
worker's CPU and its PostgreSQL backend's CPU (read from /proc: the server runs on this machine), and
the difference per event. ``--cprofile FILE`` profiles the apply runs. Compare two commits by running it
with the old tree on ``PYTHONPATH`` and the new one alternately (each migrates its own ``--database``).

    python -m bench.profiles_apply --events 20000 --rounds 3 --database tg_prof_new
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import time

import psycopg
from psycopg.conninfo import make_conninfo

from bench import payloads
from bench.cpu import process_seconds
from bench.persist import ensure_partitions
from trackgate.migrate import migrate
from trackgate.schemas.settings import tune_gc
from trackgate.sources import add_source
from trackgate.workers import profiles, store


def _database(admin_url: str, name: str) -> tuple[str, str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    migrate(url)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM sources WHERE name = 'profiles-bench'").fetchone()
    source_id = row[0] if row else add_source(url, "segment", "profiles-bench")[0].id
    return url, source_id


def _reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE events, event_dedupe, profiles, profile_ids, groups, group_members, profile_outbox"
        )
        conn.execute("VACUUM ANALYZE profiles, profile_ids")


def run(url: str, events: list, job: int, with_apply: bool, prof: cProfile.Profile | None) -> tuple:
    _reset(url)
    chunks = [events[i : i + job] for i in range(0, len(events), job)]
    with psycopg.connect(url) as conn:
        backend = conn.info.backend_pid
        store.ensure_partitions(conn, {(e.received_at.year, e.received_at.month) for e in events})
        pg0, py0, t0 = process_seconds(backend), time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        for n, chunk in enumerate(chunks):
            store.store_group(conn, [(f"b-{n}", chunk)], apply=profiles.apply_events if with_apply else None)
        if prof:
            prof.disable()
        wall, py, pg = time.perf_counter() - t0, time.process_time() - py0, process_seconds(backend) - pg0
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM profiles),"
            " (SELECT count(*) FROM profile_ids)"
        ).fetchone()
    return wall, py, pg, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--database", default="tg_profiles_bench")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--job", type=int, default=3_125, help="events per transaction")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only-apply", action="store_true", help="skip the runs without apply")
    parser.add_argument("--cprofile", help="write the apply runs' profile here")
    args = parser.parse_args()

    url, source_id = _database(args.postgres, args.database)
    events = payloads.canonical_events(args.events, source_id)
    ensure_partitions(url, events)
    tune_gc()  # as a `trackgate worker` process runs (bench (d) drains under it too)
    prof = cProfile.Profile() if args.cprofile else None
    per: dict[bool, list[tuple]] = {False: [], True: []}
    for _ in range(args.rounds):
        for with_apply in (False, True) if not args.only_apply else (True,):
            wall, py, pg, counts = run(url, events, args.job, with_apply, prof if with_apply else None)
            per[with_apply].append((wall, py, pg))
            label = "store+apply" if with_apply else "store      "
            print(
                f"{label} wall {wall:6.3f} s  py {py:6.3f} s  pg {pg:6.3f} s"
                f"  ({1e6 * wall / len(events):5.1f} µs/event wall)  rows {counts}",
                flush=True,
            )
    n = len(events)
    for key in (False, True):
        if per[key]:
            walls = [r[0] for r in per[key]]
            pys = [r[1] for r in per[key]]
            pgs = [r[2] for r in per[key]]
            label = "apply" if key else "store"
            print(
                f"{label}: wall best {min(walls):.3f} median {statistics.median(walls):.3f};"
                f" py best {min(pys):.3f} median {statistics.median(pys):.3f};"
                f" pg best {min(pgs):.3f} median {statistics.median(pgs):.3f}"
            )
    if per[False] and per[True]:
        for i, name in enumerate(("wall", "py", "pg")):
            a = statistics.median(r[i] for r in per[True])
            s = statistics.median(r[i] for r in per[False])
            print(f"apply's cost, {name} (median difference): {1e6 * (a - s) / n:.1f} µs/event")
    if prof:
        prof.dump_stats(args.cprofile)


if __name__ == "__main__":
    main()
