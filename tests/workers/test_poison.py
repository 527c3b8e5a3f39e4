"""Poison input (issue 11, item 6): one item whose text PostgreSQL cannot hold (a NUL, a lone surrogate)
ends in quarantine, made storable, while its batch's good events are stored and forwarded; the job
does not fail. Real gateway, worker, PostgreSQL and Redis; the destination is mocked with respx."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import respx
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from tests.helpers import HOOK, make_event, sent_ids, stored
from trackgate.schemas.jobs import PERSIST_QUEUE, MsgspecJSONSerializer, PersistBatch, RefusedItem
from trackgate.sources import add_source
from trackgate.workers import jobs, runtime

TS = 1639044446636


def ca_item(event_id: str, **fields) -> dict:
    return {"event_name": "login", "context": {"event_id": event_id, "event_timestamp": TS}, **fields}


def quarantined(db) -> list[dict]:
    cur = db.execute("SELECT * FROM quarantine ORDER BY id")
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def failed_or_retrying(rdb) -> int:
    queue = Queue(PERSIST_QUEUE, connection=rdb, serializer=MsgspecJSONSerializer)
    return FailedJobRegistry(queue=queue).count + ScheduledJobRegistry(queue=queue).count


def test_a_refused_commandersact_item_with_a_nul_in_event_id_is_quarantined_and_its_batch_forwarded(
    settings, db, rdb, drain, drain_forward, add, clock
):
    add_source(settings.database_url, "commandersact", "shop", "the-key")
    add("webhook", "hook", HOOK, {"secret": "s"})
    from starlette.testclient import TestClient

    from trackgate.gateway.app import create_app

    # the middle item has no event_name: refused (answered 200, quarantined) with its event_id
    body = {
        "batch": [
            ca_item("e-1"),
            {"context": {"event_id": "a\u0000b", "event_timestamp": TS}},
            ca_item("e-3"),
        ]
    }
    with TestClient(create_app(settings)) as api:
        r = api.post("/events/batch?token=the-key", content=json.dumps(body))
    assert r.status_code == 200 and r.json()["accepted"] == 2
    drain()
    assert failed_or_retrying(rdb) == 0  # the job did not fail
    assert sorted(e["message_id"] for e in stored(db)) == ["e-1", "e-3"]
    (row,) = quarantined(db)
    assert (row["code"], row["message_id"], row["item_index"]) == ("missing_event_name", "a\ufffdb", 1)
    assert json.loads(row["raw"])["context"]["event_id"] == "a\x00b"  # raw keeps the JSON escape as sent
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
    assert sorted(sent_ids(hook)) == ["e-1", "e-3"]


def test_a_lone_surrogate_in_a_refused_item_and_in_an_event_fails_neither_the_job_nor_its_neighbours(
    fsettings, db, rdb, drain_forward, add, clock
):
    """A str holding a lone surrogate cannot even be encoded to be sent to PostgreSQL: made U+FFFD."""
    add("webhook", "hook", HOOK, {"secret": "s"})
    item = RefusedItem(
        key="k-sur",
        source_id="src_a",
        dialect="commandersact",
        version="v2",
        index=1,
        code="missing_event_name",
        reason="event_name is required (got \ud800)",
        message_id="id-\udc00",
        raw='{"context": {"event_id": "id-\udc00"}}',
        request_id="req-\ud800",
        received_at=datetime(2026, 3, 14, tzinfo=UTC),
    )
    odd = make_event("m-odd", properties={"title": "caf\ud83d"}, user_id="u-\udfff")
    batch = PersistBatch(batch_id="b-sur", events=[make_event("m-1"), odd, make_event("m-3")], refused=[item])
    rt = runtime.configure(fsettings)
    try:
        jobs.persist_batch(batch)
    finally:
        rt.close()
    by_id = {e["message_id"]: e for e in stored(db)}
    assert sorted(by_id) == ["m-1", "m-3", "m-odd"]
    assert by_id["m-odd"]["properties"] == {"title": "caf\ufffd"} and by_id["m-odd"]["user_id"] == "u-\ufffd"
    (row,) = quarantined(db)
    assert (row["item_key"], row["message_id"], row["request_id"]) == (
        "item:k-sur",
        "id-\ufffd",
        "req-\ufffd",
    )
    assert row["reason"] == "event_name is required (got \ufffd)"
    assert row["raw"] == '{"context": {"event_id": "id-\ufffd"}}'
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
    assert sorted(sent_ids(hook)) == ["m-1", "m-3", "m-odd"]
