"""What ``workers/storable.py`` makes of texts PostgreSQL cannot hold, checked against PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from tests.helpers import make_event
from trackgate.workers import storable


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("café ✓ 😀", "café ✓ 😀"),  # astral characters are not surrogates
        ("a\x00b", "a\ufffdb"),
        ("x\ud800y\udfff", "x\ufffdy\ufffd"),
        ("\x00\ud83d", "\ufffd\ufffd"),
        (None, None),
    ],
)
def test_text(value, expected):
    assert storable.text(value) == expected


def test_every_cleaned_text_is_accepted_by_postgresql_and_json_escapes_stay_as_written(db):
    for value in ("a\x00b", "x\ud800y", "\udc00"):
        with pytest.raises((psycopg.DataError, UnicodeEncodeError)):
            db.execute("SELECT %s::text", (value,))
        db.rollback()
        assert db.execute("SELECT %s::text", (storable.text(value),)).fetchone()[0] == storable.text(value)
    # the json type keeps these escapes verbatim (jsonb would refuse \u0000): raw needs no change
    raw = '{"id": "a\\u0000b", "t": "\\ud800"}'
    assert db.execute("SELECT %s::json::text", (raw,)).fetchone()[0] == raw


def test_an_event_keeps_its_raw_escapes_and_loses_bad_characters():
    ev = make_event("m\x00", user_id="u\ud800", group_ids=["g\x00"], properties={"k\udc00": ["v\ud800"]})
    ev.raw = '{"messageId": "m\\u0000"}'
    storable.texts(ev)
    assert (ev.message_id, ev.user_id, ev.group_ids) == ("m\ufffd", "u\ufffd", ["g\ufffd"])
    assert ev.raw == '{"messageId": "m\\u0000"}'
    storable.json_values(ev)
    assert ev.properties == {"k\ufffd": ["v\ufffd"]}
