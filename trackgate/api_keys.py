"""Creating API keys (``trackgate admin create-key``, and the one ``up`` prints on first start).

A key is ``tt_`` + 43 URL-safe characters (256 random bits), sent as ``X-API-KEY``. Stored twice, never
in clear: its keyed digest (HMAC-SHA256 under the installation's secret and ``TRACKGATE_KEY_PEPPER``,
as source keys are: ``gateway/auth.py``), which the gateway looks up, and the key Fernet-encrypted with
``TRACKGATE_SECRET_KEY``, so that issue 12's admin API can show a user's key again (:func:`reveal`).
Keys are never logged. The gateway's side (checking a key) is ``gateway/api_keys.py``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
import psycopg

from trackgate.gateway.api_keys import ADMIN, INSERT_KEY, USER, new_api_key
from trackgate.gateway.auth import key_digest, read_secret
from trackgate.schemas.destinations import fernet, rotate_credentials  # the installation's Fernet keys
from trackgate.schemas.settings import Settings


class CreatedKey(msgspec.Struct, frozen=True):
    id: str
    role: str
    key: str
    """The only time the key is seen in clear."""
    created_at: datetime


def create_key(
    settings: Settings,
    database_url: str,
    role: str = ADMIN,
    label: str | None = None,
    account_id: str | None = None,
    email: str | None = None,
) -> CreatedKey:
    """A new key of ``role`` (a ``user`` key belongs to ``account_id``; an admin key may too); its id
    is a UUID (the TinyTrail API's user id). Raises ``SecretKeyMissing`` without
    ``TRACKGATE_SECRET_KEY``, ``ValueError`` for a role that does not exist or a user key without an
    account."""
    if role not in (ADMIN, USER):
        raise ValueError(f"a key's role is {ADMIN} or {USER}, not {role!r}")
    if role == USER and not account_id:
        raise ValueError("a user key belongs to an account: name it (--account)")
    key = new_api_key()
    encrypted = fernet(settings.secret_key).encrypt(key.encode()).decode()
    key_id = str(uuid.uuid4())
    with psycopg.connect(database_url) as conn:
        digest = key_digest(key, read_secret(conn, settings.key_pepper))
        row = conn.execute(
            INSERT_KEY,
            (key_id, role, account_id, email, digest, encrypted, label),
        ).fetchone()
    assert row is not None
    return CreatedKey(id=key_id, role=role, key=key, created_at=row[0])


def exists(database_url: str, key_id: str) -> bool:
    """Whether ``key_id`` is a key that works (not revoked)."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT 1 FROM api_keys WHERE id = %s AND revoked_at IS NULL", (key_id,))
        row = found.fetchone()
    return row is not None


def reveal(settings: Settings, database_url: str, key_id: str) -> str | None:
    """The key ``key_id`` in clear (None: no such key); ``SecretKeyMissing`` when the secret key is
    unset or not the one it was stored with."""
    from cryptography.fernet import InvalidToken

    from trackgate.schemas.destinations import SecretKeyMissing

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT key_encrypted FROM api_keys WHERE id = %s", (key_id,)).fetchone()
    if row is None:
        return None
    try:
        return fernet(settings.secret_key).decrypt(row[0].encode()).decode()
    except InvalidToken as exc:
        raise SecretKeyMissing(
            "the key cannot be decrypted: TRACKGATE_SECRET_KEY differs from the key it was stored with"
        ) from exc


def reencrypt(database_url: str, secret_key: str | None) -> int:
    """Re-encrypt every API key under the first key of ``secret_key`` (read with any of its keys), in one
    transaction, as ``trackgate secret-key rotate`` does for destination credentials; returns how many."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT id, key_encrypted FROM api_keys FOR UPDATE").fetchall()
        for key_id, token in rows:
            conn.execute(
                "UPDATE api_keys SET key_encrypted = %s WHERE id = %s",
                (rotate_credentials(secret_key, token), key_id),
            )
    return len(rows)


class KeyRow(msgspec.Struct, frozen=True):
    """A key as ``trackgate admin list-keys`` shows it (never the key itself)."""

    id: str
    role: str
    account_id: str | None
    account: str | None
    email: str | None
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


def list_keys(database_url: str) -> list[KeyRow]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT k.id, k.role, k.account_id, a.name, k.email, k.label, k.created_at, k.revoked_at"
            " FROM api_keys k LEFT JOIN accounts a ON a.id = k.account_id ORDER BY k.created_at, k.id"
        ).fetchall()
    return [KeyRow(*row) for row in rows]


def revoke(database_url: str, key_id: str) -> bool:
    """Revoke ``key_id``; False: no such working key. The caller announces it (``sources.announce_change``):
    the gateways forget their cached answers; unannounced, it stops working within their 5 s cache."""
    with psycopg.connect(database_url) as conn:
        cur = conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (key_id,)
        )
        return cur.rowcount == 1


def resolve_account(database_url: str, ref: str) -> str:
    """The id of the account whose id or name is ``ref``; ``ValueError`` naming the choices when none
    or several are."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id FROM accounts WHERE id = %s OR name = %s ORDER BY id", (ref, ref)
        ).fetchall()
    if len(rows) != 1:
        what = "no account" if not rows else f"{len(rows)} accounts"
        raise ValueError(f"{what} named {ref!r}: give an account id (GET /api/v1/accounts lists them)")
    return rows[0][0]
