"""Daily salts of the visitor id, in PostgreSQL (``visitor_salts``, migration 0009).

Every worker process reads them; the first one to need a day's salt creates it with
``INSERT ... ON CONFLICT DO NOTHING`` and everyone then reads the one that won, so concurrent workers
agree without a lock. Today's and yesterday's are kept (by the worker's UTC clock); older ones are
deleted when a worker first sees a new day.
"""

from __future__ import annotations

import secrets
from datetime import date, timedelta

import psycopg


def load_salts(conn: psycopg.Connection, today: date) -> dict[date, bytes]:
    """Today's salt (created if missing) and yesterday's (if any); deletes older ones."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO visitor_salts (day, salt) VALUES (%s, %s) ON CONFLICT (day) DO NOTHING",
            (today, secrets.token_bytes(32)),
        )
        conn.execute("DELETE FROM visitor_salts WHERE day < %s", (today - timedelta(days=1),))
        rows = conn.execute(
            "SELECT day, salt FROM visitor_salts WHERE day >= %s", (today - timedelta(days=1),)
        ).fetchall()
    return {day: bytes(salt) for day, salt in rows if day <= today}


class SaltCache:
    """The salts a worker process holds: re-read when its UTC day changes."""

    def __init__(self) -> None:
        self.day: date | None = None
        self.salts: dict[date, bytes] = {}

    def get(self, conn: psycopg.Connection, today: date) -> dict[date, bytes]:
        if self.day != today:
            self.salts = load_salts(conn, today)
            self.day = today
        return self.salts
