"""``trackgate admin create-key``: an admin API key, printed once, stored as a keyed digest and
Fernet-encrypted with TRACKGATE_SECRET_KEY (never in clear)."""

from __future__ import annotations

import json

import msgspec
import pytest

from trackgate import api_keys
from trackgate.schemas.settings import settings_from_env
from trackgate.sources import stored_digest

SECRET = "a-test-secret-key-that-is-long-enough"


@pytest.fixture
def run(cli, monkeypatch):
    """The one ``cli`` fixture, without a key pepper (digests as the test computes them)."""
    monkeypatch.delenv("TRACKGATE_KEY_PEPPER", raising=False)
    return cli


def test_create_key_prints_a_key_stored_only_as_digest_and_ciphertext(run, db, database_url, monkeypatch):
    monkeypatch.setenv("TRACKGATE_SECRET_KEY", SECRET)
    result = run("admin", "create-key", "--json", "--label", "ops")
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["role"] == "admin" and created["key"].startswith("tt_") and len(created["key"]) >= 40
    row = db.execute("SELECT id, role, key_hash, key_encrypted, label FROM api_keys").fetchone()
    assert row[0] == created["id"] and row[1] == "admin" and row[4] == "ops"
    assert bytes(row[2]) == stored_digest(database_url, created["key"])  # the source keys' HMAC
    assert created["key"] not in row[3]
    settings = settings_from_env()
    assert api_keys.reveal(settings, database_url, created["id"]) == created["key"]
    plain = run("admin", "create-key")
    assert plain.exit_code == 0 and plain.output.splitlines()[1].startswith("tt_")
    assert db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 2


def test_create_key_without_a_secret_key_is_one_line(run, db, monkeypatch):
    monkeypatch.delenv("TRACKGATE_SECRET_KEY", raising=False)
    result = run("admin", "create-key")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: set TRACKGATE_SECRET_KEY") and "API keys are encrypted" in line
    assert db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 0


def test_up_creates_one_admin_key_and_keeps_it_for_every_start(settings, db, tmp_path):
    from trackgate.up import ADMIN_KEY_FILE, admin_key

    without = msgspec.structs.replace(settings, data_dir=str(tmp_path))
    assert admin_key(without) is None  # no TRACKGATE_SECRET_KEY: nothing to encrypt it with
    server = msgspec.structs.replace(without, secret_key=SECRET)
    first = admin_key(server)
    assert first is not None and admin_key(server) == first
    assert (tmp_path / ADMIN_KEY_FILE).stat().st_mode & 0o777 == 0o600
    db.execute("TRUNCATE api_keys")  # another database: the kept key is unknown there, so a new one
    again = admin_key(server)
    assert again is not None and again["key"] != first["key"]
    assert db.execute("SELECT id FROM api_keys").fetchone()[0] == again["id"]


def test_user_keys_list_and_revoke(run, db, monkeypatch):
    from tests.helpers import new_account

    monkeypatch.setenv("TRACKGATE_SECRET_KEY", SECRET)
    shop = new_account(db, "Shop")
    made = run(
        "admin", "create-key", "--role", "user", "--account", "Shop", "--email", "a@shop.example", "--json"
    )
    assert made.exit_code == 0, made.output
    user = json.loads(made.output)
    assert db.execute("SELECT role, account_id, email FROM api_keys").fetchall() == [
        ("user", shop, "a@shop.example")
    ]
    implied = json.loads(run("admin", "create-key", "--account", "Shop", "--json", ok=True).output)
    assert implied["role"] == "user"  # naming an account without --role never makes an admin key
    db.execute("DELETE FROM api_keys WHERE id = %s", (implied["id"],))
    no_account = run("admin", "create-key", "--role", "user")
    assert no_account.exit_code == 1
    assert no_account.output.strip() == "Error: a user key belongs to an account: name it (--account)"
    unknown = run("admin", "create-key", "--role", "user", "--account", "Nope")
    assert unknown.exit_code == 1 and len(unknown.output.strip().splitlines()) == 1
    assert "no account named 'Nope'" in unknown.output
    admin_key = json.loads(run("admin", "create-key", "--json", "--label", "ops", ok=True).output)

    listed = run("admin", "list-keys", ok=True).output.splitlines()
    assert listed == [
        f"{user['id']}  user   account Shop  active  a@shop.example",
        f"{admin_key['id']}  admin  no account  active  ops",
    ]
    assert user["key"] not in run("admin", "list-keys", "--json", ok=True).output

    assert run("admin", "revoke-key", user["id"], ok=True).output.strip() == f"revoked {user['id']}"
    assert "revoked" in run("admin", "list-keys", ok=True).output.splitlines()[0]
    again = run("admin", "revoke-key", user["id"])
    assert again.exit_code == 1
    (line,) = again.output.strip().splitlines()
    assert line == f"Error: no active API key {user['id']} (see trackgate admin list-keys)"
