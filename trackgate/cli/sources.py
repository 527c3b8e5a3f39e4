"""``trackgate sources``: who may send, in which dialect."""

from __future__ import annotations

import json
from typing import Any

import click

from trackgate import sources as source_store
from trackgate.adapters.registry import ADAPTERS
from trackgate.cli.config import CliConfig, pass_cli_config
from trackgate.gateway.routes import DIALECTS


def new_source(dialect: str, key: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """The dialect's new source: ``key``, ``settings``, ``extra_keys`` and what to ``show`` once.
    (The one place this command reads the gateway's dialect table.)"""
    module = {spec.name: spec for spec in DIALECTS}[dialect]
    created: dict[str, Any] = module.new_source(key, options)
    return created


@click.group()
def sources() -> None:
    """Manage sources (who may send, in which dialect)."""


@sources.command("add")
@click.argument("dialect", type=click.Choice(sorted(ADAPTERS)))
@click.option("--name", default=None, help="A name, unique per dialect (default: the domain, or required).")
@click.option("--key", "--write-key", "key", default=None, help="Use this key instead of a generated one.")
@click.option("--domain", default=None, help="The website's domain (TinyTrail).")
@click.option("--origin", "origins", multiple=True, help="An allowed browser origin (OpenPanel; repeatable).")
@click.option(
    "--exclude-ip", "excluded_ips", multiple=True, help="An IP or CIDR range to flag (TinyTrail; repeatable)."
)
@click.option(
    "--content-group", "content_groups", multiple=True, help="NAME=PATTERN, e.g. Blog=/blog/* (TinyTrail)."
)
@click.option(
    "--workspace",
    default="default",
    show_default=True,
    help="Sources of one workspace share profiles: a user id is one person across them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def sources_add(
    cfg: CliConfig,
    dialect: str,
    name: str | None,
    key: str | None,
    domain: str | None,
    origins: tuple[str, ...],
    excluded_ips: tuple[str, ...],
    content_groups: tuple[str, ...],
    workspace: str,
    as_json: bool,
) -> None:
    """Create a source and print its credentials (shown once: only digests are stored)."""
    database_url = cfg.database_url
    name = name or domain
    if not name:
        raise click.UsageError("--name is required")
    options: dict[str, Any] = {
        "domain": domain,
        "origins": list(origins),
        "excluded_ips": list(excluded_ips),
        "content_groups": [
            {"name": n.strip(), "pattern": p.strip()}
            for n, _, p in (group.partition("=") for group in content_groups)
        ],
    }
    try:
        created = new_source(dialect, key, options)
        source, _ = source_store.add_source(
            database_url,
            dialect,
            name,
            created["key"],
            created["settings"],
            created["extra_keys"],
            workspace=workspace,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    except source_store.SourceExists as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        shown = {label.replace(" ", "_"): value for label, value in created["show"].items()}
        click.echo(
            json.dumps({"id": source.id, "dialect": dialect, "name": name, "workspace": workspace, **shown})
        )
    else:
        click.echo(f"source {source.id} ({dialect}, {name})")
        for label, value in created["show"].items():
            click.echo(f"{label}: {value}")


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def sources_list(cfg: CliConfig, as_json: bool) -> None:
    """List sources (keys are stored as digests and never shown)."""
    rows = source_store.list_sources(cfg.database_url)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        state = "" if row["enabled"] else "  (disabled)"
        workspace = "" if row["workspace"] == "default" else f"  (workspace {row['workspace']})"
        click.echo(f"{row['id']}  {row['dialect']:<10} {row['name']}{workspace}{state}")
