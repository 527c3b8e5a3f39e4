"""The enrichment keys that ``events`` stores in columns of their own (migration 0018), and the rest.

Each key the standard chain and the adapters write (``browser``, ``country``, ``visitor_id``, ...) has
a typed column named as the key, as Snowplow's ``atomic.events`` has one per enrichment field.
PostgreSQL reads 26 short values in a COPY row for less than a third of what it spends building one
~350-byte ``jsonb`` of them (50,000 rows: 85 against 235 ms), and the reports read a column where they
read a key of every row's ``jsonb``. ``enrichment`` keeps the rest: keys without a column (an adapter's
``session_id``, ``enrich_errors``, ``ip_policy``), and a key with a column whose value is null or not
of the column's type (what the JSON said is kept as it was). So an event reads back with the enrichment
it was stored with: :func:`joined` is :func:`split` undone.

In the canonical event (``Event.enrichment``) nothing changes: it is one dict, everywhere but in the
``events`` table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

FLAGS = ("is_bot", "is_excluded")
"""``boolean`` columns."""
TEXTS = (
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device_type",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "gclid",
    "msclkid",
    "fbclid",
    "referrer_domain",
    "traffic_source",
    "traffic_medium",
    "channel",
    "country",
    "region",
    "region_code",
    "city",
    "visitor_id",
    "screen_bucket",
    "content_group",
)
"""``text`` columns."""
COLUMNS = FLAGS + TEXTS
"""The columns, in the order :func:`split` gives their values."""

_Columns = msgspec.defstruct(
    "EnrichmentColumns",
    [(name, bool, None) for name in FLAGS] + [(name, str, None) for name in TEXTS],
    forbid_unknown_fields=True,
)
"""The usual enrichment, checked and taken apart by msgspec in C: a key without a column, a null or
a value of another type (``1`` is not a boolean here) fails it. ~0.5 µs an event, a quarter of the
same checks in Python; an enrichment that fails it (a key without a column: OpenPanel's
``session_id``, ``enrich_errors``) costs the failure and the loop, a few µs."""
_convert = msgspec.convert
_astuple = msgspec.structs.astuple
_TYPE = {**dict.fromkeys(FLAGS, bool), **dict.fromkeys(TEXTS, str)}


def split(enrichment: Mapping[str, Any]) -> tuple[dict[str, Any] | None, tuple[Any, ...]]:
    """``enrichment`` as (what the ``enrichment`` column keeps, None when nothing; the values of
    :data:`COLUMNS`, None where the event has none)."""
    try:
        return None, _astuple(_convert(enrichment, _Columns))
    except msgspec.ValidationError:
        pass  # something stays in ``enrichment``: key by key
    rest: dict[str, Any] = {}
    typed: dict[str, Any] = {}
    for key, value in enrichment.items():
        kind = _TYPE.get(key)
        if kind is not None and isinstance(value, kind):  # a str subclass too, as msgspec takes it
            typed[key] = value
        else:
            rest[key] = value
    return rest, tuple(map(typed.get, COLUMNS))


def joined(rest: Mapping[str, Any] | None, values: Sequence[Any]) -> dict[str, Any]:
    """The enrichment an ``events`` row holds: its columns' values that are not null, and ``rest``
    (the ``enrichment`` column)."""
    out = {name: value for name, value in zip(COLUMNS, values, strict=True) if value is not None}
    if rest:
        out.update(rest)
    return out
