"""``trackgate replay``: send again (dead letters, stored events, an archive of raw payloads)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from trackgate.cli.config import CliConfig, pass_cli_config
from trackgate.cli.times import when as _when
from trackgate.workers import replay as replays


@click.group()
def replay() -> None:
    """Send again: dead letters, stored events, or an archive of raw payloads."""


@replay.command("dead-letters")
@click.option("--destination", default=None, help="Only this destination (id or name).")
@click.option("--since", default=None, help="Only those dead-lettered since (ISO time, or 30m, 2h, 7d).")
@pass_cli_config
def replay_dead_letters(cfg: CliConfig, destination: str | None, since: str | None) -> None:
    """Re-send dead-lettered forwards; each is retried until the destination takes it."""
    settings = cfg.server
    cfg.configure_logging()
    try:
        counts = replays.replay_dead_letters(settings, destination, None if since is None else _when(since))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"requeued {counts['requeued']} dead letter(s), {counts['events']} event(s)")


@replay.command("events")
@click.option("--source", required=True, help="Source id or name.")
@click.option("--from", "start", required=True, help="From this event time (ISO, or an age like 7d).")
@click.option("--to", "end", default=None, help="Up to this event time, excluded (default: now).")
@click.option("--destination", required=True, help="Destination id or name.")
@click.option("--restart", is_flag=True, help="Ignore the checkpoint of an interrupted run.")
@click.option("--force", is_flag=True, help="Send events the destination was sent before, too.")
@pass_cli_config
def replay_events(
    cfg: CliConfig, source: str, start: str, end: str | None, destination: str, restart: bool, force: bool
) -> None:
    """Forward stored events to a destination (backfill a new one); skips those it was sent before."""
    settings = cfg.server
    cfg.configure_logging()
    words = f"--from {start} --to {end or 'now'}"  # the checkpoint's key: resumed by the same words
    try:
        counts = replays.replay_events(
            settings,
            source,
            _when(start),
            _when(end) if end else datetime.now(UTC),
            destination,
            restart=restart,
            force=force,
            words=words,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"queued {counts['events']} event(s) in {counts['jobs']} forward job(s)")


@replay.command("file")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", required=True, help="Source id or name the events are stored under.")
@click.option("--dialect", default=None, help="The payloads' dialect (default: the source's).")
@click.option("--restart", is_flag=True, help="Ignore the checkpoint of an earlier run.")
@click.option("--allow-refused", is_flag=True, help="Exit 0 even when lines were refused.")
@pass_cli_config
def replay_file(
    cfg: CliConfig, path: str, source: str, dialect: str | None, restart: bool, allow_refused: bool
) -> None:
    """Import an archive of raw vendor payloads (NDJSON or JSON, gzip allowed) into the pipeline.

    Refused lines (not JSON, or refused by the dialect's rules) go to the quarantine with their reason
    (`trackgate quarantine list`), and the exit status is 1 unless --allow-refused."""
    settings = cfg.server
    cfg.configure_logging()
    try:
        counts = replays.replay_file(settings, path, source, dialect, restart=restart)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if counts.get("already"):
        return  # said on stderr: imported already
    click.echo(
        f"queued {counts['events']} event(s) from {counts['lines']} line(s) in {counts['jobs']} job(s);"
        f" {counts['refused']} line(s) refused, {counts['quarantined']} item(s) to the quarantine"
    )
    if counts["refused"] and not allow_refused:
        raise click.ClickException(
            f"{counts['refused']} line(s) refused: see `trackgate quarantine list` once the worker has"
            " stored them (--allow-refused to exit 0)"
        )
