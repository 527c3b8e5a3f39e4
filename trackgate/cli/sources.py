"""``trackgate sources``: who may send, in which dialect."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
import psycopg

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
        if key is not None:
            source_store.check_key_length(created["key"])
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
    announce(cfg)
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


def announce(cfg: CliConfig) -> None:
    """Make the change take effect at once on every running gateway (or say when one may lag)."""
    listening, confirmed = source_store.announce_change(cfg.settings.redis_url)
    if confirmed < listening:
        click.echo(
            f"note: {listening - confirmed} of {listening} gateway process(es) did not confirm the change;"
            f" they pick it up within {cfg.settings.source_refresh_seconds:g} s",
            err=True,
        )


def _change(cfg: CliConfig, change: Callable[[str], str], verb: str) -> None:
    try:
        source_id = change(cfg.database_url)
    except source_store.SourceNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    announce(cfg)
    click.echo(f"{verb} {source_id}")


@sources.command("disable")
@click.argument("source")
@pass_cli_config
def sources_disable(cfg: CliConfig, source: str) -> None:
    """Refuse a source's requests (401) from now on; its events and settings are kept."""
    _change(cfg, lambda url: source_store.set_enabled(url, source, False), "disabled")


@sources.command("enable")
@click.argument("source")
@pass_cli_config
def sources_enable(cfg: CliConfig, source: str) -> None:
    """Accept a disabled source's requests again."""
    _change(cfg, lambda url: source_store.set_enabled(url, source, True), "enabled")


@sources.command("remove")
@click.argument("source")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_cli_config
def sources_remove(cfg: CliConfig, source: str, yes: bool) -> None:
    """Delete a source and its keys (its stored events stay)."""
    if not yes:
        click.confirm(f"remove source {source!r} and its keys?", abort=True)
    _change(cfg, lambda url: source_store.remove_source(url, source), "removed")


@sources.command("rotate-key")
@click.argument("source")
@click.option("--kind", default=None, help="A further key of the source (e.g. secret), not its main one.")
@click.option("--key", default=None, help="Use this key instead of a generated one.")
@pass_cli_config
def sources_rotate_key(cfg: CliConfig, source: str, kind: str | None, key: str | None) -> None:
    """Replace a source's key: the old one stops working at once; the new one is shown once."""
    database_url = cfg.database_url
    with psycopg.connect(database_url) as conn:
        try:
            source_id, dialect, _ = source_store.resolve_source(conn, source)
        except source_store.SourceNotFound as exc:
            raise click.ClickException(str(exc)) from exc
        kinds = [
            r[0] for r in conn.execute("SELECT kind FROM source_keys WHERE source_id = %s", (source_id,))
        ]
    if kind is not None and kind not in kinds:
        raise click.UsageError(
            f"source {source_id} has no key of kind {kind!r} (it has: {', '.join(kinds) or 'none'})"
        )
    try:
        # the dialect makes (or checks) the key, so it has the form its SDKs send
        created = new_source(dialect, key if kind is None else None, {"domain": "localhost"})
        new = created["key"] if kind is None else (key or created["extra_keys"][kind])
        if key is not None:
            source_store.check_key_length(new)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    source_store.set_key(database_url, source_id, new, kind=kind)
    announce(cfg)
    click.echo(f"new {kind or 'key'} of {source_id} ({dialect}): {new}")


@sources.command("show")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@pass_cli_config
def sources_show(cfg: CliConfig, source: str, as_json: bool) -> None:
    """One source: dialect, state, workspace, settings, its further key kinds, events stored."""
    try:
        shown = source_store.show_source(cfg.database_url, source)
    except source_store.SourceNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(shown, default=str))
        return
    for name, value in shown.items():
        if isinstance(value, dict | list):
            value = json.dumps(value) if value else "-"
        click.echo(f"{name + ':':<15}{'-' if value is None else value}")
