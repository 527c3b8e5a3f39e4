"""``trackgate profiles show`` and workspaces on ``sources add``, against the real test database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg

from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PersistBatch
from trackgate.sources import add_source
from trackgate.workers import profiles, store

T0 = datetime(2026, 2, 1, 8, 30, tzinfo=UTC)


def persist(database_url: str, source_id: str, *events: dict) -> None:
    batch = PersistBatch(
        batch_id="b",
        events=[
            Event(
                id=f"01940000-0000-7000-8000-{i:012d}",
                message_id=f"{source_id}-{i}",
                source_id=source_id,
                dialect="segment",
                timestamp=T0,
                received_at=T0,
                raw="{}",
                **fields,
            )
            for i, fields in enumerate(events)
        ],
    )
    with psycopg.connect(database_url) as conn:
        store.store_batch(conn, batch, apply=profiles.apply_events)


def test_sources_add_puts_a_source_in_a_workspace(cli, db):
    created = json.loads(
        cli("sources", "add", "segment", "--name", "web", "--workspace", "shop", "--json").output
    )
    assert created["workspace"] == "shop"
    assert cli("sources", "add", "segment", "--name", "blog").exit_code == 0
    workspaces = dict(db.execute("SELECT name, workspace FROM sources").fetchall())
    assert workspaces == {"web": "shop", "blog": "default"}
    listed = cli("sources", "list")
    assert "web  (workspace shop)" in listed.output and "blog\n" in listed.output
    assert {
        r["name"]: r["workspace"] for r in json.loads(cli("sources", "list", "--json").output)
    } == workspaces


def test_profiles_show_prints_ids_traits_counters_groups(cli, database_url):
    source, _ = add_source(database_url, "segment", "web", "k1")
    persist(
        database_url,
        source.id,
        {"type": "identify", "user_id": "u1", "anonymous_id": "d1", "traits": {"email": "a@x.io"}},
        {"type": "increment", "user_id": "u1", "properties": {"property": "stats.logins", "value": 2}},
        {"type": "group", "user_id": "u1", "group_id": "acme", "traits": {"name": "Acme", "type": "company"}},
        {"type": "track", "name": "Paid", "user_id": "u1", "properties": {"revenue": 9.5, "arr": 1200}},
    )
    text = cli("profiles", "show", "d1").output
    assert "user id:    u1" in text
    assert "ids:        u1 (user), d1 (anonymous)" in text
    assert "  email: a@x.io" in text and "  stats.logins: 2" in text
    assert "revenue:    9.5 USD" in text and "arr:        1200" in text and "mrr:        -" in text
    assert "  acme (company, Acme)" in text
    assert f"first seen: {T0.isoformat()}" in text
    shown = json.loads(cli("profiles", "show", "u1", "--json").output)
    assert shown["counters"] == {"stats.logins": 2} and shown["revenue"] == {"USD": 9.5}
    assert shown["groups"][0]["type"] == "company" and shown["last_seen"] == "2026-02-01T08:30:00Z"


def test_profiles_show_unknown_and_ambiguous_ids(cli, database_url):
    result = cli("profiles", "show", "nobody")
    assert result.exit_code == 1 and "no profile for 'nobody'" in result.output
    one, _ = add_source(database_url, "segment", "a", "k1", workspace="one")
    two, _ = add_source(database_url, "segment", "b", "k2", workspace="two")
    persist(database_url, one.id, {"type": "identify", "user_id": "u1", "traits": {"n": 1}})
    persist(database_url, two.id, {"type": "identify", "user_id": "u1", "traits": {"n": 2}})
    result = cli("profiles", "show", "u1")
    assert result.exit_code == 2 and "one, two" in result.output and "--workspace" in result.output
    shown = json.loads(cli("profiles", "show", "u1", "--workspace", "two", "--json").output)
    assert shown["traits"] == {"n": 2} and shown["workspace"] == "two"
    result = cli("profiles", "show", "u1", "--workspace", "three")
    assert result.exit_code == 1 and "in workspace three" in result.output
