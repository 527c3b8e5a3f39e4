"""The ``trackgate`` command.

Worker code is reached by dotted path (``python -m workers``, or ``importlib``), never imported here,
so the gateway's import graph stays free of it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import psycopg

from trackgate import sources as source_store
from trackgate.adapters.registry import ADAPTERS
from trackgate.gateway.routes import DIALECTS
from trackgate.migrate import migrate as run_migrations
from trackgate.schemas.settings import Settings, configure_logging, settings_from_env
from trackgate.workers import destinations as destination_store
from trackgate.workers import profiles_read as profile_store

log = logging.getLogger("trackgate")


DIALECT_GATEWAYS = {module.DIALECT: module for module in DIALECTS}


def _settings(**overrides) -> Settings:
    try:
        return settings_from_env(**overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _need(settings: Settings) -> tuple[str, str]:
    if not settings.database_url or not settings.redis_url:
        raise click.UsageError(
            "set TRACKGATE_DATABASE_URL and TRACKGATE_REDIS_URL (or use `trackgate up`, which starts "
            "embedded servers when they are unset)"
        )
    return settings.database_url, settings.redis_url


@click.group()
def main() -> None:
    """trackgate: a multi-dialect tracking gateway."""


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = _settings()
    configure_logging(settings.log_level)
    if not settings.database_url:
        raise click.UsageError("set TRACKGATE_DATABASE_URL")
    applied = run_migrations(settings.database_url)
    click.echo(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))


@main.command()
@click.option("--host", default=None, help="Interface to bind (TRACKGATE_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (TRACKGATE_PORT, default 8080).")
@click.option("--workers", "processes", type=int, default=1, show_default=True, help="Gateway processes.")
def serve(host: str | None, port: int | None, processes: int) -> None:
    """Run the gateway (HTTP) against the configured PostgreSQL and Redis."""
    settings = _settings(host=host, port=port)
    configure_logging(settings.log_level)
    _need(settings)
    _serve(settings, processes)


def _serve(settings: Settings, processes: int = 1) -> None:
    import uvicorn

    os.environ["TRACKGATE_DATABASE_URL"] = settings.database_url or ""
    os.environ["TRACKGATE_REDIS_URL"] = settings.redis_url or ""
    uvicorn.run(
        "trackgate.gateway.asgi:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=processes,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level.lower(),
        # X-Forwarded-For is believed only from TRACKGATE_TRUSTED_PROXIES (gateway.ingest), not from
        # uvicorn's default 127.0.0.1
        proxy_headers=False,
    )


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    type=click.Choice(["persist", "forward"]),
    help="Queues to work on, in priority order (default: persist, then forward). A worker per queue"
    " keeps a slow destination from delaying storage.",
)
def worker(burst: bool, queues: tuple[str, ...]) -> None:
    """Run an RQ worker that stores events in PostgreSQL and forwards them to destinations."""
    settings = _settings()
    configure_logging(settings.log_level)
    _need(settings)
    importlib.import_module("trackgate.workers.worker").run(
        settings, burst=burst, queues=queues or ("persist", "forward")
    )


@main.group()
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
def sources_add(
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
    settings = _settings()
    if not settings.database_url:
        raise click.UsageError("set TRACKGATE_DATABASE_URL")
    name = name or domain
    if not name:
        raise click.UsageError("--name is required")
    module = DIALECT_GATEWAYS[dialect]
    try:
        options = {"domain": domain, "origins": list(origins), "excluded_ips": list(excluded_ips)}
        options["content_groups"] = [
            {"name": n.strip(), "pattern": p.strip()}
            for n, _, p in (group.partition("=") for group in content_groups)
        ]
        created = module.new_source(key, options)
        source, _ = source_store.add_source(
            settings.database_url,
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
def sources_list(as_json: bool) -> None:
    """List sources (keys are stored as digests and never shown)."""
    settings = _settings()
    if not settings.database_url:
        raise click.UsageError("set TRACKGATE_DATABASE_URL")
    rows = source_store.list_sources(settings.database_url)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        state = "" if row["enabled"] else "  (disabled)"
        workspace = "" if row["workspace"] == "default" else f"  (workspace {row['workspace']})"
        click.echo(f"{row['id']}  {row['dialect']:<10} {row['name']}{workspace}{state}")


@main.group()
def events() -> None:
    """Look at stored events."""


@events.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
def events_list(limit: int) -> None:
    """The most recently received events, newest first, one JSON line each."""
    settings = _settings()
    if not settings.database_url:
        raise click.UsageError("set TRACKGATE_DATABASE_URL")
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "SELECT received_at, source_id, dialect, type, name, user_id, anonymous_id, message_id"
            " FROM events ORDER BY received_at DESC LIMIT %s",
            (limit,),
        ).fetchall()
    keys = ("received_at", "source_id", "dialect", "type", "name", "user_id", "anonymous_id", "message_id")
    for row in rows:
        click.echo(json.dumps(dict(zip(keys, row, strict=True)), default=str))


@main.group("quarantine")
def quarantine_group() -> None:
    """Events kept because they could not be accepted or stored as they are."""


def _quarantine_module():
    return importlib.import_module("trackgate.workers.quarantine")


@quarantine_group.command("list")
@click.option("--source", default=None, help="Only this source id.")
@click.option("--status", type=click.Choice(["pending", "replayed"]), default=None)
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line, with the raw payload.")
def quarantine_list(source: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Quarantined items, oldest first: source, dialect/version, status, code and reason."""
    settings = _settings()
    if not settings.database_url:
        raise click.UsageError("set TRACKGATE_DATABASE_URL")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        rows = _quarantine_module().list_rows(
            conn, source=source, status=status, limit=limit, with_payload=as_json
        )
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, default=str))
            continue
        version = f"/{row['dialect_version']}" if row["dialect_version"] else ""
        index = f" [{row['item_index']}]" if row["item_index"] is not None else ""
        created = f"{row['created_at']:%Y-%m-%d %H:%M:%S}"
        click.echo(
            f"{row['id']}  {created}  {row['source_id']}  {row['dialect']}{version}"
            f"  {row['status']}  {row['code'] or '-'}{index}  {row['reason']}"
        )


@quarantine_group.command("replay")
@click.option("--source", default=None, help="Only this source id.")
@click.option("--id", "row_id", type=int, default=None, help="Only this quarantine row.")
def quarantine_replay(source: str | None, row_id: int | None) -> None:
    """Re-decode pending items with the current adapters and store those that now decode."""
    settings = _settings()
    if not settings.database_url:
        raise click.UsageError("set TRACKGATE_DATABASE_URL")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        outcomes = _quarantine_module().replay(conn, source=source, row_id=row_id, settings=settings)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.result] = counts.get(outcome.result, 0) + 1
        detail = f": {outcome.reason}" if outcome.reason else ""
        click.echo(f"{outcome.id}  {outcome.result}{detail}")
    summary = ", ".join(f"{n} {result}" for result, n in sorted(counts.items())) or "nothing pending"
    click.echo(f"replayed {len(outcomes)} row(s): {summary}")


_CONVERSIONS = ("commandersact.v1", "commandersact.v2")


@main.command()
@click.option("--from", "source", type=click.Choice(_CONVERSIONS), required=True)
@click.option("--to", "target", type=click.Choice(_CONVERSIONS), required=True)
def convert(source: str, target: str) -> None:
    """Convert payloads on stdin (one JSON document, or NDJSON) between dialect versions, to stdout.

    A document may be one event or {"batch": [...]}. An item that cannot be converted is reported on
    stderr (with its line) and the exit status is 1; the others are still written."""
    from trackgate.adapters import commandersact
    from trackgate.adapters.base import AdapterError

    from_version, to_version = source.partition(".")[2], target.partition(".")[2]
    text = sys.stdin.read()
    try:
        documents = [(0, json.loads(text))]
    except json.JSONDecodeError:
        documents = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                documents.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                click.echo(f"line {number}: not JSON: {exc}", err=True)
                documents.append((number, None))
    failed = False
    for number, document in documents:
        if document is None:
            failed = True
            continue
        try:
            converted = commandersact.convert(document, from_version, to_version)
        except (AdapterError, ValueError) as exc:
            where = f"line {number}: " if number else ""
            click.echo(f"{where}{getattr(exc, 'message', exc)}", err=True)
            failed = True
            continue
        click.echo(json.dumps(converted, ensure_ascii=False, separators=(",", ":")))
    if failed:
        sys.exit(1)


@main.group()
def profiles() -> None:
    """Look at profiles (identity state the workers keep per workspace)."""


@profiles.command("show")
@click.argument("user_id")
@click.option("--workspace", default=None, help="The workspace (default: any; needed if several match).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def profiles_show(user_id: str, workspace: str | None, as_json: bool) -> None:
    """Print the profile USER_ID resolves to (any of its ids works: user, anonymous, aliased): its ids,
    traits, counters, revenue and groups."""
    settings = _settings()
    if not settings.database_url:
        raise click.UsageError("set TRACKGATE_DATABASE_URL")
    with psycopg.connect(settings.database_url) as conn:
        try:
            found = profile_store.find_profile(conn, user_id, workspace)
        except profile_store.AmbiguousProfile as exc:
            raise click.UsageError(f"{exc}; pick one with --workspace") from exc
    if found is None:
        where = f" in workspace {workspace}" if workspace else ""
        raise click.ClickException(f"no profile for {user_id!r}{where}")
    click.echo(profile_store.profile_json(found) if as_json else profile_store.profile_text(found))


# --- destinations and replays -----------------------------------------------------------------


def _db(settings: Settings) -> str:
    if not settings.database_url:
        raise click.UsageError("set TRACKGATE_DATABASE_URL")
    return settings.database_url


def _when(value: str | None) -> datetime | None:
    """An ISO time (UTC unless it says otherwise) or an age like 30m, 2h, 7d."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip())
    if match:
        seconds = float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: an ISO time or an age like 30m, 2h, 7d") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@main.group()
def destinations() -> None:
    """Manage destinations (where stored events are forwarded)."""


@destinations.command("add")
@click.argument("kind", type=click.Choice(destination_store.available_kinds()))
@click.option("--name", required=True, help="A unique name.")
@click.option("--url", default=None, help="Base URL (default: the vendor's own; required for webhook).")
@click.option("--credential", "credentials", multiple=True, metavar="NAME=VALUE", help="Repeatable.")
@click.option("--source", "sources_", multiple=True, help="Only this source (id or name; repeatable).")
@click.option("--include-type", multiple=True, help="Only these event types (repeatable).")
@click.option("--exclude-type", multiple=True, help="Never these event types (repeatable).")
@click.option("--include-name", multiple=True, help="Only events named so (glob; repeatable).")
@click.option("--exclude-name", multiple=True, help="Never events named so (glob; repeatable).")
@click.option("--consent", multiple=True, help="A consent category the event must grant (repeatable).")
@click.option("--require-consent", is_flag=True, help="Drop events that carry no consent information.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def destinations_add(
    kind: str,
    name: str,
    url: str | None,
    credentials: tuple[str, ...],
    sources_: tuple[str, ...],
    include_type: tuple[str, ...],
    exclude_type: tuple[str, ...],
    include_name: tuple[str, ...],
    exclude_name: tuple[str, ...],
    consent: tuple[str, ...],
    require_consent: bool,
    as_json: bool,
) -> None:
    """Add a destination of KIND (credentials are stored encrypted with TRACKGATE_SECRET_KEY)."""
    from trackgate.schemas.destinations import Filters, SecretKeyMissing

    settings = _settings()
    database_url = _db(settings)
    creds = {}
    for item in credentials:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--credential")
        creds[key.strip()] = value
    filters = Filters(
        include_types=list(include_type),
        exclude_types=list(exclude_type),
        include_names=list(include_name),
        exclude_names=list(exclude_name),
        consent=list(consent),
        consent_required=require_consent,
    )
    try:
        source_ids = [destination_store.resolve_source(database_url, s)[0] for s in sources_]
        destination_id = destination_store.add_destination(
            database_url,
            settings.secret_key,
            kind=kind,
            name=name,
            base_url=url,
            credentials=creds,
            source_ids=source_ids,
            filters=filters,
        )
    except (destination_store.DestinationError, SecretKeyMissing) as exc:
        raise click.UsageError(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"id": destination_id, "kind": kind, "name": name}))
    else:
        click.echo(f"destination {destination_id} ({kind}, {name})")


@destinations.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def destinations_list(as_json: bool) -> None:
    """List destinations (credentials masked: never shown in full)."""
    settings = _settings()
    rows = destination_store.list_destinations(_db(settings), settings.secret_key)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        state = "  (paused)" if row["paused"] else ""
        creds = ", ".join(f"{k}={v}" for k, v in row["credentials"].items())
        sources_shown = ",".join(row["sources"]) or "all sources"
        click.echo(
            f"{row['id']}  {row['kind']:<13} {row['name']}  {row['url']}  [{sources_shown}]  {creds}{state}"
        )


@destinations.command("remove")
@click.argument("destination")
def destinations_remove(destination: str) -> None:
    """Remove a destination, its delivery log and dead letters (queued forwards to it are dropped)."""
    try:
        destination_id = destination_store.remove_destination(_db(_settings()), destination)
    except destination_store.DestinationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"removed {destination_id}")


@destinations.command("pause")
@click.argument("destination")
def destinations_pause(destination: str) -> None:
    """Stop sending to a destination; its forwards wait (and keep queueing) until resumed."""
    try:
        destination_id = destination_store.set_paused(_db(_settings()), destination, True)
    except destination_store.DestinationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"paused {destination_id}")


@destinations.command("resume")
@click.argument("destination")
def destinations_resume(destination: str) -> None:
    """Send to a paused destination again (waiting forwards go out within a minute)."""
    try:
        destination_id = destination_store.set_paused(_db(_settings()), destination, False)
    except destination_store.DestinationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"resumed {destination_id}")


@destinations.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def destinations_status(as_json: bool) -> None:
    """Per destination: delivered / retrying / dead forwards (events in brackets) and the last error."""
    rows = destination_store.status(_db(_settings()))
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        state = " (paused)" if r["paused"] else ""
        click.echo(
            f"{r['name']} ({r['kind']}, {r['id']}){state}:"
            f" delivered {r['delivered']} [{r['delivered_events']}]"
            f"  retrying {r['retrying']} [{r['retrying_events']}]  dead {r['dead']} [{r['dead_events']}]"
        )
        if r["last_error"]:
            click.echo(f"  last error ({r['last_error_at']}): {r['last_error']}")


@main.group()
def replay() -> None:
    """Send again: dead letters, stored events, or an archive of raw payloads."""


def _replay_module():
    return importlib.import_module("trackgate.workers.replay")


@replay.command("dead-letters")
@click.option("--destination", default=None, help="Only this destination (id or name).")
@click.option("--since", default=None, help="Only those dead-lettered since (ISO time, or 30m, 2h, 7d).")
def replay_dead_letters(destination: str | None, since: str | None) -> None:
    """Re-send dead-lettered forwards; each is retried until the destination takes it."""
    settings = _settings()
    _need(settings)
    configure_logging(settings.log_level)
    try:
        counts = _replay_module().replay_dead_letters(settings, destination, _when(since))
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
def replay_events(
    source: str, start: str, end: str | None, destination: str, restart: bool, force: bool
) -> None:
    """Forward stored events to a destination (backfill a new one); skips those it was sent before."""
    settings = _settings()
    _need(settings)
    configure_logging(settings.log_level)
    words = f"--from {start} --to {end or 'now'}"  # the checkpoint's key: resumed by the same words
    try:
        counts = _replay_module().replay_events(
            settings,
            source,
            _when(start),
            _when(end) or datetime.now(UTC),
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
def replay_file(path: str, source: str, dialect: str | None, restart: bool) -> None:
    """Import an archive of raw vendor payloads (NDJSON or JSON, gzip allowed) into the pipeline."""
    settings = _settings()
    _need(settings)
    configure_logging(settings.log_level)
    try:
        counts = _replay_module().replay_file(settings, path, source, dialect, restart=restart)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"queued {counts['events']} event(s) from {counts['lines']} line(s) in {counts['jobs']} job(s);"
        f" {counts['refused']} line(s) refused"
    )


# --- up: everything a new user needs, in one command -------------------------------------------

_DEMO_FILE = "demo-sources.json"


def _demo_sources(settings: Settings) -> dict[str, dict]:
    """A source named ``demo`` per dialect; credentials kept in the data dir so that ``up`` can
    print them on every start."""
    assert settings.database_url
    path = Path(settings.data_dir) / _DEMO_FILE
    known: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for dialect, module in DIALECT_GATEWAYS.items():
        entry = known.get(dialect)
        existing = source_store.find_source(settings.database_url, dialect, "demo")
        if existing and entry and entry.get("id") == existing.id and "key" in entry:
            continue
        created = module.new_source(None, {"domain": "localhost", "origins": ["*"]})
        if existing:  # made by another data dir: its keys are unknown here, so new ones
            source_store.set_key(settings.database_url, existing.id, created["key"])
            for kind, key in created["extra_keys"].items():
                source_store.set_key(settings.database_url, existing.id, key, kind=kind)
            source_id = existing.id
        else:
            source, _ = source_store.add_source(
                settings.database_url,
                dialect,
                "demo",
                created["key"],
                created["settings"],
                created["extra_keys"],
            )
            source_id = source.id
        known[dialect] = {"id": source_id, **created}
        changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known, indent=2))
        path.chmod(0o600)
    return known


def _masked(url: str | None) -> str:
    """A URL with its password, if any, replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@/]+@", r"\1***@", url or "")


def _banner(base: str, demo: dict[str, dict], settings: Settings, embedded: bool) -> str:
    lines = [
        "",
        f"trackgate is up at {base}",
        f"  PostgreSQL: {_masked(settings.database_url)}",
        f"  Redis:      {_masked(settings.redis_url)}",
        "",
        "Demo sources (credentials are shown because `up` created them; only digests are stored).",
        "Send an event to each:",
    ]
    for dialect, module in DIALECT_GATEWAYS.items():
        entry = demo[dialect]
        shown = ", ".join(f"{label}: {value}" for label, value in entry["show"].items())
        lines.append(f"  {dialect} ({entry['id']}; {shown})")
        lines.extend(module.demo_lines(base, entry))
    lines += [
        "See them stored (in another shell, same directory):",
        (
            f"  TRACKGATE_DATABASE_URL='{settings.database_url}' trackgate events list"
            if embedded  # no password in it; a URL from the environment is already in the shell
            else "  trackgate events list"
        ),
        "",
        f"Point an SDK at {base}: the README lists each dialect's base-URL option.",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"{host}:{port} is in use ({exc.strerror}); pick another with --port or TRACKGATE_PORT"
            ) from exc


@main.command()
@click.option("--port", type=int, default=None, help="Port (TRACKGATE_PORT, default 8080).")
@click.option("--data-dir", default=None, help="Where embedded servers keep data (default .trackgate).")
def up(port: int | None, data_dir: str | None) -> None:
    """Run everything: PostgreSQL and Redis (embedded when no URLs are set), migrations, a worker and
    the gateway, with a demo source per dialect."""
    settings = _settings(port=port, data_dir=data_dir)
    configure_logging(settings.log_level)
    _check_port_free(settings.host, settings.port)
    embedded = None
    if not settings.database_url or not settings.redis_url:
        from trackgate.embedded import EmbeddedServers

        click.echo(f"starting embedded PostgreSQL and Redis under {Path(settings.data_dir).resolve()} ...")
        embedded = EmbeddedServers(settings.data_dir)
        database_url, redis_url = embedded.start()
        settings = _settings(
            port=port,
            data_dir=data_dir,
            database_url=settings.database_url or database_url,
            redis_url=settings.redis_url or redis_url,
        )
    worker_proc = forward_proc = None
    try:
        run_migrations(settings.database_url)
        demo = _demo_sources(settings)
        env = {
            **os.environ,
            "TRACKGATE_DATABASE_URL": settings.database_url,
            "TRACKGATE_REDIS_URL": settings.redis_url,
        }
        worker_proc = subprocess.Popen(
            [sys.executable, "-m", "trackgate", "worker", "--queue", "persist"], env=env
        )
        forward_proc = subprocess.Popen(
            [sys.executable, "-m", "trackgate", "worker", "--queue", "forward"], env=env
        )
        base = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
        click.echo(_banner(base, demo, settings, embedded is not None))
        # uvicorn re-raises the signal that stopped it; for SIGTERM the default action would kill
        # this process before the cleanup below stops the worker and the embedded servers
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        _serve(settings)
    finally:
        for proc in (worker_proc, forward_proc):
            if proc is None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if embedded is not None:
            time.sleep(0.2)
            embedded.stop()
