"""The profile outbox: written in the store transaction, applied after it, exactly once. Real
PostgreSQL, real transactions and a real applier thread."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest

from tests.workers.test_profiles import count, ev, show
from trackgate.schemas import metrics
from trackgate.schemas.jobs import DeleteData, PersistBatch
from trackgate.sources import add_source
from trackgate.workers import deletes, pipeline, profiles, profiles_outbox, runtime, store


def store_only(database_url: str, *events) -> None:
    """The store transaction as the pipeline runs it, without what follows its commit."""
    with psycopg.connect(database_url) as conn:
        store.store_batch(conn, PersistBatch(batch_id="b", events=list(events)), apply=pipeline.apply_stored)


def counter(db, user_id: str, path: str):
    return show(db, user_id)["counters"].get(path)


def test_the_store_writes_one_row_and_no_profile_and_applying_it_twice_counts_once(db, database_url):
    store_only(
        database_url,
        ev("identify", user_id="u1", anonymous_id="d1", traits={"plan": "pro"}),
        ev("increment", at=1, user_id="u1", properties={"property": "logins", "value": 2}),
    )
    assert count(db, "profile_outbox") == 1  # both events are u1's: one partition
    assert db.execute("SELECT n_events FROM profile_outbox").fetchone()[0] == 2
    assert count(db, "profiles") == 0 and count(db, "profile_ids") == 0

    with psycopg.connect(database_url) as conn:
        assert profiles_outbox.apply_all(conn) == 1
        assert profiles_outbox.apply_all(conn) == 0  # the row left with its application
    assert count(db, "profile_outbox") == 0
    assert counter(db, "u1", "logins") == 2
    assert show(db, "d1")["traits"] == {"plan": "pro"}


def test_bots_and_excluded_traffic_write_no_row(db, database_url):
    store_only(database_url, ev("track", name="x", user_id="u1", enrichment={"is_bot": True}))
    assert count(db, "events") == 1 and count(db, "profile_outbox") == 0


def test_what_the_outbox_keeps_is_what_profiles_read(db, database_url):
    event = ev(
        "track",
        name="Order",
        user_id="u1",
        active=False,
        properties={"revenue": 9.5, "currency": "eur", "mrr": 3, "items": [1, 2, 3], "note": "x" * 500},
        traits={"ignored": "on a track"},
    )
    kept = profiles.essentials(event)
    assert kept is not None
    assert kept.properties == {"revenue": 9.5, "currency": "eur", "mrr": 3}
    assert kept.traits == {} and kept.active is False
    store_only(database_url, event)
    with psycopg.connect(database_url) as conn:
        profiles_outbox.apply_all(conn)
    profile = show(db, "u1")
    assert profile["revenue"] == {"EUR": 9.5} and profile["mrr"] == 3
    assert profile["last_seen"] is None  # sent with context.active=false


def test_a_failed_application_leaves_the_row_and_changes_nothing(db, database_url, monkeypatch):
    store_only(database_url, ev("increment", user_id="u1", properties={"property": "n"}))
    real = profiles.apply

    def apply_then_fail(conn, events, where=None, **options):
        # its writes are made, then the transaction fails (not the event's fault)
        real(conn, events, where, **options)
        raise psycopg.OperationalError("the server closed the connection")

    monkeypatch.setattr(profiles, "apply", apply_then_fail)
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.OperationalError):
        profiles_outbox.apply_pending(conn)
    assert count(db, "profile_outbox") == 1 and count(db, "profiles") == 0
    monkeypatch.setattr(profiles, "apply", real)
    with psycopg.connect(database_url) as conn:
        assert profiles_outbox.apply_all(conn) == 1
    assert counter(db, "u1", "n") == 1


def partition_lock(conn: psycopg.Connection, user_id: str) -> None:
    """Take, in ``conn``'s transaction, the lock an applier of ``user_id``'s partition holds."""
    partition = partition_of(user_id)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (profiles_outbox._LOCK_BASE + partition,))


def partition_of(user_id: str) -> int:
    essential = profiles.essentials(ev("track", user_id=user_id))
    assert essential is not None
    return profiles_outbox.partitions([essential])[0]


def two_users_apart() -> tuple[str, str]:
    """Two user ids whose events fall in two different partitions."""
    other = next(f"v{i}" for i in range(100) if partition_of(f"v{i}") != partition_of("u1"))
    return "u1", other


def test_one_store_writes_a_row_per_partition_its_events_fall_in(db, database_url):
    u1, other = two_users_apart()
    store_only(database_url, ev("track", user_id=u1), ev("track", user_id=u1), ev("track", user_id=other))
    rows = db.execute("SELECT partition, n_events FROM profile_outbox ORDER BY n_events").fetchall()
    assert [n for _, n in rows] == [1, 2] and rows[0][0] != rows[1][0]


def test_a_partition_another_applier_holds_is_skipped_or_waited_for(db, database_url):
    held, free = two_users_apart()
    store_only(database_url, ev("increment", user_id=held, properties={"property": "n"}))
    store_only(database_url, ev("increment", user_id=free, properties={"property": "n"}))
    with psycopg.connect(database_url) as holder, psycopg.connect(database_url) as other:
        partition_lock(holder, held)  # an applier mid-transaction on that partition
        assert profiles_outbox.apply_all(other) == 1  # the other partition only, at once
        assert count(db, "profile_outbox") == 1 and counter(db, free, "n") == 1

        waited: list[int] = []
        waiter = threading.Thread(
            target=lambda: waited.append(profiles_outbox.apply_pending(other, wait=True))
        )
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # waiting for the holder's partition
        holder.execute("DELETE FROM profile_outbox")  # as the holder's application does
        holder.commit()
        waiter.join(10)
    assert waited == [0]  # the row left with the holder's commit: nothing is applied again
    assert db.execute("SELECT count(*) FROM profile_ids WHERE id = %s", (held,)).fetchone()[0] == 0


def test_one_application_takes_a_partitions_rows_up_to_its_event_cap(db, database_url, monkeypatch):
    for name in ("a", "b", "c"):  # three rows of one partition, 2 events each
        store_only(database_url, ev("track", name=name, user_id="u1"), ev("track", name=name, user_id="u1"))
    monkeypatch.setattr(profiles_outbox, "MAX_EVENTS", 5)  # two fit, not three
    with psycopg.connect(database_url) as conn:
        assert profiles_outbox.apply_pending(conn) == 2
        assert count(db, "profile_outbox") == 1
        monkeypatch.setattr(profiles_outbox, "MAX_EVENTS", 1)  # a row bigger than the cap goes alone
        assert profiles_outbox.apply_pending(conn) == 1
    assert count(db, "profiles") == 1 and count(db, "profile_outbox") == 0


def test_events_apply_in_the_workspace_their_source_had_when_stored(db, database_url):
    source, _ = add_source(database_url, "segment", "web", "k1", workspace="shop")
    store_only(database_url, ev("identify", source_id=source.id, user_id="u1", traits={"a": 1}))
    db.execute("DELETE FROM sources WHERE id = %s", (source.id,))  # gone before its profiles applied
    with psycopg.connect(database_url) as conn:
        profiles_outbox.apply_all(conn)
    assert db.execute("SELECT workspace FROM profiles").fetchall() == [("shop",)]


def test_deleting_an_account_applies_its_pending_work_first(db, database_url):
    source, _ = add_source(database_url, "segment", "web", "k1", workspace="ws_gone")
    store_only(database_url, ev("identify", source_id=source.id, user_id="u1", traits={"a": 1}))
    db.execute("DELETE FROM sources WHERE id = %s", (source.id,))
    db.execute("DELETE FROM accounts WHERE workspace = 'ws_gone'")  # as deleting the account does
    with psycopg.connect(database_url) as conn:
        deletes.delete_everything(conn, DeleteData(source_ids=[source.id], workspace="ws_gone"))
    # nothing pending is left to write the deleted account's profiles again afterwards
    assert count(db, "profile_outbox") == 0
    assert count(db, "profiles") == 0 and count(db, "profile_ids") == 0


def test_persist_without_an_applier_applies_before_it_returns(db, database_url):
    with psycopg.connect(database_url) as conn:
        pipeline.persist(conn, PersistBatch(batch_id="b", events=[ev("track", name="a", user_id="u1")]), None)
    assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 1


def test_a_failed_application_after_the_commit_is_logged_and_the_next_persist_applies_it(
    db, database_url, monkeypatch, caplog
):
    real = profiles.apply

    def deadlocked(conn, events, where=None, **options):
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    monkeypatch.setattr(profiles, "apply", deadlocked)
    with psycopg.connect(database_url) as conn, caplog.at_level(logging.WARNING):
        batch = PersistBatch(batch_id="b1", events=[ev("track", name="a", user_id="u1")])
        assert pipeline.persist(conn, batch, None).n_stored == 1  # the store committed: no error
    assert "profile_outbox_apply_failed" in caplog.text
    assert count(db, "profile_outbox") == 1 and count(db, "profiles") == 0
    monkeypatch.setattr(profiles, "apply", real)
    with psycopg.connect(database_url) as conn:  # a job whose events are all stored before
        pipeline.persist(conn, batch, None)
    assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 1


def test_the_applier_thread_applies_after_the_commit_and_what_is_left_when_it_stops(
    db, database_url, settings, monkeypatch
):
    lag = metrics.worker().profile_lag
    before = sum(s.value for m in lag.collect() for s in m.samples if s.name.endswith("_count"))
    real = profiles.apply
    applied_by: list[str] = []

    def apply(conn, events, where=None, **options):
        applied_by.append(threading.current_thread().name)
        return real(conn, events, where, **options)

    monkeypatch.setattr(profiles, "apply", apply)
    rt = runtime.WorkerRuntime(settings)
    applier = profiles_outbox.start_applier(rt)
    try:
        with psycopg.connect(database_url) as conn:
            batch = PersistBatch(batch_id="b1", events=[ev("track", name="a", user_id="u1")])
            pipeline.persist(conn, batch, None)  # wakes the applier instead of applying here
        assert applier.settle(timeout=10)
        assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 1

        store_only(database_url, ev("track", name="b", user_id="u2"))  # committed, nobody woken
        profiles_outbox.stop_applier(timeout=10)
        assert not applier.is_alive()
        assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 2
    finally:
        profiles_outbox.stop_applier(timeout=10)
        rt.close()
    after = sum(s.value for m in lag.collect() for s in m.samples if s.name.endswith("_count"))
    assert after - before == 2  # one lag observed per row applied
    assert applied_by == ["trackgate-profile-applier"] * 2  # persist woke it, and did not apply itself
    assert metrics.worker().profile_outbox_rows._value.get() == 0  # the backlog as it last saw it


def test_events_of_ids_linked_in_one_store_share_a_partition():
    """A device seen with two users in one job: its three events are applied together, in event order
    (the device stays with its first user), whichever applier takes them."""
    first, second = two_users_apart()
    events = [
        profiles.essentials(e)
        for e in (
            ev("identify", user_id=first, anonymous_id="d1"),
            ev("identify", at=5, user_id=second, anonymous_id="d1"),
            ev("track", at=6, name="x", anonymous_id="d1"),
            ev("track", name="y", user_id="lone"),
        )
    ]
    assert all(e is not None for e in events)
    parts = profiles_outbox.partitions([e for e in events if e is not None])
    assert parts[0] == parts[1] == parts[2]
    assert parts[3] == partition_of("lone")


def test_a_value_postgresql_refuses_costs_only_its_own_profile_change(db, database_url):
    """A revenue beyond ``numeric``'s range: the event is stored, its profile change is refused and
    counted, and the other events of its row and of other rows are applied (nothing stays pending)."""
    refused = metrics.worker().profile_refused
    before = refused._value.get()
    store_only(
        database_url,
        ev("track", name="a", user_id="u1", properties={"revenue": 5}),
        ev("track", at=1, name="b", user_id="u1", properties={"revenue": "1e200000"}),
        ev("track", at=2, name="c", user_id="u1", properties={"revenue": 2}),
        ev("identify", user_id="u2", traits={"plan": "pro"}),
    )
    with psycopg.connect(database_url) as conn:
        profiles_outbox.apply_all(conn)
    assert count(db, "events") == 4 and count(db, "profile_outbox") == 0
    assert show(db, "u1")["revenue"] == {"USD": 7}
    assert show(db, "u2")["traits"] == {"plan": "pro"}
    assert refused._value.get() - before == 1


def test_a_row_that_cannot_be_read_is_dropped_and_the_others_applied(db, database_url, caplog):
    db.execute("INSERT INTO profile_outbox (partition, n_events, events) VALUES (0, 3, 'not json')")
    store_only(database_url, ev("identify", user_id="u1", traits={"plan": "pro"}))
    with psycopg.connect(database_url) as conn, caplog.at_level(logging.ERROR):
        assert profiles_outbox.apply_all(conn) == 2
    assert "profile_outbox_row_unreadable" in caplog.text
    assert count(db, "profile_outbox") == 0 and show(db, "u1")["traits"] == {"plan": "pro"}


def test_appliers_of_two_partitions_sharing_an_id_lose_nothing(db, database_url):
    """A device's anonymous events fall in its own partition, its identified ones in the user's: two
    appliers apply them at once, and the id locks keep every increment."""
    n = 40
    assert partition_of("dev-1") != partition_of("user-1")

    def anonymous(i: int):
        return [ev("increment", at=i, anonymous_id="dev-1", properties={"property": "n"})]

    def identified(i: int):
        return [ev("increment", at=i, user_id="user-1", anonymous_id="dev-1", properties={"property": "n"})]

    for i in range(n):
        store_only(database_url, *anonymous(i))
        store_only(database_url, *identified(i))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            with psycopg.connect(database_url) as conn:
                barrier.wait()
                profiles_outbox.apply_all(conn)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=apply) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    with psycopg.connect(database_url) as conn:
        profiles_outbox.apply_all(conn, wait=True)
    assert count(db, "profile_outbox") == 0
    assert show(db, "dev-1")["counters"] == {"n": 2 * n}
    assert show(db, "user-1")["profile_id"] == show(db, "dev-1")["profile_id"]


def start_deleting(database_url: str) -> tuple[threading.Thread, list[int]]:
    """``apply_written_before`` (what deleting an account runs first) in a thread, given 0.5 s: the
    thread, and where it puts what it returned."""
    done: list[int] = []

    def delete() -> None:
        with psycopg.connect(database_url) as conn:
            done.append(profiles_outbox.apply_written_before(conn))

    deleter = threading.Thread(target=delete)
    deleter.start()
    deleter.join(0.5)
    return deleter, done


def test_deleting_waits_only_for_the_rows_written_before_it(db, database_url):
    first, second = two_users_apart()
    store_only(database_url, ev("track", name="a", user_id=first))
    with psycopg.connect(database_url) as holder:
        partition_lock(holder, first)  # an applier busy with the row's partition
        deleter, done = start_deleting(database_url)
        assert deleter.is_alive()  # waits for that applier
        store_only(database_url, ev("track", name="b", user_id=second))  # written after it began
        holder.rollback()
        deleter.join(10)
    assert done == [1]  # the row written before, not the one after
    assert db.execute("SELECT count(*) FROM profile_outbox").fetchone()[0] == 1


def test_a_group_of_jobs_applies_its_profiles_once_after_its_commit(db, database_url, settings):
    batches = [
        PersistBatch(batch_id="g1", events=[ev("increment", user_id="u1", properties={"property": "n"})]),
        PersistBatch(batch_id="g2", events=[ev("increment", user_id="u1", properties={"property": "n"})]),
    ]
    with psycopg.connect(database_url) as conn:
        pipeline.persist_group(conn, batches, settings)
        pipeline.persist_group(conn, batches, settings)  # the same jobs again: claimed, nothing written
    assert count(db, "profile_outbox") == 0 and counter(db, "u1", "n") == 2


def test_a_number_python_cannot_add_costs_only_its_own_profile_change(db, database_url):
    """Two revenues past what Python's decimals can add (stored fine as strings): the sum raises
    ``decimal.Overflow`` in Python, before PostgreSQL sees it; the row is split down to the events
    that fail, and the others apply."""
    store_only(
        database_url,
        ev("track", name="a", user_id="u1", properties={"revenue": "9.9e999999"}),
        ev("track", at=1, name="b", user_id="u1", properties={"revenue": "9.9e999999"}),
        ev("track", at=2, name="c", user_id="u1", properties={"plan": "pro"}),
        ev("identify", user_id="u2", traits={"plan": "pro"}),
    )
    refused = metrics.worker().profile_refused
    before = refused._value.get()
    with psycopg.connect(database_url) as conn:
        profiles_outbox.apply_all(conn)
    assert count(db, "profile_outbox") == 0
    assert show(db, "u2")["traits"] == {"plan": "pro"} and show(db, "u1")["user_id"] == "u1"
    assert refused._value.get() - before == 2  # then each alone is past numeric's range in PostgreSQL


def test_a_partition_none_of_whose_rows_fit_is_left_to_another_applier(db, database_url, monkeypatch):
    first, second = two_users_apart()
    store_only(database_url, *[ev("track", at=i, name="a", user_id=first) for i in range(4)])
    store_only(database_url, *[ev("track", at=i, name="b", user_id=second) for i in range(3)])
    monkeypatch.setattr(profiles_outbox, "MAX_EVENTS", 5)  # 4 fit, then 3 do not
    with (
        psycopg.connect(database_url) as busy,
        psycopg.connect(database_url) as other,
        busy.transaction(),
    ):
        assert len(profiles_outbox._apply_once(busy, False, None).lags) == 1  # mid-transaction
        assert profiles_outbox.apply_all(other) == 1  # the second partition was not locked
    assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 2


def test_an_applier_scans_past_the_partitions_others_hold(db, database_url, monkeypatch):
    held, free = two_users_apart()
    for i in range(3):
        store_only(database_url, ev("track", at=i, name="a", user_id=held))
    store_only(database_url, ev("track", name="b", user_id=free))
    monkeypatch.setattr(profiles_outbox, "SCAN_ROWS", 2)  # the oldest rows are all the held partition's
    with psycopg.connect(database_url) as holder, psycopg.connect(database_url) as other:
        partition_lock(holder, held)
        assert profiles_outbox.apply_all(other) == 1
        assert count(db, "profile_outbox") == 3 and counter(db, free, "n") is None
        assert show(db, free)["user_id"] == free


def test_deleting_waits_for_a_store_transaction_writing_rows(db, database_url):
    with psycopg.connect(database_url) as storing:
        with storing.transaction():
            pipeline.apply_stored(storing, [ev("track", name="a", user_id="u1")])  # not committed yet
            deleter, done = start_deleting(database_url)
            assert deleter.is_alive()  # waits for the store's commit
        deleter.join(10)
    assert done == [1] and count(db, "profile_outbox") == 0  # its row counted as written before


def test_an_id_another_applier_created_unlocked_is_found_when_the_application_runs_again(
    db, database_url, monkeypatch
):
    """An applier of another version takes other locks for the same id (an upgrade's mixed workers):
    it can create an id after this applier found it missing. The insert fails on ``profile_ids``'
    primary key; the application runs again, finds the id, and applies the event to its profile:
    nothing refused, nothing left pending."""
    store_only(database_url, ev("identify", user_id="u1", anonymous_id="d1", traits={"plan": "pro"}))
    real = profiles._lock_profiles
    calls: list[int] = []

    def then_another_applier_creates_u1(cur, ids, keys):
        links = real(cur, ids, keys)
        calls.append(len(links))
        if len(calls) == 1:  # the first attempt found nothing; the rival commits u1 before it inserts
            with psycopg.connect(database_url, autocommit=True) as rival:
                rival.execute(
                    "INSERT INTO profiles (id, workspace, user_id, first_seen, counters)"
                    " VALUES ('00000000-0000-7000-8000-000000000001', 'default', 'u1', now(), '{\"n\": 1}')"
                )
                rival.execute(
                    "INSERT INTO profile_ids (workspace, key, id, kind, profile_id) VALUES"
                    " ('default', sha256('u1'), 'u1', 'user', '00000000-0000-7000-8000-000000000001')"
                )
        return links

    monkeypatch.setattr(profiles, "_lock_profiles", then_another_applier_creates_u1)
    refused = metrics.worker().profile_refused
    before = refused._value.get()
    with psycopg.connect(database_url) as conn:
        assert profiles_outbox.apply_all(conn) == 1
    assert calls == [0, 1]  # run again once; the second time u1 was found
    assert refused._value.get() == before
    assert count(db, "profile_outbox") == 0 and count(db, "profiles") == 1
    u1 = show(db, "u1")
    assert u1["profile_id"] == "00000000-0000-7000-8000-000000000001"
    assert u1["traits"] == {"plan": "pro"} and u1["counters"] == {"n": 1}
    assert show(db, "d1")["profile_id"] == u1["profile_id"]


def test_an_id_found_missing_on_every_attempt_refuses_its_event_and_holds_nothing_back(
    db, database_url, monkeypatch
):
    """A lookup that keeps missing an id that exists (a bug, say): the insert fails on every attempt.
    After ``CONFLICT_RETRIES`` attempts the last one refuses that event alone; the row's other events
    are applied and nothing stays pending."""
    store_only(database_url, ev("identify", user_id="u1", traits={"plan": "pro"}))
    with psycopg.connect(database_url) as conn:
        profiles_outbox.apply_all(conn)
    store_only(
        database_url,
        ev("track", at=1, name="a", user_id="u1", properties={"revenue": 5}),
        ev("identify", at=2, user_id="u2", traits={"plan": "free"}),
    )
    real = profiles._lock_profiles
    attempts: list[int] = []

    def missing_u1(cur, ids, keys):
        attempts.append(1)
        return {key: p for key, p in real(cur, ids, keys).items() if key[1] != "u1"}

    monkeypatch.setattr(profiles, "_lock_profiles", missing_u1)
    refused = metrics.worker().profile_refused
    before = refused._value.get()
    with psycopg.connect(database_url) as conn:
        assert profiles_outbox.apply_all(conn) >= 1
    assert refused._value.get() - before == 1
    assert count(db, "profile_outbox") == 0
    assert show(db, "u2")["traits"] == {"plan": "free"}
    assert show(db, "u1")["revenue"] == {}  # its change refused, its profile untouched
    assert len(attempts) > profiles_outbox.CONFLICT_RETRIES  # retried, then split down to u1's event


def test_a_duplicate_on_another_constraint_is_one_events_fault_not_a_race(db, database_url, monkeypatch):
    store_only(  # one person: one outbox row
        database_url,
        ev("identify", user_id="u1", traits={"plan": "pro"}),
        ev("track", at=1, name="bad", user_id="u1", properties={"revenue": 3}),
    )
    real = profiles.apply
    calls: list[int] = []

    def duplicate_for_the_track(conn, events, *args, **kwargs):
        calls.append(len(events))
        if any(e.properties.get("revenue") == 3 for e in events):
            raise psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")
        return real(conn, events, *args, **kwargs)

    monkeypatch.setattr(profiles, "apply", duplicate_for_the_track)
    refused = metrics.worker().profile_refused
    before = refused._value.get()
    with psycopg.connect(database_url) as conn:
        assert profiles_outbox.apply_all(conn) == 1
    assert calls == [2, 1, 1]  # split at once, never run again whole
    assert refused._value.get() - before == 1
    assert show(db, "u1")["traits"] == {"plan": "pro"} and show(db, "u1")["revenue"] == {}
    assert count(db, "profile_outbox") == 0
