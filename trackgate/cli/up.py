"""``trackgate up``: everything a new user needs, in one command (the orchestration is ``trackgate.up``)."""

from __future__ import annotations

import click

from trackgate import up as orchestration
from trackgate.cli.config import CliConfig, pass_cli_config


@click.command()
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="Port (TRACKGATE_PORT, default 8080)."
)
@click.option("--data-dir", default=None, help="Where embedded servers keep data (default .trackgate).")
@pass_cli_config
def up(cfg: CliConfig, port: int | None, data_dir: str | None) -> None:
    """Run everything: PostgreSQL and Redis (embedded when no URLs are set), migrations, a worker and
    the gateway, with a demo source per dialect."""
    cfg.discover = False  # the URLs are this command's to start, not another `up`'s to borrow
    cfg.override(port=port, data_dir=data_dir)
    cfg.configure_logging()
    try:
        orchestration.up(cfg.settings, click.echo)
    except orchestration.UpError as exc:
        raise click.ClickException(str(exc)) from exc
