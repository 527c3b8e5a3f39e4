"""Migration 0016 on a database with 0015's ``report_sequences`` rows: every row is kept, its steps
become ids of the source's ``report_steps`` (one id per step of one source), whole-site rows land in
their own partition, and the ``report_sequences`` view gives back the very rows that were stored."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest

from tests.helpers import fresh_database
from trackgate.migrate import migrate

ROWS = [
    ("src_a", "", date(2026, 3, 1), False, ["/", "/pricing", "Signed Up", "/pricing"], 3),
    ("src_a", "", date(2026, 3, 1), True, ["/"], 7),
    ("src_a", "", date(2026, 3, 2), False, ["/pricing", "/signup"], 1),
    ("src_a", "Blog", date(2026, 3, 1), False, ["/blog/a", "/blog/b", "/blog/a"], 2),
    ("src_b", "", date(2026, 3, 1), False, ["/pricing", "/"], 5),
]


@pytest.fixture
def before_0016(servers) -> Iterator[str]:
    """A fresh database migrated up to the 0015s."""
    with fresh_database(servers[0], "trackgate_m16", before="0016") as url:
        yield url


def test_stored_sequences_become_step_ids_and_read_back_the_same(before_0016):
    with psycopg.connect(before_0016, autocommit=True) as conn:
        for source_id in ("src_a", "src_b"):
            conn.execute(
                "INSERT INTO sources (id, dialect, name, key_hash) VALUES (%s, 'tinytrail', %s, %s)",
                (source_id, source_id, secrets.token_bytes(32)),
            )
        for row in ROWS:
            conn.execute(
                "INSERT INTO report_sequences (source_id, scope, day, bots, steps, sessions)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                row,
            )
    assert "0016_step_sequences" in migrate(before_0016)
    with psycopg.connect(before_0016) as conn:
        back = conn.execute(
            "SELECT source_id, scope, day, bots, steps, sessions FROM report_sequences"
        ).fetchall()
        steps = conn.execute("SELECT source_id, step, id FROM report_steps").fetchall()
        site = conn.execute("SELECT count(*) FROM report_step_sequences_site").fetchone()
        groups = conn.execute("SELECT scope FROM report_step_sequences_groups").fetchall()
        stored = conn.execute(
            "SELECT steps FROM report_step_sequences WHERE source_id = 'src_a' AND scope = 'Blog'"
        ).fetchone()
    assert sorted(back) == sorted(ROWS)
    ids = {(source_id, step): id_ for source_id, step, id_ in steps}
    assert set(ids) == {(r[0], step) for r in ROWS for step in r[4]}
    assert len(set(ids.values())) == len(ids)  # "/pricing" of src_a and of src_b are two ids
    assert site == (4,) and groups == [("Blog",)]
    assert stored == ([ids["src_a", "/blog/a"], ids["src_a", "/blog/b"], ids["src_a", "/blog/a"]],)
