"""The forwarding outbox (issue 11, item 3): a forward is written with its events and queued after
the commit; when that queueing fails, a sweep queues it. And ``replay events`` (item 4) sends a
destination only what it was not sent before, and resumes by the command's words."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis
import respx

from tests.helpers import HOOK, batch, ingest, sent_ids
from trackgate.workers import replay
from trackgate.workers.forward import outbox, resources


@pytest.fixture
def sweep_now(monkeypatch):
    """Deliveries are swept as soon as they are committed, and every persist job may sweep."""
    monkeypatch.setattr(outbox, "SWEEP_GRACE", 0.0)
    monkeypatch.setattr(outbox, "SWEEP_EVERY", 0.0)


def outbox_rows(db) -> list[tuple]:
    return db.execute(
        "SELECT d.status, d.enqueued_at IS NOT NULL, d.n_events, cardinality(e.event_ids)"
        " FROM deliveries d JOIN delivery_events e ON e.delivery_id = d.id ORDER BY d.id"
    ).fetchall()


def test_the_delivery_is_written_with_its_events_and_marked_once_queued(
    client, write_key, drain, add, clock, db
):
    add("webhook", "hook", HOOK, {"secret": "s"})
    ingest(client, write_key, drain, batch("m", 3))
    assert outbox_rows(db) == [("queued", True, 3, 3)]
    # delivery_events has no foreign key (the tests' TRUNCATE leaves it): read it through deliveries
    (ids,) = db.execute(
        "SELECT e.event_ids FROM delivery_events e JOIN deliveries d ON d.id = e.delivery_id"
    ).fetchone()
    stored = db.execute("SELECT id FROM events ORDER BY id").fetchall()
    assert sorted(ids) == [r[0] for r in stored]


def test_a_fan_out_whose_redis_enqueue_fails_after_the_commit_is_forwarded_once_by_a_sweep(
    client, write_key, drain, drain_forward, add, clock, db, monkeypatch, sweep_now, fsettings
):
    add("webhook", "hook", HOOK, {"secret": "s"})
    dead_redis = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    real = resources.redis_connection
    monkeypatch.setattr(resources, "redis_connection", lambda settings: dead_redis)
    ingest(client, write_key, drain, batch("m", 2))  # stored; its forward job could not be queued
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 2
    assert outbox_rows(db) == [("queued", False, 2, 2)]
    monkeypatch.setattr(resources, "redis_connection", real)  # Redis is back
    # the next persist job sweeps first: the stranded delivery is queued with its events read back
    ingest(client, write_key, drain, batch("n", 1))
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
        assert sorted(sent_ids(hook)) == ["m-0", "m-1", "n-0"]
        # nothing is left to sweep, and a sweep finding nothing queues nothing twice
        with psycopg.connect(db.info.dsn) as conn:
            assert outbox.sweep(conn, resources.redis_connection(fsettings), grace=0) == 0
        drain_forward()
        assert hook.call_count == 2
    assert [r[0] for r in outbox_rows(db)] == ["delivered", "delivered"]
    sent = json.loads(hook.calls[0].request.content)["events"]
    assert sent[0]["raw"] and sent[0]["type"] == "track" and sent[0]["properties"] == {"revenue": 0}


def test_a_worker_that_died_after_queueing_but_before_marking_is_not_sent_twice(
    client, write_key, drain, drain_forward, add, clock, db, monkeypatch, fsettings
):
    add("webhook", "hook", HOOK, {"secret": "s"})

    def lost(conn, ids):
        raise psycopg.OperationalError("the worker died here")

    monkeypatch.setattr(outbox, "_mark_enqueued", lost)
    ingest(client, write_key, drain, batch("m", 2))
    assert outbox_rows(db) == [("queued", False, 2, 2)]
    with psycopg.connect(db.info.dsn) as conn:
        # the job exists under its delivery's id: the sweep only marks the row
        assert outbox.sweep(conn, resources.redis_connection(fsettings), grace=0) == 0
    assert outbox_rows(db) == [("queued", True, 2, 2)]
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
    assert sent_ids(hook) == ["m-0", "m-1"]


def test_a_young_delivery_is_left_to_the_job_that_wrote_it(
    client, write_key, drain, add, clock, db, monkeypatch, fsettings
):
    add("webhook", "hook", HOOK, {"secret": "s"})
    monkeypatch.setattr(outbox, "enqueue", lambda *args: (_ for _ in ()).throw(redis.ConnectionError("x")))
    ingest(client, write_key, drain, batch("m", 1))
    with psycopg.connect(db.info.dsn) as conn:
        assert outbox.sweep(conn, resources.redis_connection(fsettings)) == 0  # within SWEEP_GRACE
        assert outbox.sweep(conn, resources.redis_connection(fsettings), grace=0) == 1
    assert outbox_rows(db) == [("queued", True, 1, 1)]


def test_a_paused_destinations_requeued_job_is_not_swept_again(
    client, write_key, drain, drain_forward, add, clock, db, monkeypatch, fsettings, scheduled
):
    from trackgate.workers import destinations as destination_store

    add("webhook", "hook", HOOK, {"secret": "s"})
    destination_store.set_paused(fsettings.database_url, "hook", True)
    monkeypatch.setattr(outbox, "_mark_enqueued", lambda conn, ids: None)  # as if the mark was lost
    ingest(client, write_key, drain, batch("m", 1))
    drain_forward()  # paused: the job queues itself for a minute later, under another id
    assert len(scheduled.get_job_ids()) == 1
    with psycopg.connect(db.info.dsn) as conn:
        assert outbox.sweep(conn, resources.redis_connection(fsettings), grace=0) == 0
    assert outbox_rows(db) == [("queued", True, 1, 1)]


# --- replay events: idempotent at the receiver --------------------------------------------------


def test_replay_from_1d_run_twice_sends_each_event_once_and_force_sends_again(
    client, write_key, drain, drain_forward, add, clock, db, cli
):
    ingest(client, write_key, drain, batch("m", 5))  # stored before the destination existed
    add("webhook", "late", HOOK, {"secret": "s"})
    command = ("replay", "events", "--source", "web", "--from", "1d", "--destination", "late")
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(200)
        assert "queued 5 event(s) in 1 forward job(s)" in cli(*command, ok=True).output
        drain_forward()
        assert sorted(sent_ids(hook)) == [f"m-{i}" for i in range(5)]
        # the same words again (the window resolves to other times): nothing is sent twice
        assert "queued 0 event(s) in 0 forward job(s)" in cli(*command, ok=True).output
        drain_forward()
        assert hook.call_count == 1
        # an event stored since then (the live fan-out sends it) is not sent by the replay either
        ingest(client, write_key, drain, batch("n", 1))
        assert "queued 0 event(s)" in cli(*command, ok=True).output
        drain_forward()
        assert sorted(sent_ids(hook)) == [*(f"m-{i}" for i in range(5)), "n-0"]
        assert "queued 6 event(s)" in cli(*command, "--force", ok=True).output
        drain_forward()
    assert sorted(sent_ids(hook)) == sorted([*(f"m-{i}" for i in range(5)), "n-0"] * 2)


def test_an_interrupted_replay_resumes_by_its_words_over_the_window_it_resolved(
    client, write_key, drain, drain_forward, add, clock, db, fsettings, monkeypatch
):
    ingest(client, write_key, drain, batch("m", 7))
    add("webhook", "late", HOOK, {"secret": "s"})
    real = outbox.enqueue_deliveries
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped after the first chunk was sent and checkpointed
        return real(*args, **kwargs)

    now = datetime.now(UTC)
    words = "--from 1d --to now"
    monkeypatch.setattr(outbox, "enqueue_deliveries", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replay.replay_events(
            fsettings, "web", now - timedelta(days=1), now, "late", chunk=3, out=io.StringIO(), words=words
        )
    monkeypatch.setattr(outbox, "enqueue_deliveries", real)
    # resumed a day later: "1d" now resolves to a window that holds none of the events
    later = now + timedelta(days=1, hours=1)
    out = io.StringIO()
    counts = replay.replay_events(
        fsettings, "web", later - timedelta(days=1), later, "late", chunk=3, out=out, words=words
    )
    assert "resuming after 3 event(s) read" in out.getvalue()
    assert counts == {"events": 7, "jobs": 3, "skipped": 0}  # the first run's chunk counted once
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
    assert sorted(sent_ids(hook)) == [f"m-{i}" for i in range(7)]


def test_a_sweep_takes_every_stranded_delivery_a_limit_at_a_time(
    client, write_key, drain, drain_forward, add, clock, db, monkeypatch, fsettings
):
    add("webhook", "hook", HOOK, {"secret": "s"})
    monkeypatch.setattr(outbox, "enqueue", lambda *args: (_ for _ in ()).throw(redis.ConnectionError("x")))
    for prefix in "abcde":
        ingest(client, write_key, drain, batch(prefix, 1))
    with psycopg.connect(db.info.dsn) as conn:
        assert outbox.sweep(conn, resources.redis_connection(fsettings), grace=0, limit=2) == 5
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
    assert sorted(sent_ids(hook)) == [f"{p}-0" for p in "abcde"]


def test_removing_a_destination_removes_the_event_ids_its_deliveries_carried(
    client, write_key, drain, add, clock, db, fsettings
):
    from trackgate.workers import destinations as destination_store

    destination_id = add("webhook", "hook", HOOK, {"secret": "s"})
    ingest(client, write_key, drain, batch("m", 2))
    count = "SELECT count(*) FROM delivery_events WHERE destination_id = %s"
    assert db.execute(count, (destination_id,)).fetchone()[0] == 1
    destination_store.remove_destination(fsettings.database_url, "hook")
    assert db.execute(count, (destination_id,)).fetchone()[0] == 0
