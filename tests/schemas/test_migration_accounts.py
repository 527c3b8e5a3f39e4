"""Migration 0014 on a database that has sources already: the workspace ``default`` becomes the
``Default`` account, another workspace an account of its name, and a TinyTrail source keeps the website
id its tracker sends (taken back from a stored event), others get one of their own."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.helpers import fresh_database
from trackgate.migrate import migrate
from trackgate.schemas.websites import DEFAULT_ACCOUNT_ID


@pytest.fixture
def before_0014(servers) -> Iterator[str]:
    """A fresh database migrated up to 0013."""
    with fresh_database(servers[0], "trackgate_m14", before="0014") as url:
        yield url


def test_existing_workspaces_and_sources_become_accounts_and_websites(before_0014):
    website_id = str(uuid.uuid4())
    with psycopg.connect(before_0014, autocommit=True) as conn:
        for source_id, dialect, name, workspace in (
            ("src_tt", "tinytrail", "site", "default"),
            ("src_tt_quiet", "tinytrail", "quiet", "default"),
            ("src_seg", "segment", "web", "shop"),
        ):
            conn.execute(
                "INSERT INTO sources (id, dialect, name, key_hash, workspace) VALUES (%s, %s, %s, %s, %s)",
                (source_id, dialect, name, secrets.token_bytes(32), workspace),
            )
        conn.execute(
            'INSERT INTO events (id, source_id, message_id, dialect, type, "timestamp", received_at, raw)'
            " VALUES (gen_random_uuid(), 'src_tt', 'm1', 'tinytrail', 'page', now(), now(), %s)",
            (json.dumps({"website_id": website_id.upper(), "event_type": "page_view"}),),
        )
    assert "0014_accounts" in migrate(before_0014)
    with psycopg.connect(before_0014) as conn:
        accounts: dict[str, str] = dict(conn.execute("SELECT workspace, id FROM accounts").fetchall())
        names: dict[str, str] = dict(conn.execute("SELECT workspace, name FROM accounts").fetchall())
        ids: dict[str, str] = dict(conn.execute("SELECT id, website_id::text FROM sources").fetchall())
    assert accounts["default"] == DEFAULT_ACCOUNT_ID and names == {"default": "Default", "shop": "shop"}
    assert str(uuid.UUID(accounts["shop"])) == accounts["shop"]
    assert ids["src_tt"] == website_id  # what its tracker sends
    assert len({ids["src_tt_quiet"], ids["src_seg"], website_id}) == 3
