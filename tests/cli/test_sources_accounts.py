"""Sources made on the command line are websites of an account (issue 12): a new workspace is a new
account, a TinyTrail source's website id is its key (and follows it when the key is set again), another
dialect's website id never changes."""

from __future__ import annotations

import uuid

from trackgate.schemas.websites import DEFAULT_ACCOUNT_ID
from trackgate.sources import add_source, set_key


def test_a_workspace_named_on_the_command_line_becomes_an_account(settings, db):
    add_source(settings.database_url, "segment", "web")
    add_source(settings.database_url, "segment", "shop-web", workspace="shop")
    add_source(settings.database_url, "segment", "shop-app", workspace="shop")
    accounts = db.execute("SELECT id, name, workspace FROM accounts ORDER BY name").fetchall()
    assert [(name, workspace) for _, name, workspace in accounts] == [
        ("Default", "default"),
        ("shop", "shop"),
    ]
    assert accounts[0][0] == DEFAULT_ACCOUNT_ID


def test_website_ids_follow_a_tinytrail_key_and_never_another_dialects(settings, db):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    site, _ = add_source(settings.database_url, "tinytrail", "site", first, {"domain": "example.com"})
    web, _ = add_source(settings.database_url, "segment", "web")

    def website_id(source_id: str) -> str:
        return db.execute("SELECT website_id::text FROM sources WHERE id = %s", (source_id,)).fetchone()[0]

    assert website_id(site.id) == first
    set_key(settings.database_url, site.id, second.upper())
    assert website_id(site.id) == second
    before = website_id(web.id)
    set_key(settings.database_url, web.id, "a-new-write-key-long-enough")
    assert website_id(web.id) == before


def test_sources_show_names_the_website_id(cli, settings, db):
    import json

    web, key = add_source(settings.database_url, "segment", "web")
    shown = json.loads(cli("sources", "show", "web", "--json", ok=True).output)
    stored = db.execute("SELECT website_id::text FROM sources WHERE id = %s", (web.id,)).fetchone()[0]
    assert shown["website_id"] == stored and key not in json.dumps(shown)
