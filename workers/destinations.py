"""The destinations table: create, list, remove, pause, status, test (``trackgate destinations ...``),
re-encryption under a new secret key (``trackgate secret-key rotate``), the
id-or-name lookup every command uses (:func:`resolve`), and the reads forwarding needs
(:func:`load_all`, :func:`load`).

Forwarding itself is ``workers/forward/``; this module only writes and reads the tables.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from trackgate.adapters.registry import ADAPTERS
from trackgate.adapters.transports import TRANSPORTS
from trackgate.schemas.destinations import (
    Destination,
    Filters,
    decrypt_credentials,
    encrypt_credentials,
    mask,
    rotate_credentials,
)


class DestinationError(ValueError):
    pass


def available_kinds() -> list[str]:
    """Kinds whose dialect adapter is registered (webhook needs none)."""
    return sorted(k for k, t in TRANSPORTS.items() if t.dialect is None or t.dialect in ADAPTERS)


def add_destination(
    database_url: str,
    secret_key: str | None,
    *,
    kind: str,
    name: str,
    base_url: str | None,
    credentials: dict[str, str],
    source_ids: list[str],
    filters: Filters,
) -> str:
    transport = TRANSPORTS.get(kind)
    if transport is None or kind not in available_kinds():
        raise DestinationError(f"unknown destination kind {kind!r}; one of: {', '.join(available_kinds())}")
    base = base_url or transport.default_base
    if not base:
        raise DestinationError(f"a {kind} destination needs --url")
    if not base.startswith(("http://", "https://")):
        raise DestinationError(f"--url must be an http(s) URL, not {base!r}")
    missing = [c for c in transport.credentials if not credentials.get(c)]
    if missing:
        raise DestinationError(
            f"a {kind} destination needs " + ", ".join(f"--credential {c}=..." for c in missing)
        )
    known = set(transport.credentials) | set(transport.optional_credentials)
    unknown = sorted(set(credentials) - known)
    if unknown:
        raise DestinationError(
            f"{kind} takes no credential {', '.join(unknown)} (it takes: {', '.join(known)})"
        )
    token = encrypt_credentials(secret_key, credentials)
    destination_id = "dst_" + secrets.token_hex(8)
    with psycopg.connect(database_url) as conn:
        if source_ids:
            found = {
                r[0]
                for r in conn.execute("SELECT id FROM sources WHERE id = ANY(%s)", (source_ids,)).fetchall()
            }
            if set(source_ids) - found:
                raise DestinationError(f"no such source: {', '.join(sorted(set(source_ids) - found))}")
        try:
            conn.execute(
                "INSERT INTO destinations (id, name, kind, base_url, credentials, source_ids, filters)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (destination_id, name, kind, base, token, source_ids, Jsonb(msgspec.to_builtins(filters))),
            )
        except psycopg.errors.UniqueViolation as exc:
            raise DestinationError(f"a destination named {name!r} exists already") from exc
    return destination_id


def reencrypt_credentials(database_url: str, secret_key: str | None) -> int:
    """Re-encrypt every destination's credentials under the first key of ``secret_key`` (read with any
    of its keys), in one transaction; returns how many destinations hold credentials."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, credentials FROM destinations WHERE credentials IS NOT NULL FOR UPDATE"
        ).fetchall()
        for destination_id, token in rows:
            conn.execute(
                "UPDATE destinations SET credentials = %s, updated_at = now() WHERE id = %s",
                (rotate_credentials(secret_key, token), destination_id),
            )
    return len(rows)


def resolve_source(database_url: str, ref: str) -> tuple[str, str]:
    """A source by id or by name: (id, dialect)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, dialect FROM sources WHERE id = %s OR name = %s ORDER BY id", (ref, ref)
        ).fetchall()
    if not rows:
        raise DestinationError(f"no source {ref!r}")
    if len(rows) > 1:
        raise DestinationError(
            f"{len(rows)} sources are named {ref!r}: use the id ({', '.join(r[0] for r in rows)})"
        )
    return rows[0][0], rows[0][1]


def resolve(conn: psycopg.Connection, ref: str) -> str:
    """A destination's id from its id or its name (names are unique); ``DestinationError`` if none."""
    row = conn.execute("SELECT id FROM destinations WHERE id = %s OR name = %s", (ref, ref)).fetchone()
    if row is None:
        raise DestinationError(f"no destination {ref!r}")
    return str(row[0])


_SELECT = "SELECT id, name, kind, base_url, credentials, source_ids, filters, paused FROM destinations"


def _row_to_destination(row: tuple[Any, ...], secret_key: str | None, decrypt: bool = True) -> Destination:
    return Destination(
        id=row[0],
        name=row[1],
        kind=row[2],
        base_url=row[3],
        credentials=decrypt_credentials(secret_key, row[4]) if decrypt else {},
        source_ids=list(row[5] or []),
        filters=msgspec.convert(row[6] or {}, Filters),
        paused=row[7],
    )


def load_all(conn: psycopg.Connection) -> list[Destination]:
    """Every destination, oldest first, credentials left encrypted (fan-out never needs them); ends
    the read transaction."""
    rows = conn.execute(_SELECT + " ORDER BY created_at").fetchall()
    conn.commit()
    return [_row_to_destination(row, None, decrypt=False) for row in rows]


def load(conn: psycopg.Connection, secret_key: str | None, destination_id: str) -> Destination | None:
    """One destination with its credentials decrypted (raises ``SecretKeyMissing`` if they cannot
    be); None if it was removed. Ends the read transaction."""
    row = conn.execute(_SELECT + " WHERE id = %s", (destination_id,)).fetchone()
    conn.commit()
    return _row_to_destination(row, secret_key) if row else None


def list_destinations(database_url: str, secret_key: str | None) -> list[dict[str, Any]]:
    """Destinations with their credentials masked (never shown in full)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, name, kind, base_url, credentials, source_ids, filters, paused, created_at"
            " FROM destinations ORDER BY created_at"
        ).fetchall()
    out = []
    for r in rows:
        try:
            shown = {k: mask(v) for k, v in decrypt_credentials(secret_key, r[4]).items()}
        except Exception:  # wrong or missing key: say so, never fail the listing
            shown = {"?": "cannot decrypt (TRACKGATE_SECRET_KEY)"} if r[4] else {}
        out.append(
            {
                "id": r[0],
                "name": r[1],
                "kind": r[2],
                "url": r[3],
                "credentials": shown,
                "sources": list(r[5] or []),
                "filters": r[6],
                "paused": r[7],
                "created_at": r[8].isoformat(),
            }
        )
    return out


def remove_destination(database_url: str, ref: str) -> str:
    """Delete a destination, its delivery log (and the event ids it carried) and its dead letters;
    queued jobs for it drop out."""
    with psycopg.connect(database_url) as conn:
        destination_id = resolve(conn, ref)
        conn.execute("DELETE FROM delivery_events WHERE destination_id = %s", (destination_id,))
        conn.execute("DELETE FROM destinations WHERE id = %s", (destination_id,))
    return destination_id


def set_paused(database_url: str, ref: str, paused: bool) -> str:
    with psycopg.connect(database_url) as conn:
        destination_id = resolve(conn, ref)
        conn.execute(
            "UPDATE destinations SET paused = %s, updated_at = now() WHERE id = %s", (paused, destination_id)
        )
    return destination_id


def status(database_url: str) -> list[dict[str, Any]]:
    """Per destination: delivered / retrying / dead counts (jobs and events) and the last error."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT d.id, d.name, d.kind, d.paused,
                   coalesce(l.delivered, 0), coalesce(l.delivered_events, 0),
                   coalesce(l.retrying, 0), coalesce(l.retrying_events, 0),
                   coalesce(x.dead, 0), coalesce(x.dead_events, 0),
                   e.last_error, e.at
            FROM destinations d
            LEFT JOIN (
                SELECT destination_id,
                       count(*) FILTER (WHERE status = 'delivered') AS delivered,
                       sum(n_events) FILTER (WHERE status = 'delivered') AS delivered_events,
                       count(*) FILTER (WHERE status IN ('queued', 'retrying')) AS retrying,
                       sum(n_events) FILTER (WHERE status IN ('queued', 'retrying')) AS retrying_events
                FROM deliveries GROUP BY destination_id
            ) l ON l.destination_id = d.id
            LEFT JOIN (
                SELECT destination_id, count(*) AS dead, sum(n_events) AS dead_events
                FROM dead_letters WHERE status <> 'replayed' GROUP BY destination_id
            ) x ON x.destination_id = d.id
            LEFT JOIN LATERAL (
                SELECT err AS last_error, at FROM (
                    SELECT last_error AS err, updated_at AS at FROM deliveries
                    WHERE destination_id = d.id AND last_error IS NOT NULL
                    UNION ALL
                    SELECT error, updated_at FROM dead_letters WHERE destination_id = d.id
                ) errors ORDER BY at DESC LIMIT 1
            ) e ON true
            ORDER BY d.created_at
            """
        ).fetchall()
    keys = (
        "id",
        "name",
        "kind",
        "paused",
        "delivered",
        "delivered_events",
        "retrying",
        "retrying_events",
        "dead",
        "dead_events",
        "last_error",
        "last_error_at",
    )
    out = []
    for row in rows:
        entry = dict(zip(keys, row, strict=True))
        entry["last_error_at"] = entry["last_error_at"].isoformat() if entry["last_error_at"] else None
        out.append(entry)
    return out
