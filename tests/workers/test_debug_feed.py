"""The live debug feed written by the workers after the store commit: each event of a batch as
stored, duplicate or quarantined, with its raw payload and enrichment; nothing while nobody watches."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest

from trackgate.schemas import debug_feed
from trackgate.schemas.debug_feed import Filters, Seen
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PersistBatch, RefusedItem
from trackgate.sources import add_source
from trackgate.workers.debug_feed import WATCH, publish, seen_in_batch
from trackgate.workers.store import RefusedEvent

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def feed(rdb) -> list[Seen]:
    return [debug_feed.decode(data) for _, data in debug_feed.entries(rdb.xrange(debug_feed.STREAM))]


@pytest.fixture
def ca_key(settings) -> str:
    key = "ca_" + secrets.token_hex(8)
    add_source(settings.database_url, "commandersact", "shop", key)
    return key


def send_all(client, write_key, ca_key) -> None:
    track = {"userId": "u1", "event": "Signed Up", "messageId": "m-1", "properties": {"plan": "pro"}}
    for _ in range(2):  # the second is a retry: a duplicate
        assert client.post("/v1/track", json=track, auth=(write_key, "")).status_code == 200
    refused = client.post(f"/events?token={ca_key}", json={"event": "page_view", "properties": {}})
    assert refused.json()["accepted"] == 0


def test_a_watched_feed_shows_stored_duplicate_and_quarantined(
    ca_key, client, write_key, rdb, drain, source_id
):
    rdb.set(debug_feed.WATCHERS, b"1", ex=30)
    WATCH.forget()
    send_all(client, write_key, ca_key)
    drain()
    lines = feed(rdb)
    assert [line.kind for line in lines] == ["stored", "duplicate", "quarantined"]
    stored, duplicate, quarantined = lines
    assert (stored.source_id, stored.dialect, stored.type, stored.name, stored.user_id) == (
        source_id,
        "segment",
        "track",
        "Signed Up",
        "u1",
    )
    assert stored.event is not None and stored.event.properties == {"plan": "pro"}
    assert stored.event.raw == "" and '"messageId":"m-1"' in (stored.raw or "")
    assert stored.event.enrichment.get("visitor_id")  # what the enrichment chain added is in the feed
    assert duplicate.event is not None and duplicate.event.message_id == "m-1"
    assert (quarantined.dialect, quarantined.code, quarantined.reason) == (
        "commandersact",
        "missing_event_name",
        "event_name is required",
    )
    assert quarantined.raw is not None and "page_view" in quarantined.raw


def test_nothing_is_written_while_nobody_watches(ca_key, client, write_key, rdb, drain, db):
    WATCH.forget()
    send_all(client, write_key, ca_key)
    drain()
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    assert not rdb.exists(debug_feed.STREAM)


def event(event_id: str, **fields) -> Event:
    return Event(
        id=event_id,
        message_id=f"m-{event_id}",
        source_id="src_1",
        dialect="segment",
        type="track",
        name="Order Completed",
        user_id="u1",
        timestamp=NOW,
        received_at=NOW,
        raw='{"event":"Order Completed"}',
        **fields,
    )


def test_events_postgresql_refused_are_quarantined_with_their_reason():
    ok, bad = event("e1"), event("e2")
    item = RefusedItem(
        key="k", source_id="src_1", index=3, code="missing_field", reason="x is required", raw="{}"
    )
    batch = PersistBatch(batch_id="b", events=[ok, bad], refused=[item])
    lines = seen_in_batch(batch, ["e1"], [RefusedEvent(bad, "22P05", "22P05: unsupported Unicode")], NOW)
    assert [(line.kind, line.code) for line in lines] == [
        ("stored", None),
        ("quarantined", "22P05"),
        ("quarantined", "missing_field"),
    ]
    assert lines[1].reason == "22P05: unsupported Unicode" and lines[1].event is not None


def test_a_long_raw_payload_is_cut_in_the_feed_only():
    long = event("e1", properties={"blob": "x"})
    long.raw = "x" * (debug_feed.RAW_CHARS + 10)
    (line,) = seen_in_batch(PersistBatch(batch_id="b", events=[long]), ["e1"], [], NOW)
    assert line.raw_truncated and line.raw is not None and len(line.raw) == debug_feed.RAW_CHARS
    assert long.raw.startswith("x") and len(long.raw) == debug_feed.RAW_CHARS + 10


@pytest.mark.parametrize(
    ("filters", "shown"),
    [
        (Filters(), True),
        (Filters(sources=frozenset({"src_1"})), True),
        (Filters(sources=frozenset({"src_2"})), False),
        (Filters(type="track"), True),
        (Filters(type="page"), False),
        (Filters(name="Order*"), True),
        (Filters(name="Signed*"), False),
        (Filters(user="u1"), True),
        (Filters(user="anon-9"), True),
        (Filters(user="u2"), False),
    ],
)
def test_filters(filters, shown):
    line = debug_feed.from_event("stored", event("e1", anonymous_id="anon-9"), NOW)
    assert filters.matches(line) is shown


def test_a_batch_larger_than_the_stream_adds_only_its_last_lines(rdb):
    rdb.set(debug_feed.WATCHERS, b"1", ex=30)
    WATCH.forget()
    events = [event(f"e{i}") for i in range(debug_feed.STREAM_MAXLEN + 200)]
    added = publish(rdb, PersistBatch(batch_id="b", events=events), [e.id for e in events], [])
    assert added == debug_feed.STREAM_MAXLEN
    lines = feed(rdb)
    assert len(lines) == debug_feed.STREAM_MAXLEN
    assert lines[0].event is not None and lines[0].event.id == "e200"
    assert lines[-1].event is not None and lines[-1].event.id == f"e{debug_feed.STREAM_MAXLEN + 199}"


def test_a_lone_surrogate_is_shown_replaced_and_never_fails_the_job(rdb):
    rdb.set(debug_feed.WATCHERS, b"1", ex=30)
    WATCH.forget()
    odd = event("e1", properties={"note": "x"})
    odd.name = "Order \udc00 Completed"
    assert publish(rdb, PersistBatch(batch_id="b", events=[odd, event("e2")]), ["e1", "e2"], []) == 2
    first, second = feed(rdb)
    assert first.name == "Order \ufffd Completed" and second.name == "Order Completed"
