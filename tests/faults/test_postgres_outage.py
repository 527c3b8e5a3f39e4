"""PostgreSQL stopped for ~10 s while events flow: nothing acknowledged is lost or doubled, and no job
attempt holds its worker for long (it fails fast and RQ retries it with backoff)."""

from __future__ import annotations

import threading
import time

STOPPED_FOR = 10.0
LONGEST_ATTEMPT = 8.0
"""Seconds a worker may stay busy on one attempt while PostgreSQL is down (pool timeout 5 s); before
the fail-fast settings an attempt waited for the pool up to 30 s (the whole outage here)."""


def test_postgres_stop_loses_nothing_and_no_attempt_blocks(faults, gateway):
    faults.worker()
    faults.wait_registered(1)
    name = next(iter(faults.rdb.smembers("rq:workers"))).decode()

    longest = [0.0]
    done = threading.Event()

    def watch_attempts() -> None:
        """From outside, through RQ's record of the worker's executions (one per job attempt): how long
        the longest attempt held the worker."""
        first_seen: dict[bytes, float] = {}
        while not done.is_set():
            now = time.monotonic()
            running = faults.rdb.smembers(f"{name}:executions")
            for execution in running:
                first_seen.setdefault(execution, now)
            for execution, since in list(first_seen.items()):
                longest[0] = max(longest[0], now - since)
                if execution not in running:
                    del first_seen[execution]
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_attempts, daemon=True)
    watcher.start()
    try:
        for _ in range(10):  # ~2 s of traffic before the outage
            faults.send(gateway, 1)
            time.sleep(0.2)
        faults.servers.stop_postgres()
        stopped = time.monotonic()
        while time.monotonic() - stopped < STOPPED_FOR:
            faults.send(gateway, 1)
            time.sleep(0.2)
        faults.servers.start_postgres()
        restarted = time.monotonic()
        for _ in range(10):
            faults.send(gateway, 1)
            time.sleep(0.2)
        waiting_from = time.monotonic()
        took = faults.wait_stored(60)
    finally:
        done.set()
        watcher.join()
    rows, distinct = faults.counts()
    assert took is not None, f"{len(faults.sent) - distinct} of {len(faults.sent)} events not stored"
    assert rows == distinct == len(faults.sent)
    all_stored = waiting_from + took - restarted
    print(
        f"postgres_outage={STOPPED_FOR:.0f}s events={len(faults.sent)} longest_attempt={longest[0]:.1f}s"
        f" stored_all_after_restart={all_stored:.1f}s"
    )
    assert longest[0] < LONGEST_ATTEMPT
    assert faults.rdb.zcard("rq:failed:trackgate-persist") == 0
