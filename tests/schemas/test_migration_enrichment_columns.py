"""Migration 0018 on a database with events stored before it: each enrichment key with a column moves
into it when its JSON type is the column's, ``enrichment`` keeps the rest, and every event reads back
(``workers/forward/outbox.py``'s reader, which forwarding and replay use) with the enrichment it had."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from tests.helpers import fresh_database
from trackgate.migrate import migrate
from trackgate.schemas import enrichment_columns
from trackgate.workers.forward import outbox

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
BEFORE = {
    "chain": {"browser": "Firefox", "os": "Linux", "country": "FR", "visitor_id": "v1", "is_bot": False},
    "mixed": {"is_bot": True, "session_id": "s-9", "os": 5, "country": None, "utm_source": "mail"},
    "adapter only": {"unknown_type": True},
    "empty": {},
}


@pytest.fixture
def before_0018(servers) -> Iterator[str]:
    """A fresh database migrated up to 0017."""
    with fresh_database(servers[0], "trackgate_m18", before="0018") as url:
        yield url


def test_stored_enrichment_moves_into_columns_and_reads_back_the_same(before_0018):
    ids = {name: str(uuid.uuid4()) for name in BEFORE}
    with psycopg.connect(before_0018, autocommit=True) as conn:
        for name, enrichment in BEFORE.items():
            conn.execute(
                'INSERT INTO events (id, source_id, message_id, dialect, type, "timestamp", received_at,'
                " enrichment, raw) VALUES (%s, 'src', %s, 'segment', 'page', %s, %s, %s, '{}')",
                (ids[name], name, AT, AT, json.dumps(enrichment)),
            )
    assert migrate(before_0018) == ["0018_enrichment_columns"]
    with psycopg.connect(before_0018) as conn:
        columns = conn.execute(
            "SELECT message_id, is_bot, browser, os, country, visitor_id, utm_source, enrichment"
            " FROM events ORDER BY message_id"
        ).fetchall()
        back = outbox.load_events(conn, list(ids.values()), AT, AT)
    assert columns == [
        ("adapter only", None, None, None, None, None, None, {"unknown_type": True}),
        ("chain", False, "Firefox", "Linux", "FR", "v1", None, {}),
        ("empty", None, None, None, None, None, None, {}),
        ("mixed", True, None, None, None, None, "mail", {"session_id": "s-9", "os": 5, "country": None}),
    ]
    assert {e.message_id: e.enrichment for e in back} == BEFORE


def test_the_migration_makes_the_columns_the_store_writes(before_0018):
    migrate(before_0018)
    with psycopg.connect(before_0018) as conn:
        types: dict[str, str] = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'events' AND column_name = ANY(%s)",
                (list(enrichment_columns.COLUMNS),),
            ).fetchall()
        )
    expected = {name: "boolean" for name in enrichment_columns.FLAGS}
    expected |= {name: "text" for name in enrichment_columns.TEXTS}
    assert types == expected
