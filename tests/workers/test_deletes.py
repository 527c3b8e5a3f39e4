"""The delete job (workers/deletes.py) on real PostgreSQL: a deleted source's events, dedupe and
quarantine rows go in chunks, an account's profiles with it, nothing of anyone else; a job that runs
before its sources are gone deletes nothing and fails (RQ retries it)."""

from __future__ import annotations

import psycopg
import pytest

from trackgate.schemas.jobs import DeleteData
from trackgate.workers import deletes


def add_events(db, source_id: str, n: int) -> None:
    db.execute(
        'INSERT INTO events (id, source_id, message_id, dialect, type, "timestamp", received_at, raw)'
        " SELECT gen_random_uuid(), %s, 'm' || i, 'segment', 'track', now() - i * interval '1 minute',"
        " now(), '{}' FROM generate_series(1, %s) AS i",
        (source_id, n),
    )
    db.execute(
        "INSERT INTO event_dedupe (source_id, message_id, claimed_at)"
        " SELECT %s, 'm' || i, now() FROM generate_series(1, %s) AS i",
        (source_id, n),
    )


def counts(db) -> dict[str, list]:
    return {
        table: db.execute(f"SELECT source_id, count(*) FROM {table} GROUP BY 1 ORDER BY 1").fetchall()
        for table in ("events", "event_dedupe")
    }


def test_a_deleted_sources_rows_go_in_chunks_and_nobody_elses(database_url, db, monkeypatch):
    monkeypatch.setattr(deletes, "CHUNK_ROWS", 4)
    add_events(db, "src_gone", 10)
    add_events(db, "src_kept", 3)
    db.execute(
        "INSERT INTO quarantine (source_id, dialect, reason, item_key)"
        " VALUES ('src_gone', 'segment', 'x', 'k')"
    )
    with psycopg.connect(database_url) as conn:
        done = deletes.delete_everything(conn, DeleteData(source_ids=["src_gone"], reason="test"))
    assert done == {"events": 10, "event_dedupe": 10, "quarantine": 1}
    assert counts(db) == {"events": [("src_kept", 3)], "event_dedupe": [("src_kept", 3)]}
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


def test_an_accounts_profiles_go_with_it(database_url, db):
    for workspace in ("ws_gone", "ws_kept"):
        db.execute(
            "INSERT INTO profiles (id, workspace, user_id, first_seen)"
            " VALUES (gen_random_uuid(), %s, 'u', now())",
            (workspace,),
        )
        db.execute(
            "INSERT INTO profile_ids (workspace, key, id, kind, profile_id)"
            " SELECT %s, sha256('u'), 'u', 'user', id FROM profiles WHERE workspace = %s",
            (workspace, workspace),
        )
    with psycopg.connect(database_url) as conn:
        deletes.delete_everything(conn, DeleteData(source_ids=[], workspace="ws_gone"))
    assert db.execute("SELECT workspace FROM profiles").fetchall() == [("ws_kept",)]
    assert db.execute("SELECT workspace FROM profile_ids").fetchall() == [("ws_kept",)]


def test_a_job_whose_sources_still_exist_deletes_nothing(database_url, db, settings):
    from trackgate.sources import add_source

    source, _ = add_source(settings.database_url, "segment", "web")
    add_events(db, source.id, 2)
    with psycopg.connect(database_url) as conn, pytest.raises(deletes.SourcesStillExist):
        deletes.delete_everything(conn, DeleteData(source_ids=[source.id]))
    assert counts(db)["events"] == [(source.id, 2)]
    with psycopg.connect(database_url) as conn, pytest.raises(deletes.SourcesStillExist):
        deletes.delete_everything(conn, DeleteData(source_ids=[], workspace="default"))  # Default's account
