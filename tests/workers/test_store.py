"""Storage: dedupe on (source, message id), concurrency, partitions, pruning. Real PostgreSQL."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from tests.helpers import RECEIVED_AT, make_event, stored
from trackgate.schemas.jobs import PersistBatch
from trackgate.workers import pipeline, store
from trackgate.workers.forward import outbox

T0 = RECEIVED_AT  # make_event's received_at


def test_stores_every_field(db, database_url):
    event = make_event("m1", properties={"plan": "pro", "n": 3}, traits={}, group_ids=["g1", "g2"])
    with psycopg.connect(database_url) as conn:
        assert store.store_batch(conn, PersistBatch(batch_id="b1", events=[event])).n_stored == 1
    (row,) = stored(db)
    assert row["message_id"] == "m1"
    assert row["properties"] == {"plan": "pro", "n": 3}
    assert row["context"] == {"ip": "203.0.113.9"}
    assert row["group_ids"] == ["g1", "g2"]
    assert row["timestamp"] == T0
    assert row["raw"] == {"event": "Signed Up"}
    assert row["batch_id"] == "b1"


def test_times_are_stored_to_the_microsecond_in_their_offset(db, database_url):
    """The four times reach their timestamptz columns exactly: microseconds, another offset, an
    absent one, a whole second (no fraction), a time before 1970."""
    paris = timezone(timedelta(hours=2))
    event = make_event(
        "m-times",
        original_timestamp=datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
        sent_at=datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=paris),
    )
    event.timestamp = datetime(2026, 6, 1, 9, 59, 59, 1, tzinfo=UTC)
    bare = make_event("m-bare")  # no original_timestamp, no sent_at
    with psycopg.connect(database_url) as conn:
        assert store.store_batch(conn, PersistBatch(batch_id="bt", events=[event, bare])).n_stored == 2
    rows = {row["message_id"]: row for row in stored(db)}
    row = rows["m-times"]
    assert row["timestamp"] == datetime(2026, 6, 1, 9, 59, 59, 1, tzinfo=UTC)
    assert row["original_timestamp"] == datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC)
    assert row["sent_at"] == datetime(2026, 6, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert row["received_at"] == T0
    assert rows["m-bare"]["original_timestamp"] is None and rows["m-bare"]["sent_at"] is None


def test_same_message_twice_is_stored_once(db, database_url):
    batch = PersistBatch(batch_id="b1", events=[make_event("m1"), make_event("m2")])
    with psycopg.connect(database_url) as conn:
        assert store.store_batch(conn, batch).n_stored == 2
        # a re-run job, and a retried request that became another batch with one new event
        assert store.store_batch(conn, batch).n_stored == 0
        again = PersistBatch(
            batch_id="b2",
            events=[make_event("m2", id="01890000-0000-7000-8000-000000000099"), make_event("m3")],
        )
        assert store.store_batch(conn, again).n_stored == 1
    assert sorted(r["message_id"] for r in stored(db)) == ["m1", "m2", "m3"]


@pytest.fixture(autouse=True)
def _claims_start_by_copy(monkeypatch):
    """Each test starts from a worker that has met no pair claimed before (the share is per process)."""
    monkeypatch.setattr(store, "_seen_before_share", 0.0)


def test_claims_by_insert_while_many_transactions_hold_a_message_seen_before(db, database_url, monkeypatch):
    """A COPY claim fails on a pair claimed before and the transaction runs again with INSERT; while
    many transactions hold one (an SDK retrying often), they claim with INSERT at once, and by COPY
    again once they are rare. Each batch stores exactly its new messages either way."""
    claims: list[str] = []
    claim = store._claim

    def spy(cur, keys, every_new):
        try:
            claimed = claim(cur, keys, every_new)
        except store._SeenBefore:
            claims.append("copy failed")
            raise
        claims.append("copy" if every_new else "insert")
        return claimed

    monkeypatch.setattr(store, "_claim", spy)
    with psycopg.connect(database_url) as conn:
        assert store.store_batch(conn, PersistBatch(batch_id="b0", events=[make_event("m0")])).n_stored == 1
        assert claims == ["copy"]
        for i in range(1, 6):  # each with the message before it again
            batch = PersistBatch(batch_id=f"b{i}", events=[make_event(f"m{i - 1}"), make_event(f"m{i}")])
            assert [e.message_id for e in store.store_batch(conn, batch).stored] == [f"m{i}"]
        assert claims == ["copy", "copy failed", "insert", "insert", "insert", "insert", "insert"]
        claims.clear()
        for i in range(6, 60):  # new messages only
            store.store_batch(conn, PersistBatch(batch_id=f"b{i}", events=[make_event(f"m{i}")]))
        assert claims[0] == "insert" and claims[-1] == "copy" and "copy failed" not in claims
    assert sorted(r["message_id"] for r in stored(db)) == sorted(f"m{i}" for i in range(60))


def test_a_claim_by_copy_is_dated_by_its_transaction(db, database_url):
    with psycopg.connect(database_url) as conn:
        store.store_batch(conn, PersistBatch(batch_id="b1", events=[make_event("m1"), make_event("m2")]))
        later = conn.execute("SELECT now()").fetchone()  # a transaction of its own, after the store's
    rows = db.execute("SELECT claimed_at FROM event_dedupe ORDER BY message_id").fetchall()
    assert later is not None and len(rows) == 2
    assert rows[0] == rows[1] and rows[0][0] <= later[0]


def test_duplicates_inside_one_batch(db, database_url):
    batch = PersistBatch(
        batch_id="b1", events=[make_event("m1"), make_event("m1", id="01890000-0000-7000-8000-0000000000aa")]
    )
    with psycopg.connect(database_url) as conn:
        assert store.store_batch(conn, batch).n_stored == 1
    assert len(stored(db)) == 1


def test_same_message_id_in_two_sources_is_two_events(db, database_url):
    batch = PersistBatch(
        batch_id="b1", events=[make_event("m1", source_id="src_a"), make_event("m1", source_id="src_b")]
    )
    with psycopg.connect(database_url) as conn:
        assert store.store_batch(conn, batch).n_stored == 2


@pytest.mark.parametrize("copy_first", [True, False], ids=["claims-by-copy", "claims-by-insert"])
def test_two_workers_racing_store_once(db, database_url, monkeypatch, copy_first):
    """Two connections store overlapping batches at the same instant; every message lands once."""
    monkeypatch.setattr(store, "COPY_WHILE_SEEN_BEFORE_BELOW", 2.0 if copy_first else -1.0)
    events = [make_event(f"m{i}") for i in range(200)]
    batches = [
        PersistBatch(batch_id="b1", events=events),
        PersistBatch(batch_id="b2", events=events[::-1][:150]),
    ]
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def work(batch: PersistBatch) -> None:
        try:
            with psycopg.connect(database_url) as conn:
                barrier.wait()
                counts.append(store.store_batch(conn, batch).n_stored)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sum(counts) == 200
    rows = db.execute(
        "SELECT message_id, count(*) FROM events GROUP BY message_id HAVING count(*) > 1"
    ).fetchall()
    assert rows == []
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 200


def test_rows_land_in_their_month_partition(db, database_url):
    april = datetime(2026, 4, 30, 23, 59, tzinfo=UTC)
    may = april + timedelta(minutes=2)
    batch = PersistBatch(
        batch_id="b1", events=[make_event("m1", received_at=april), make_event("m2", received_at=may)]
    )
    with psycopg.connect(database_url) as conn:
        store.store_batch(conn, batch)
    rows = dict(db.execute("SELECT message_id, tableoid::regclass::text FROM events").fetchall())
    assert rows == {"m1": "events_y2026m04", "m2": "events_y2026m05"}


def test_prune_forgets_only_pairs_claimed_long_ago(db, database_url):
    with psycopg.connect(database_url) as conn:
        store.store_batch(conn, PersistBatch(batch_id="b", events=[make_event("old"), make_event("recent")]))
    # as if the first had been stored 40 days ago and the other 8
    db.execute("UPDATE event_dedupe SET claimed_at = now() - interval '40 days' WHERE message_id = 'old'")
    db.execute("UPDATE event_dedupe SET claimed_at = now() - interval '8 days' WHERE message_id = 'recent'")
    with psycopg.connect(database_url) as conn:
        assert store.prune_dedupe(conn, 30) == 1
    left = [r[0] for r in db.execute("SELECT message_id FROM event_dedupe").fetchall()]
    assert left == ["recent"]


def test_a_historical_event_stays_deduplicated_after_a_prune(db, database_url):
    """An import of old events (received 90 days ago) is remembered for the window from its storing."""
    old = make_event("imported", received_at=datetime.now(UTC) - timedelta(days=90))
    batch = PersistBatch(batch_id="b", events=[old])
    with psycopg.connect(database_url) as conn:
        assert store.store_batch(conn, batch).n_stored == 1
        assert store.prune_dedupe(conn, 30) == 0
        assert store.store_batch(conn, batch).n_stored == 0
    assert len(stored(db)) == 1


@pytest.mark.parametrize("month", [(2026, 12), (2027, 1)])
def test_month_bounds_cross_year(month):
    start, end = store._month_bounds(*month)
    assert start < end
    assert (end - start).days in (28, 29, 30, 31)


def test_a_very_long_user_id_is_stored_with_the_rest_of_its_batch(db, database_url):
    """No B-tree limit on user ids: a 3,200-character one (accepted by the gateway) is stored."""
    long_id = secrets.token_hex(1600)
    batch = PersistBatch(batch_id="b1", events=[make_event("m-ok"), make_event("m-long", user_id=long_id)])
    with psycopg.connect(database_url) as conn:
        assert store.store_batch(conn, batch).n_stored == 2
    assert {r["message_id"]: len(r["user_id"]) for r in stored(db)} == {"m-ok": 2, "m-long": 3200}


def test_an_event_postgresql_refuses_is_quarantined_and_the_rest_stored(db, database_url, caplog):
    """A value PostgreSQL refuses (NUL in jsonb) sinks neither the batch nor the job; the reason is kept
    without the refused value, and nothing of the event reaches the logs."""
    bad = make_event("m-bad", properties={"email": "secret@example.com", "x": "a\x00b"})
    batch = PersistBatch(batch_id="b1", events=[make_event("m-ok"), bad])
    with psycopg.connect(database_url) as conn:
        assert pipeline.persist(conn, batch, None).n_stored == 1
    assert [r["message_id"] for r in stored(db)] == ["m-ok"]
    (row,) = db.execute("SELECT source_id, message_id, reason, event, batch_id FROM quarantine").fetchall()
    source_id, message_id, reason, event_json, batch_id = row
    assert (source_id, message_id, batch_id) == ("src_a", "m-bad", "b1")
    assert reason.startswith("22P05") and "secret@example.com" not in reason
    assert '"secret@example.com"' in event_json  # the event itself is kept whole
    assert "secret@example.com" not in caplog.text
    # the quarantined event did not claim its message id: fixed and replayed, it can still be stored
    assert db.execute("SELECT count(*) FROM event_dedupe WHERE message_id = 'm-bad'").fetchone()[0] == 0


def test_a_batch_bigger_than_a_transaction_is_stored_in_parts_exactly_once(db, database_url):
    """Over ``chunk`` events a batch is stored in several transactions: every event once (one sent
    twice in two parts too), a refused one isolated within its own part, and the batch sent again
    stores nothing (as after a failure between two parts)."""
    bad = make_event("m-bad", properties={"x": "a\x00b"})
    events = [make_event(f"m{i}") for i in range(5)] + [bad, make_event("m1"), make_event("m6")]
    with psycopg.connect(database_url) as conn:
        result = store.store_events(conn, "bp", events, chunk=3)
        assert sorted(e.message_id for e in result.stored) == ["m0", "m1", "m2", "m3", "m4", "m6"]
        assert [r.event.message_id for r in result.refused] == ["m-bad"]
        again = store.store_events(conn, "bp", events[:5] + events[6:], chunk=3)
        assert again.stored == [] and again.refused == []
    assert sorted(r["message_id"] for r in stored(db)) == ["m0", "m1", "m2", "m3", "m4", "m6"]


def test_prune_works_in_chunks(db, database_url):
    with psycopg.connect(database_url) as conn:
        store.store_batch(conn, PersistBatch(batch_id="b", events=[make_event(f"m{i}") for i in range(25)]))
    db.execute("UPDATE event_dedupe SET claimed_at = now() - interval '40 days'")
    with psycopg.connect(database_url) as conn:
        assert store.prune_dedupe(conn, 30, chunk=10) == 25
    assert db.execute("SELECT count(*) FROM event_dedupe").fetchone()[0] == 0


def test_enrichment_is_stored_in_its_columns_and_read_back_whole(db, database_url):
    """The keys with a column of their type go into it; ``enrichment`` keeps the others (a key without
    a column, a value of another type, a null); the forwarding reader gives the dict back as it was."""
    enrichment = {
        "browser": "Chrome",
        "is_bot": True,
        "visitor_id": "v" * 64,
        "session_id": "s-1",
        "os": 5,
        "country": None,
    }
    event = make_event("m-enriched", enrichment=dict(enrichment))
    with psycopg.connect(database_url) as conn:
        assert store.store_batch(conn, PersistBatch(batch_id="be", events=[event])).n_stored == 1
    assert db.execute(
        "SELECT browser, is_bot, visitor_id, os, country, is_excluded, enrichment FROM events"
    ).fetchall() == [
        ("Chrome", True, "v" * 64, None, None, None, {"session_id": "s-1", "os": 5, "country": None})
    ]
    (back,) = outbox.load_events(db, [event.id], T0, T0)
    assert back.enrichment == enrichment


def test_a_nul_or_lone_surrogate_in_an_enrichment_text_is_replaced_and_the_batch_stored(db, database_url):
    """An enrichment value bound for a text column is made storable like the canonical text fields
    (U+FFFD): a lone surrogate could not even be sent, and PostgreSQL's text refuses a NUL."""
    odd = make_event(
        "m-odd", enrichment={"utm_source": "caf\ud83d", "utm_medium": "a\x00b", "session_id": "s"}
    )
    batch = PersistBatch(batch_id="bo", events=[make_event("m-1"), odd, make_event("m-3")])
    with psycopg.connect(database_url) as conn:
        result = store.store_batch(conn, batch)
    assert (result.n_stored, result.refused) == (3, [])
    assert db.execute(
        "SELECT utm_source, utm_medium, enrichment FROM events WHERE message_id = 'm-odd'"
    ).fetchall() == [("caf\ufffd", "a\ufffdb", {"session_id": "s"})]
    assert odd.enrichment["utm_source"] == "caf\ufffd"  # what is forwarded is what was stored


def test_rows_of_sees_each_new_event_as_its_row_is_written(db, database_url):
    """``rows_of=``: the events a transaction writes pass through the hook, in the COPY (a
    row is written after the hook has seen its event); one claimed before does not."""
    with psycopg.connect(database_url) as conn:
        store.store_batch(conn, PersistBatch(batch_id="b0", events=[make_event("m-old")]))
    seen: list[str] = []

    def mark(events):
        for event in events:
            seen.append(event.message_id)
            event.enrichment = {"browser": f"seen-{event.message_id}"}
            yield event

    batch = PersistBatch(batch_id="b1", events=[make_event("m-1"), make_event("m-old"), make_event("m-2")])
    with psycopg.connect(database_url) as conn:
        result = store.store_batch(conn, batch, rows_of=mark)
    assert result.n_stored == 2 and sorted(seen) == ["m-1", "m-2"]
    rows = db.execute("SELECT message_id, browser FROM events WHERE batch_id = 'b1' ORDER BY 1").fetchall()
    assert rows == [("m-1", "seen-m-1"), ("m-2", "seen-m-2")]
    with psycopg.connect(database_url) as conn:  # without it, nothing passes through the hook
        store.store_batch(conn, PersistBatch(batch_id="b2", events=[make_event("m-3")]))
    assert len(seen) == 2


def test_two_bad_enrichment_texts_given_in_the_copy_are_both_cleaned_in_one_retry(db, database_url, caplog):
    """The pipeline enriches each event as its row is written, so when the first bad enrichment text
    fails the COPY, the events after it have no enrichment yet. The retry passes every event through
    the hook first, then cleans them all: a second bad value later in the batch is cleaned too, and
    the batch is stored (else the second COPY would fail on it, after the one cleaning allowed)."""
    given: dict[str, int] = {}

    def enrich_once(events):
        for event in events:
            if event.message_id not in given:
                given[event.message_id] = 1
                event.enrichment = {"utm_medium": f"{event.message_id}\x00x"}
            yield event

    events = [make_event(f"m-{i}") for i in range(4)]
    with psycopg.connect(database_url) as conn, caplog.at_level("WARNING"):
        result = store.store_batch(conn, PersistBatch(batch_id="bn", events=events), rows_of=enrich_once)
    assert (result.n_stored, result.refused) == (4, [])
    assert "batch_refused" not in caplog.text  # not stored event by event
    cleaned = db.execute("SELECT count(*) FROM events WHERE utm_medium LIKE %s", ("%\ufffdx",)).fetchone()
    assert cleaned == (4,)
