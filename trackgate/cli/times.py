"""Times as the CLI takes them (``--since``, ``--from``): an ISO time or an age."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click


def when(value: str) -> datetime:
    """An ISO time (UTC unless it says otherwise) or an age like 30m, 2h, 7d."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip())
    if match:
        seconds = float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        try:
            return datetime.now(UTC) - timedelta(seconds=seconds)
        except OverflowError:  # before year 1 (or past what a timedelta holds)
            raise click.BadParameter(f"{value!r} is too far back") from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: an ISO time or an age like 30m, 2h, 7d") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
