"""Binary arrays packed for PostgreSQL (``workers/pg_arrays.py``), read back by a real server."""

from __future__ import annotations

import hashlib
import uuid

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trackgate.workers import pg_arrays

READ_BACK = "SELECT array_agg(v ORDER BY n) FROM unnest(%b::bytea[]) WITH ORDINALITY AS u(v, n)"


def read_back(db: psycopg.Connection, values: list[bytes]) -> list[bytes]:
    with db.cursor() as cur:
        pg_arrays.register(cur)
        row = cur.execute(READ_BACK, (pg_arrays.bytea_array(values),)).fetchone()
    assert row is not None
    return row[0] or []


@pytest.mark.parametrize(
    "values",
    [
        [],
        [hashlib.sha256(str(i).encode()).digest() for i in range(1000)],  # one length: joined at once
        [b"", b"\x00", b"\\x00", b"a" * 70_000, b"\xff\xfe"],  # of several lengths, one empty, one large
        [b""],
    ],
    ids=["empty", "digests", "mixed", "one-empty"],
)
def test_bytea_array_reads_back_in_order(db, values):
    assert read_back(db, values) == values


def test_empty_array_is_an_empty_array_not_null(db):
    with db.cursor() as cur:
        pg_arrays.register(cur)
        row = cur.execute("SELECT %b::bytea[] = '{}'::bytea[]", (pg_arrays.bytea_array([]),)).fetchone()
    assert row == (True,)


def test_an_unregistered_cursor_does_not_send_it_as_an_array(db):
    # without register() psycopg sends the bytes as one bytea: PostgreSQL refuses the cast
    with pytest.raises(psycopg.errors.CannotCoerce):
        db.execute("SELECT %b::bytea[]", (pg_arrays.bytea_array([b"x"]),))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=30))
def test_any_bytes_read_back(database_url, values):
    with psycopg.connect(database_url) as conn:
        assert read_back(conn, values) == values


def test_uuid_array_reads_back_in_order(db):
    values = [str(uuid.uuid4()) for _ in range(300)] + ["00000000-0000-0000-0000-000000000000"]
    with db.cursor() as cur:
        pg_arrays.register(cur)
        row = cur.execute(
            "SELECT array_agg(v::text ORDER BY n) FROM unnest(%b::uuid[]) WITH ORDINALITY AS u(v, n)",
            (pg_arrays.uuid_array(values),),
        ).fetchone()
        assert row == (values,)
        empty = cur.execute("SELECT %b::uuid[] = '{}'::uuid[]", (pg_arrays.uuid_array([]),)).fetchone()
        assert empty == (True,)


@pytest.mark.parametrize("bad", ["not-a-uuid", "0000", "00000000-0000-0000-0000-0000000000000000"])
def test_uuid_array_refuses_what_is_not_a_uuid(bad):
    with pytest.raises(ValueError):
        pg_arrays.uuid_array([str(uuid.uuid4()), bad])
