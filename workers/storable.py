"""Text PostgreSQL can hold: NUL (U+0000) and lone surrogates become U+FFFD.

PostgreSQL refuses NUL in ``text`` (and a ``\\u0000`` escape in ``jsonb``), and a Python string holding
a lone surrogate cannot even be encoded as UTF-8 to be sent. Either would fail a whole statement, so
every text a worker writes goes through here first. The check is one pass in C over strings that are
already clean (nearly all), and only a string with a bad character is copied.

``json`` columns (the events' and quarantine's ``raw``) keep the text exact: PostgreSQL's ``json`` type
accepts the *escapes* ``\\u0000`` and ``\\ud800`` as written; only a literal NUL or lone-surrogate
character, which no UTF-8 text can carry, is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, overload

import msgspec

from trackgate.schemas.event import Event

_BAD = re.compile("[\x00\ud800-\udfff]")
"""A NUL, or a surrogate code point: a str decoded from UTF-8, or from JSON whose escapes pair up,
never holds a surrogate alone (a pair decodes to one astral character)."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def needs_cleaning(value: str) -> bool:
    """Whether ``value`` holds a NUL or a lone surrogate (a fast answer for ASCII without NUL)."""
    if value.isascii():
        return "\x00" in value
    return _BAD.search(value) is not None


@overload
def text(value: str) -> str: ...
@overload
def text(value: None) -> None: ...
def text(value: str | None) -> str | None:
    """``value`` with every NUL and lone surrogate replaced by U+FFFD (None stays None)."""
    if value is None or not needs_cleaning(value):
        return value
    return _BAD.sub("\ufffd", value)


TEXT_FIELDS = (
    "id",
    "source_id",
    "message_id",
    "dialect",
    "dialect_version",
    "name",
    "user_id",
    "anonymous_id",
    "group_id",
    "previous_id",
    "raw",
)
JSON_FIELDS = ("properties", "traits", "context", "integrations", "enrichment")


def texts(ev: Event) -> Event:
    """``ev``'s text columns (ids, names, ``raw``) made storable, in place; returns ``ev``.

    ``raw`` is a ``json`` column, which keeps its text exactly: the escapes ``\u0000`` and ``\ud800``
    are accepted as written; only a literal NUL or lone-surrogate character is replaced.
    """
    for name in TEXT_FIELDS:
        value = getattr(ev, name)
        if value is not None and needs_cleaning(value):
            setattr(ev, name, _BAD.sub("\ufffd", value))
    if ev.group_ids and any(needs_cleaning(g) for g in ev.group_ids):
        ev.group_ids = [text(g) for g in ev.group_ids]
    return ev


def enrichment_texts(ev: Event, names: Sequence[str]) -> Event:
    """NULs and lone surrogates out of the ``ev.enrichment`` strings under ``names`` (the keys stored
    in ``text`` columns, ``schemas/enrichment_columns.py``), in place, as for the canonical text
    fields; returns ``ev``."""
    enrichment = ev.enrichment
    for name in names:
        value = enrichment.get(name)
        if isinstance(value, str):
            enrichment[name] = text(value)
    return ev


def json_values(ev: Event) -> Event:
    """Lone surrogates out of ``ev``'s JSON values (properties, traits, context, ...), in place.

    They could not be encoded at all. A NUL inside a JSON value is left to PostgreSQL, which refuses
    ``\u0000`` in ``jsonb``: that event alone is then quarantined whole and replayable (the adapters
    replace NULs in what they decode, so only an event that bypassed them gets there).
    """
    for name in JSON_FIELDS:
        value = getattr(ev, name)
        if isinstance(value, msgspec.Struct):
            cleaned = _surrogates(msgspec.to_builtins(value))
            setattr(ev, name, msgspec.convert(cleaned, type(value)))
        elif value:
            setattr(ev, name, _surrogates(value))
    return ev


def _surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_surrogates(k): _surrogates(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_surrogates(v) for v in value]
    return value


_encode_times = msgspec.json.encode
_decode_texts = msgspec.json.Decoder(list[str | None]).decode


def times_as_text(moments: Sequence[datetime | None]) -> list[str | None]:
    """Times as RFC 3339 text for COPY rows (None stays None), formatted by msgspec in one call:
    psycopg's datetime dumper costs ~8-10k instructions a value (a bench event's row + COPY write:
    90.8k -> 41.7k instructions with its four times sent so)."""
    return _decode_texts(_encode_times(moments))
