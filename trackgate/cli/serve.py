"""``trackgate migrate``, ``serve`` and ``worker``: the processes of a deployment, one command each."""

from __future__ import annotations

import click

from trackgate import metrics_dir
from trackgate.cli.config import CliConfig, pass_cli_config
from trackgate.migrate import migrate as run_migrations
from trackgate.up import UpError, check_first_party_prefix, run_gateway
from trackgate.workers import worker as worker_process


@click.command()
@pass_cli_config
def migrate(cfg: CliConfig) -> None:
    """Apply database migrations."""
    cfg.configure_logging()
    applied = run_migrations(cfg.database_url)
    click.echo(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))


@click.command()
@click.option("--host", default=None, help="Interface to bind (TRACKGATE_HOST, default 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="Port (TRACKGATE_PORT, default 8080)."
)
@click.option(
    "--workers",
    "processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Gateway processes.",
)
@pass_cli_config
def serve(cfg: CliConfig, host: str | None, port: int | None, processes: int) -> None:
    """Run the gateway (HTTP) against the configured PostgreSQL and Redis."""
    cfg.override(host=host, port=port)
    settings = cfg.server
    try:
        check_first_party_prefix(settings)
    except UpError as exc:
        raise click.ClickException(str(exc)) from exc
    cfg.configure_logging()
    with metrics_dir.for_gateway(settings.metrics == "on"):
        run_gateway(settings, processes)


@click.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    type=click.Choice(sorted(worker_process.QUEUES)),
    help="Queues to work on, in priority order (default: persist, then forward). A worker per queue"
    " keeps a slow destination from delaying storage.",
)
@pass_cli_config
def worker(cfg: CliConfig, burst: bool, queues: tuple[str, ...]) -> None:
    """Run an RQ worker that stores events in PostgreSQL and forwards them to destinations."""
    settings = cfg.server
    cfg.configure_logging()
    try:
        # the worker's metrics and its applier process's, on its own /metrics
        own = bool(settings.worker_metrics_port) and settings.profile_applier == "process"
        with metrics_dir.for_worker(own):
            worker_process.run(settings, burst=burst, queues=queues or ("persist", "forward"))
    except worker_process.MetricsPortTaken as exc:
        raise click.ClickException(str(exc)) from exc
