"""Times as the TinyTrail API writes them: ISO 8601 in UTC with milliseconds and ``Z``
(``2026-01-15T10:30:00.000Z``), the document's ``createdAt``."""

from __future__ import annotations

from datetime import UTC, datetime


def api_time(moment: datetime) -> str:
    """``moment`` (aware; a naive one is taken as UTC) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
