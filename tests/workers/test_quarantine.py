"""Quarantine: refused items kept durably and once, the per-source bound, list and replay, on real
PostgreSQL and Redis; and ``trackgate convert``."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path

import msgspec
import psycopg
import pytest
import redis.asyncio as aioredis

from tests.helpers import RECEIVED_AT, make_event, queued_jobs, refused_item, rows, stored
from trackgate.adapters import commandersact as ca
from trackgate.adapters.base import Refused
from trackgate.gateway.publisher import Publisher
from trackgate.schemas.jobs import PersistBatch, RefusedItem
from trackgate.schemas.request import RequestMeta
from trackgate.sources import add_source
from trackgate.workers import jobs, pipeline, quarantine_rows, runtime, store

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "commandersact"
V1_DOC = json.loads((GOLDEN / "docs_v1_event.json").read_text())["body"]
T0 = RECEIVED_AT  # refused_item's received_at
TS = 1639044446636


def raw_event(event_id: str, **fields) -> str:
    return json.dumps(
        {"event_name": "login", "context": {"event_id": event_id, "event_timestamp": TS}, **fields}
    )


@pytest.fixture
def worker_rt(settings):
    rt = runtime.configure(settings)
    yield rt
    rt.close()


# --- durable, once -----------------------------------------------------------------------------


def test_a_retried_job_quarantines_its_refused_items_once(db, worker_rt):
    batch = PersistBatch(
        batch_id="b1",
        events=[make_event("m1")],
        refused=[refused_item("k1", '{"event_name":"x"}', index=1), refused_item("k2", "[1]", index=2)],
    )
    payload = msgspec.to_builtins(batch)  # as RQ hands it to the job
    jobs.persist_batch(payload)
    jobs.persist_batch(payload)  # RQ retries a job that failed after it stored (e.g. a lost connection)
    assert [r["message_id"] for r in stored(db)] == ["m1"]
    got = rows(db)
    assert [(r["item_key"], r["item_index"], r["raw"], r["batch_id"]) for r in got] == [
        ("item:k1", 1, '{"event_name":"x"}', "b1"),
        ("item:k2", 2, "[1]", "b1"),
    ]
    assert {(r["dialect"], r["dialect_version"], r["status"]) for r in got} == {
        ("commandersact", "v2", "pending")
    }


def test_an_event_postgresql_refuses_is_quarantined_once_however_often_its_job_runs(db, database_url):
    bad = make_event("m-bad", properties={"x": "a\x00b"})
    batch = PersistBatch(batch_id="b1", events=[make_event("m-ok"), bad])
    with psycopg.connect(database_url) as conn:
        assert pipeline.persist(conn, batch, None).n_stored == 1
        assert pipeline.persist(conn, batch, None).n_stored == 0
    (row,) = rows(db)
    assert (row["item_key"], row["code"], row["message_id"]) == (f"event:{bad.id}", "22P05", "m-bad")
    assert row["raw"] == bad.raw and row["dialect"] == "segment"


def test_the_dialect_falls_back_to_the_sources(db, database_url, settings):
    add_source(settings.database_url, "commandersact", "shop", "k")
    source_id = db.execute("SELECT id FROM sources").fetchone()[0]
    item = refused_item("k1", "{}", source_id=source_id)
    item.dialect = ""
    with psycopg.connect(database_url) as conn:
        quarantine_rows.store_refused(conn, PersistBatch(batch_id="b", events=[], refused=[item]))
    assert rows(db)[0]["dialect"] == "commandersact"


def test_refused_items_travel_in_the_job_with_the_events(redis_url, rdb, settings, db, drain):
    """Durable before the answer: the publisher writes them into the same RQ job; a job of refused items
    only is written too; a request without refused items writes none."""

    async def scenario():
        client = aioredis.from_url(redis_url)
        publisher = Publisher(client)
        await publisher.start()
        try:
            refused = [
                Refused(
                    index=0,
                    code="missing_event_id",
                    reason="r",
                    raw="{}",
                    dialect="commandersact",
                    version="v2",
                )
            ]
            await publisher.publish([], refused=refused, source_id="src_x")
            assert queued_jobs(rdb) == 1
            with pytest.raises(ValueError):
                await publisher.publish([], refused=refused)
        finally:
            await publisher.stop()
            await client.aclose()

    asyncio.run(scenario())
    drain()
    (row,) = rows(db)
    assert (row["source_id"], row["code"], row["raw"]) == ("src_x", "missing_event_id", "{}")


# --- the bound per source ---------------------------------------------------------------------


def test_each_source_keeps_at_most_its_bound_replayed_rows_dropped_first(db, database_url, caplog):
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i in range(4):
            quarantine_rows.store_refused(
                conn, PersistBatch(batch_id=f"b{i}", events=[], refused=[refused_item(f"a{i}", f"[{i}]")]), 3
            )
        quarantine_rows.store_refused(
            conn,
            PersistBatch(
                batch_id="other", events=[], refused=[refused_item("o", "[]", source_id="src_other")]
            ),
            3,
        )
    assert [r["raw"] for r in rows(db) if r["source_id"] == "src_ca"] == ["[1]", "[2]", "[3]"]
    assert "quarantine_trimmed source_id=src_ca n_dropped=1 max_per_source=3" in caplog.text
    first_kept = rows(db)[0]["id"]
    db.execute("UPDATE quarantine SET status = 'replayed' WHERE id = %s", (first_kept + 2,))
    with caplog.at_level(logging.WARNING), psycopg.connect(database_url, autocommit=True) as conn:
        quarantine_rows.store_refused(
            conn, PersistBatch(batch_id="b9", events=[], refused=[refused_item("a9", "[9]")]), 3
        )
    assert [r["raw"] for r in rows(db) if r["source_id"] == "src_ca"] == [
        "[1]",
        "[2]",
        "[9]",
    ]  # [3] was replayed
    assert [r["raw"] for r in rows(db) if r["source_id"] == "src_other"] == ["[]"]


def test_the_bound_comes_from_the_settings(settings, db, drain, rdb):
    from trackgate.schemas.settings import settings_from_env

    assert settings_from_env({"TRACKGATE_QUARANTINE_MAX_PER_SOURCE": "7"}).quarantine_max_per_source == 7
    with pytest.raises(ValueError):
        settings_from_env({"TRACKGATE_QUARANTINE_MAX_PER_SOURCE": "0"})
    rt = runtime.configure(msgspec.structs.replace(settings, quarantine_max_per_source=2))
    try:
        for i in range(3):
            jobs.persist_batch(
                PersistBatch(batch_id=f"b{i}", events=[], refused=[refused_item(f"k{i}", f"[{i}]")])
            )
    finally:
        rt.close()
    assert [r["raw"] for r in rows(db)] == ["[1]", "[2]"]


# --- list and replay -------------------------------------------------------------------------------


def seed(database_url: str, *items: RefusedItem) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        quarantine_rows.store_refused(conn, PersistBatch(batch_id="b", events=[], refused=list(items)))


def test_list_text_and_json(cli, database_url):
    seed(
        database_url,
        refused_item("k1", '{"event_name":"x"}', index=3),
        refused_item("k2", "[]", source_id="src_b"),
    )
    text = cli("quarantine", "list")
    assert text.exit_code == 0
    lines = text.output.splitlines()
    assert len(lines) == 2
    assert (
        "src_ca  commandersact/v2  pending  missing_event_id [3]  missing_event_id (as an older rule said)"
        in lines[0]
    )
    only_b = cli("quarantine", "list", "--source", "src_b", "--json")
    (row,) = [json.loads(line) for line in only_b.output.splitlines()]
    assert (row["source_id"], row["raw"], row["status"]) == ("src_b", "[]", "pending")
    assert cli("quarantine", "list", "--status", "replayed").output == ""


def test_replay_stores_what_now_decodes_and_keeps_what_does_not(cli, database_url, db, settings):
    add_source(settings.database_url, "commandersact", "shop", "k")
    good = refused_item("good", raw_event("e-good", user={"id": "u1"}))
    still_bad = refused_item("bad", json.dumps({"event_name": "x", "context": {"event_timestamp": TS}}))
    seed(database_url, good, still_bad)
    result = cli("quarantine", "replay")
    assert result.exit_code == 0, result.output
    assert "replayed 2 row(s): 1 refused, 1 stored" in result.output
    (event,) = stored(db)
    assert (event["message_id"], event["user_id"], event["dialect_version"]) == ("e-good", "u1", "v2")
    assert event["received_at"] == T0 and event["source_id"] == "src_ca"
    by_key = {r["item_key"]: r for r in rows(db)}
    assert by_key["item:good"]["status"] == "replayed" and by_key["item:good"]["event_id"] == str(event["id"])
    bad = by_key["item:bad"]
    assert (bad["status"], bad["code"], bad["attempts"]) == ("pending", "missing_event_id", 1)
    assert bad["reason"] == "context.event_id is required"  # the current adapter's reason
    again = cli("quarantine", "replay")
    assert "replayed 1 row(s): 1 refused" in again.output  # only the pending one is tried again
    assert len(stored(db)) == 1


def test_replay_after_the_mapping_is_fixed(cli, database_url, db, settings):
    """A v1 Postman-style body ({event, properties}) is refused today; once the adapter maps ``event``
    (simulated by patching the mapping), replay re-decodes the kept raw item and stores it."""
    raw = json.dumps(
        {"event": "login", "event_id": "pm-1", "event_timestamp": TS, "properties": {"method": "x"}}
    )
    seed(database_url, refused_item("pm", raw, code="missing_event_name"))
    assert "1 refused" in cli("quarantine", "replay").output
    original = ca.v1_to_v2

    def fixed(item: dict) -> dict:
        out = original(item)
        out.setdefault("event_name", out.pop("event", None))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ca, "v1_to_v2", fixed)
        assert "1 stored" in cli("quarantine", "replay", "--source", "src_ca").output
    (event,) = stored(db)
    assert (event["name"], event["dialect_version"], event["message_id"]) == ("login", "v1", "pm-1")
    assert rows(db)[0]["status"] == "replayed"


def test_replay_dedupes_by_message_id(cli, database_url, db):
    ev = ca.decode_item(
        RequestMeta(
            source_id="src_ca", dialect="commandersact", call="event", received_at=T0, request_id="r"
        ),
        raw_event("dup").encode(),
    )
    ev.id = "01890000-0000-7000-8000-000000000001"
    with psycopg.connect(database_url) as conn:
        store.store_batch(conn, PersistBatch(batch_id="b1", events=[ev]))
    seed(database_url, refused_item("dup", raw_event("dup")))
    assert "1 duplicate" in cli("quarantine", "replay").output
    assert len(stored(db)) == 1
    assert rows(db)[0]["status"] == "replayed"


def test_replay_one_row_by_id_and_a_postgresql_refused_event(cli, database_url, db):
    bad = make_event("m-nul", properties={"x": "a\x00b"})
    with psycopg.connect(database_url) as conn:
        pipeline.persist(conn, PersistBatch(batch_id="b1", events=[bad]), None)
    seed(database_url, refused_item("ok", raw_event("e-ok")))
    nul_row, ok_row = rows(db)
    result = cli("quarantine", "replay", "--id", str(nul_row["id"]))
    assert f"{nul_row['id']}  refused: " in result.output
    after = {r["id"]: r for r in rows(db)}
    assert (after[nul_row["id"]]["attempts"], after[nul_row["id"]]["code"]) == (1, "22P05")
    assert after[ok_row["id"]]["attempts"] == 0  # not asked for
    assert stored(db) == []


def test_replay_of_a_row_that_is_not_there_or_not_pending_says_so(cli, database_url, db, settings):
    add_source(settings.database_url, "commandersact", "shop", "k")
    seed(database_url, refused_item("good", raw_event("e-good", user={"id": "u1"})))
    (row,) = rows(db)
    missing = cli("quarantine", "replay", "--id", str(row["id"] + 999))
    assert missing.exit_code == 1
    assert missing.output.startswith(f"Error: no such row: quarantine has no row {row['id'] + 999}")
    assert "1 stored" in cli("quarantine", "replay", "--id", str(row["id"])).output
    again = cli("quarantine", "replay", "--id", str(row["id"]))
    assert again.exit_code == 1 and "is replayed: only pending rows are replayed" in again.output


def test_the_whole_path_gateway_to_quarantine_to_replay(settings, db, drain, cli):
    """A refused item from a real request is listed and, still refused, stays; nothing is lost."""
    from starlette.testclient import TestClient

    from trackgate.gateway.app import create_app

    add_source(settings.database_url, "commandersact", "shop", "the-key")
    with TestClient(create_app(settings)) as api:
        r = api.post(
            "/events/batch?token=the-key", json={"batch": [json.loads(raw_event("a")), {"event_name": "x"}]}
        )
    assert r.json()["accepted"] == 1
    drain()
    listed = [json.loads(line) for line in cli("quarantine", "list", "--json").output.splitlines()]
    assert [(x["item_index"], x["code"], json.loads(x["raw"])) for x in listed] == [
        (1, "missing_event_id", {"event_name": "x"})
    ]
    assert "1 refused" in cli("quarantine", "replay").output


# --- convert -------------------------------------------------------------------------------------


def test_convert_the_docs_v1_example(cli):
    result = cli(
        "convert",
        "--from",
        "commandersact.v1",
        "--to",
        "commandersact.v2",
        input=json.dumps(V1_DOC, indent=2),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == ca.v1_to_v2(V1_DOC)


def test_convert_ndjson_and_batches_reporting_bad_lines(cli):
    v2 = json.dumps({"event_name": "x", "context": {}})
    text = "\n".join([json.dumps(V1_DOC), "", json.dumps({"batch": [V1_DOC]}), v2, "{nope"]) + "\n"
    args = ["convert", "--from", "commandersact.v1", "--to", "commandersact.v2"]
    result = cli(*args, input=text)
    assert result.exit_code == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out == [ca.v1_to_v2(V1_DOC), {"batch": [ca.v1_to_v2(V1_DOC)]}]
    assert "line 4: the event is v2, not v1" in result.stderr
    assert "line 5: not JSON" in result.stderr


def test_convert_offers_only_the_conversion_that_exists(cli):
    shown = cli("convert", "--help").output
    assert "--from [commandersact.v1]" in shown and "--to [commandersact.v2]" in shown
    assert "Conversions: commandersact.v1 -> commandersact.v2." in " ".join(shown.split())
    result = cli("convert", "--from", "commandersact.v2", "--to", "commandersact.v1", input="{}")
    assert result.exit_code == 2
    assert "'commandersact.v2' is not 'commandersact.v1'" in result.output


def test_convert_as_a_real_process():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trackgate",
            "convert",
            "--from",
            "commandersact.v1",
            "--to",
            "commandersact.v2",
        ],
        input=json.dumps(V1_DOC),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ca.v1_to_v2(V1_DOC)


def test_a_replayed_event_goes_the_whole_persist_path(cli, database_url, db):
    """Enriched under the source's IP policy, applied to profiles, like any stored event."""
    db.execute(
        "INSERT INTO sources (id, dialect, name, key_hash, settings)"
        " VALUES ('src_ca', 'commandersact', 'shop', '\\x00', '{\"ip_policy\": \"truncate\"}')"
    )
    device = {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"}
    raw = {
        "event_name": "login",
        "user": {"id": "u-7"},
        "context": {"event_id": "e-1", "event_timestamp": TS, "device": device},
    }
    seed(database_url, refused_item("good", json.dumps(raw)))
    assert "1 stored" in cli("quarantine", "replay").output
    (event,) = stored(db)
    assert event["context"]["ip"] == "203.0.113.0"  # the source's policy, applied on replay too
    assert "203.0.113.9" not in json.dumps(event["raw"])
    assert event["enrichment"]["browser"] == "Chrome" and event["enrichment"]["visitor_id"]
    (profiles,) = db.execute("SELECT count(*) FROM profile_ids WHERE id = 'u-7'").fetchone()
    assert profiles == 1
