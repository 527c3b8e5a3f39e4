"""Quarantine rows: a row PostgreSQL still refuses (if cleaning ever missed a case) keeps neither the
others out nor fails the job."""

from __future__ import annotations

import logging

import psycopg

from tests.helpers import refused_item, rows
from trackgate.schemas.jobs import PersistBatch
from trackgate.workers import quarantine_rows, storable


def test_a_refused_row_is_logged_and_the_others_are_kept(db, database_url, monkeypatch, caplog):
    monkeypatch.setattr(storable, "text", lambda value: value)  # as if cleaning had missed the NUL
    items = [
        refused_item("k1", "[1]", index=0),
        refused_item("k2", "[\x00]", index=1),
        refused_item("k3", "[3]"),
    ]
    with psycopg.connect(database_url) as conn, caplog.at_level(logging.WARNING):
        assert quarantine_rows.store_refused(conn, PersistBatch(batch_id="b", events=[], refused=items)) == 2
    assert [r["item_key"] for r in rows(db)] == ["item:k1", "item:k3"]
    assert "quarantine_insert_refused item_key='item:k2'" in caplog.text
