"""``trackgate reports aggregate``: rebuild the report aggregates of days now, for every website or one
source (named by its id, its name or its website id: ``sources.resolve_source``), with
``workers/aggregate.py``; for a backfill of history, where ``POST /api/v1/admin/aggregate`` takes one
date."""

from __future__ import annotations

from datetime import date, timedelta

import click
import psycopg

from trackgate.cli.config import CliConfig, pass_cli_config
from trackgate.schemas import report_range
from trackgate.sources import SourceNotFound, resolve_source
from trackgate.workers import aggregate as aggregation

MAX_DAYS = 3660


def _day(value: str | None, name: str, today: date) -> date | None:
    if value is None:
        return None
    try:
        return report_range.parse_day(value, today)
    except report_range.BadDay as bad:
        if bad.why is None:
            raise click.BadParameter(f"{value!r} is not a date, YYYY-MM-DD", param_hint=name) from None
        raise click.BadParameter(f"{value} is out of range: the day {bad.why}", param_hint=name) from None


@click.group()
def reports() -> None:
    """TinyTrail reports: their daily aggregates."""


@reports.command("aggregate")
@click.option("--date", "day", default=None, help="The day (YYYY-MM-DD, UTC); default yesterday.")
@click.option("--from", "first", default=None, help="First day of a range (with --to).")
@click.option("--to", "last", default=None, help="Last day of a range (default yesterday).")
@click.option(
    "--source",
    "source_ref",
    default=None,
    help="One source: its id, its name or its website id (default every source).",
)
@pass_cli_config
def aggregate(
    cfg: CliConfig, day: str | None, first: str | None, last: str | None, source_ref: str | None
) -> None:
    """Rebuild the report aggregates of a day, or of each day of a range, now (each source's day in one
    transaction; a re-run gives the same rows). Days run from 2000-01-01 to the day after today (UTC).
    Prints one line per day."""
    if day is not None and (first is not None or last is not None):
        raise click.UsageError("give --date, or --from/--to, not both")
    today = aggregation.utc_today()
    yesterday = today - timedelta(days=1)
    if day is not None or first is None:
        start = end = _day(day, "--date", today) or yesterday
        if first is None and last is not None:
            raise click.UsageError("--to needs --from")
    else:
        start = _day(first, "--from", today) or yesterday
        end = _day(last, "--to", today) or yesterday
    if start > end:
        raise click.UsageError("--from is after --to")
    if (end - start).days >= MAX_DAYS:
        raise click.UsageError(f"at most {MAX_DAYS} days at once")
    with psycopg.connect(cfg.database_url, autocommit=True) as conn:
        source_id = None
        if source_ref is not None:
            try:
                source_id, _, _ = resolve_source(conn, source_ref)
            except SourceNotFound as exc:
                raise click.ClickException(str(exc)) from exc
        current = start
        while current <= end:
            n = aggregation.aggregate_day(conn, current, source_id)
            click.echo(f"aggregated {current.isoformat()}: {n} source{'s' if n != 1 else ''}")
            current += timedelta(days=1)
