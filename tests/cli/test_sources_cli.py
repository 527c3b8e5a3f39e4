"""``trackgate sources`` beyond add/list, and ``trackgate secret-key rotate``, against the test servers.
(That a change reaches a running gateway at once is ``test_beside_up.py``.)"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import Result
from cryptography.fernet import Fernet

from trackgate.schemas.destinations import decrypt_credentials
from trackgate.sources import stored_digest


@pytest.fixture
def env(monkeypatch, cli, tmp_path) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.chdir(tmp_path)  # no data directory of a running `up` here
    monkeypatch.delenv("TRACKGATE_SECRET_KEY", raising=False)
    yield monkeypatch


@pytest.fixture
def invoke(env, cli):
    """The one ``cli`` fixture, without a secret key unless a test sets one."""
    return cli


def test_a_short_hand_chosen_key_is_refused(env, invoke, db):
    refused = invoke("sources", "add", "segment", "--name", "web", "--key", "k" * 15)
    assert refused.exit_code == 2 and "at least 16 characters" in refused.output
    assert invoke("sources", "add", "segment", "--name", "web", "--key", "k" * 16).exit_code == 0
    assert db.execute("SELECT count(*) FROM sources").fetchone()[0] == 1


def test_disable_enable_show_rotate_remove(env, invoke, db, database_url):
    added = json.loads(invoke("sources", "add", "segment", "--name", "web", "--json").output)
    source_id, key = added["id"], added["write_key"]

    assert invoke("sources", "disable", "web").output.strip() == f"disabled {source_id}"
    assert db.execute("SELECT enabled FROM sources").fetchone()[0] is False
    assert "(disabled)" in invoke("sources", "list").output
    assert invoke("sources", "enable", source_id).exit_code == 0
    assert db.execute("SELECT enabled FROM sources").fetchone()[0] is True

    shown = json.loads(invoke("sources", "show", "web", "--json").output)
    assert (shown["id"], shown["dialect"], shown["enabled"], shown["events"]) == (
        source_id,
        "segment",
        True,
        0,
    )
    assert key not in invoke("sources", "show", "web").output  # never a key: only digests are stored

    rotated = invoke("sources", "rotate-key", "web")
    assert rotated.exit_code == 0, rotated.output
    new_key = rotated.output.strip().rsplit(": ", 1)[1]
    assert new_key != key
    (digest,) = db.execute("SELECT key_hash FROM sources").fetchone()
    assert bytes(digest) == stored_digest(database_url, new_key)
    short = invoke("sources", "rotate-key", "web", "--key", "short")
    assert short.exit_code == 2 and "at least 16 characters" in short.output
    no_kind = invoke("sources", "rotate-key", "web", "--kind", "secret")
    assert no_kind.exit_code == 2 and "has no key of kind 'secret'" in no_kind.output

    assert invoke("sources", "remove", "web", "--yes").output.strip() == f"removed {source_id}"
    assert db.execute("SELECT count(*) FROM sources").fetchone()[0] == 0
    missing = invoke("sources", "disable", "web")
    assert missing.exit_code == 1 and "no source 'web'" in missing.output


def test_rotate_a_further_key(env, invoke, db, database_url):
    added = json.loads(invoke("sources", "add", "openpanel", "--name", "app", "--json").output)
    rotated = invoke("sources", "rotate-key", "app", "--kind", "secret")
    assert rotated.exit_code == 0, rotated.output
    new_secret = rotated.output.strip().rsplit(": ", 1)[1]
    assert new_secret != added["client_secret"]
    (digest,) = db.execute("SELECT key_hash FROM source_keys WHERE kind = 'secret'").fetchone()
    assert bytes(digest) == stored_digest(database_url, new_secret)


def _add_webhook(invoke, name: str) -> Result:
    return invoke(
        "destinations", "add", "webhook", "--name", name, "--url", "http://127.0.0.1:9/hook",
        "--credential", "secret=hook-secret",
    )  # fmt: skip


def test_secret_key_rotation_re_encrypts_every_credential(env, invoke, db):
    old = Fernet.generate_key().decode()
    env.setenv("TRACKGATE_SECRET_KEY", old)
    assert _add_webhook(invoke, "one").exit_code == 0
    assert _add_webhook(invoke, "two").exit_code == 0
    admin = json.loads(invoke("admin", "create-key", "--json").output)

    not_fernet = invoke("secret-key", "rotate", "--new-key", "correct horse battery staple")
    assert not_fernet.exit_code == 2 and "is not a Fernet key" in not_fernet.output

    new = Fernet.generate_key().decode()
    rotated = invoke("secret-key", "rotate", "--new-key", new)
    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted the credentials of 2 destination(s) and 1 API key(s)" in rotated.output
    (key_token,) = db.execute("SELECT key_encrypted FROM api_keys").fetchone()
    assert Fernet(new.encode()).decrypt(key_token.encode()).decode() == admin["key"]  # the new key alone
    tokens = [row[0] for row in db.execute("SELECT credentials FROM destinations").fetchall()]
    for token in tokens:
        assert decrypt_credentials(new, token) == {"secret": "hook-secret"}  # the new key alone reads them
        with pytest.raises(Exception, match="cannot be decrypted"):
            decrypt_credentials(old, token)
    # during a rotation both keys are listed, the new one first: each reads what the other wrote
    env.setenv("TRACKGATE_SECRET_KEY", f"{Fernet.generate_key().decode()},{new}")
    assert invoke("secret-key", "rotate").exit_code == 0
    assert "cannot decrypt" not in invoke("destinations", "list").output


def test_without_a_secret_key_destinations_add_says_what_to_do_in_one_line(env, invoke, db):
    refused = _add_webhook(invoke, "one")
    assert refused.exit_code != 0
    (line,) = [line for line in refused.output.splitlines() if line.startswith("Error")]
    assert "set TRACKGATE_SECRET_KEY" in line and "Traceback" not in refused.output
