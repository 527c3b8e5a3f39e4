"""The profile outbox's applier in a child process of the worker (``workers/applier_process.py``)."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.workers.test_profiles import count, ev
from tests.workers.test_profiles_outbox import store_only
from trackgate.schemas.jobs import PersistBatch
from trackgate.workers import applier_process, pipeline, profiles_outbox


def lag_count(path: str) -> float:
    """``trackgate_profile_lag_seconds_count`` summed over the processes that wrote into ``path``."""
    collector = MultiProcessCollector(CollectorRegistry(auto_describe=False), path=path)
    return sum(
        s.value
        for family in collector.collect()
        if family.name == "trackgate_profile_lag_seconds"
        for s in family.samples
        if s.name.endswith("_count")
    )


def applied_here(*args, **kwargs):
    raise AssertionError("the worker's process applied the outbox: its applier process should have")


@pytest.fixture
def child(settings, tmp_path, monkeypatch):
    """An applier process that ``after_commit`` wakes; this process must not apply anything itself."""
    applier = applier_process.ApplierProcess(settings, metrics_path=str(tmp_path))
    assert applier.ready and applier.is_alive()
    profiles_outbox.use_applier(applier)
    monkeypatch.setattr(profiles_outbox, "apply_all", applied_here)
    try:
        yield applier
    finally:
        profiles_outbox.stop_applier(timeout=30)


def test_the_store_wakes_the_applier_process_which_applies_and_counts_lag(db, database_url, child, tmp_path):
    with psycopg.connect(database_url) as conn:
        batch = PersistBatch(batch_id="b1", events=[ev("track", name="a", user_id="u1")])
        pipeline.persist(conn, batch, None)  # wakes the child instead of applying here
    assert child.settle(timeout=30)
    assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 1
    assert lag_count(str(tmp_path)) == 1  # the child's metrics, in the run's directory


def test_stopping_it_applies_what_nobody_woke_it_for(db, database_url, child):
    store_only(database_url, ev("track", name="b", user_id="u2"))  # committed, nobody woken
    profiles_outbox.stop_applier(timeout=30)
    assert not child.is_alive() and child.process.exitcode == 0
    assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 1


def test_it_applies_what_is_pending_and_exits_when_the_worker_is_gone(db, database_url, child):
    """A killed worker cannot say stop: its end of the pipe closes, and the child sees that."""
    store_only(database_url, ev("track", name="c", user_id="u3"))
    child._channel.close()  # all the worker's killing leaves behind
    child.process.join(30)
    assert child.process.exitcode == 0
    assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 1


def test_a_wake_never_blocks_the_store_even_when_the_child_does_not_read(database_url, db, child):
    """The store wakes the applier after every commit: a child that stopped reading (stuck) must not
    stall it. The socket fills; the wakes beyond it are dropped (the child looks every second anyway)."""
    assert child.pid is not None
    os.kill(child.pid, signal.SIGSTOP)  # reads nothing, its end of the pipe open
    try:
        started = time.monotonic()
        for _ in range(50_000):  # a byte each: far more writes than the socket pair holds
            child.wake()
        assert time.monotonic() - started < 10
    finally:
        os.kill(child.pid, signal.SIGCONT)
    store_only(database_url, ev("track", name="d", user_id="u4"))
    assert child.settle(timeout=30)  # the settle waits for room behind the wakes that fit
    assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 1


def test_sigterm_makes_it_apply_what_is_pending_and_exit_and_the_store_then_applies_itself(
    db, database_url, child, monkeypatch
):
    """A SIGTERM to the whole group (systemd's default) ends the applier gracefully; the worker's later
    commits find no live applier and apply on the store's connection."""
    store_only(database_url, ev("track", name="e", user_id="u5"))
    assert child.pid is not None
    os.kill(child.pid, signal.SIGTERM)
    child.process.join(30)
    assert child.process.exitcode == 0
    assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 1
    assert not child.is_alive()
    monkeypatch.undo()  # this process may apply again
    with psycopg.connect(database_url) as conn:
        batch = PersistBatch(batch_id="b2", events=[ev("track", name="f", user_id="u6")])
        pipeline.persist(conn, batch, None)
    assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 2
