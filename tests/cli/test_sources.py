"""The ``trackgate`` command against the real test database."""

from __future__ import annotations

import json

from trackgate.sources import stored_digest


def test_sources_add_prints_the_key_once_and_stores_its_digest(cli, db, database_url):
    result = cli("sources", "add", "segment", "--name", "web", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["dialect"] == "segment" and created["name"] == "web"
    assert created["id"].startswith("src_") and len(created["write_key"]) >= 24
    (stored_hash,) = db.execute("SELECT key_hash FROM sources WHERE id = %s", (created["id"],)).fetchone()
    assert bytes(stored_hash) == stored_digest(database_url, created["write_key"])
    listed = cli("sources", "list", "--json")
    assert json.loads(listed.output)[0]["id"] == created["id"]
    assert created["write_key"] not in listed.output


def test_sources_add_with_a_given_key_and_a_duplicate_name(cli, db, database_url):
    assert (
        cli("sources", "add", "segment", "--name", "app", "--write-key", "k-1234567890abcdef").exit_code == 0
    )
    (stored_hash,) = db.execute("SELECT key_hash FROM sources WHERE name = 'app'").fetchone()
    assert bytes(stored_hash) == stored_digest(database_url, "k-1234567890abcdef")
    again = cli("sources", "add", "segment", "--name", "app")
    assert again.exit_code != 0
    assert "exists already" in again.output
    assert db.execute("SELECT count(*) FROM sources").fetchone()[0] == 1


def test_unknown_dialect_is_refused(cli):
    result = cli("sources", "add", "nope", "--name", "x")
    assert result.exit_code == 2
    assert "nope" in result.output


def test_migrate_is_idempotent(cli):
    result = cli("migrate")
    assert result.exit_code == 0
    assert "applied 0 migration(s)" in result.output


def test_commands_without_a_database_url_say_what_is_missing(cli, monkeypatch):
    monkeypatch.delenv("TRACKGATE_DATABASE_URL", raising=False)
    result = cli("sources", "list")
    assert result.exit_code == 2
    assert "TRACKGATE_DATABASE_URL" in result.output
