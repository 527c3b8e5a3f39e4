"""Running trackgate's processes: the gateway under uvicorn, and ``up``, which runs everything a new user
needs in one command (embedded PostgreSQL and Redis for the URLs that are unset, migrations, a persist
and a forward worker, the gateway, a ``demo`` source per dialect with ``curl`` lines that work as printed).

No click here: ``trackgate.cli.up`` and ``trackgate.cli.serve`` are the commands; errors a user can fix
are ``UpError`` with a one-line message.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from trackgate import api_keys, metrics_dir
from trackgate.embedded import EmbeddedError, EmbeddedServers, die_with_parent
from trackgate.gateway.dialect import Dialect
from trackgate.gateway.routes import DIALECTS, prefix_conflict
from trackgate.migrate import migrate
from trackgate.schemas.settings import ServerSettings, Settings
from trackgate.sources import add_source, find_source, set_key
from trackgate.state import (
    SECRET_KEY_FILE,
    UpState,
    ensure_secret_key,
    read_state,
    remove_state,
    this_process,
    write_state,
)

DEMO_FILE = "demo-sources.json"
ADMIN_KEY_FILE = "admin-key.json"
DEFAULT_DATA_DIR = Settings().data_dir
WORKER_STOP_SECONDS = 1.0
"""How long a worker may take to finish its job once asked to stop, before it is killed."""


class UpError(Exception):
    """Something the user can fix before ``up`` can start (the message says what)."""


def dialect_gateways() -> dict[str, Dialect]:
    """Each dialect's declared value by name, in the order ``up`` lists them (the one place ``up``
    reads the gateway's dialect table: ``new_source`` and ``demo_lines``)."""
    return {dialect.name: dialect for dialect in DIALECTS}


def run_gateway(settings: ServerSettings, processes: int = 1) -> None:
    """Serve the gateway in the foreground until stopped (uvicorn; each process builds the app from
    the environment, so the URLs and the secret key ``up`` settled on are put there)."""
    from trackgate.gateway.server import serve, uvicorn_config

    os.environ["TRACKGATE_DATABASE_URL"] = settings.database_url
    os.environ["TRACKGATE_REDIS_URL"] = settings.redis_url
    if settings.secret_key:  # the API stores and shows users' keys with it (gateway/users.py)
        os.environ["TRACKGATE_SECRET_KEY"] = settings.secret_key
    serve(uvicorn_config(settings, workers=processes))


def up(settings: Settings, echo: Callable[[str], None]) -> None:
    """Run everything in the foreground until Ctrl-C or SIGTERM, then stop what was started."""
    check_first_party_prefix(settings)
    running = read_state(settings.data_dir)
    if running is not None:
        raise UpError(
            f"trackgate up already runs on {Path(settings.data_dir).resolve()} (pid {running.pid},"
            f" {running.gateway_url}): stop it first, or use another --data-dir"
        )
    check_port_free(settings.host, settings.port)
    embedded = None
    workers: list[subprocess.Popen[bytes]] = []
    try:
        if not settings.database_url or not settings.redis_url:
            echo(f"starting embedded PostgreSQL and Redis under {Path(settings.data_dir).resolve()} ...")
            embedded = EmbeddedServers(settings.data_dir)
            try:
                database_url, redis_url = embedded.start()
            except EmbeddedError as exc:
                raise UpError(str(exc)) from exc
            settings = msgspec.structs.replace(
                settings,
                database_url=settings.database_url or database_url,
                redis_url=settings.redis_url or redis_url,
            )
        if not settings.secret_key:
            key, generated = ensure_secret_key(settings.data_dir)
            if generated:
                echo(
                    f"generated a secret key for destination credentials and API keys: {SECRET_KEY_FILE}"
                    " (mode 0600)"
                )
            settings = msgspec.structs.replace(settings, secret_key=key)
        server = settings.require()
        migrate(server.database_url)
        demo = demo_sources(server)
        admin = admin_key(server)
        metrics_dir.for_up(server.data_dir, server.metrics == "on")  # the workers' and the gateway's
        env = {
            **os.environ,
            "TRACKGATE_DATABASE_URL": server.database_url,
            "TRACKGATE_REDIS_URL": server.redis_url,
            "TRACKGATE_SECRET_KEY": server.secret_key or "",
        }
        for queue in ("persist", "forward"):  # a worker per queue: a slow destination never delays storing
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "trackgate", "worker", "--queue", queue],
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches `up` alone, which stops them in order
                    # and they do not outlive a killed `up` (its Redis dies too: a warm shutdown would hang;
                    # a killed worker's job goes back to its queue, workers/reliable.py)
                    preexec_fn=functools.partial(die_with_parent, signal.SIGKILL),
                )
            )
        base = (server.public_url or f"http://{server.host}:{server.port}").rstrip("/")
        pid, started = this_process()
        write_state(
            server.data_dir,
            UpState(
                pid=pid,
                started=started,
                database_url=server.database_url,
                redis_url=server.redis_url,
                gateway_url=base,
            ),
        )
        echo(banner(base, demo, server, admin))
        # uvicorn re-raises the signal that stopped it; for SIGTERM the default action would kill
        # this process before the cleanup below stops the workers and the embedded servers
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the gateway has stopped, go on below
            run_gateway(server)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        remove_state(settings.data_dir)
        stop_workers(workers, echo)
        if embedded is not None:
            embedded.stop(echo)
        echo("stopped")


def stop_workers(workers: list[subprocess.Popen[bytes]], echo: Callable[[str], None]) -> None:
    """SIGTERM each worker (a warm shutdown: it finishes its job), kill the ones still busy after
    ``WORKER_STOP_SECONDS``: a killed worker's job goes back to its queue (``workers/reliable.py``)."""
    running = [proc for proc in workers if proc.poll() is None]
    if not running:
        return
    echo(f"stopping {len(running)} worker(s) ...")
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + WORKER_STOP_SECONDS
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            echo(f"worker {proc.pid} still busy after {WORKER_STOP_SECONDS} s: killed (its job is requeued)")
            proc.kill()
            proc.wait()


def check_first_party_prefix(settings: Settings) -> None:
    """A first-party prefix that would hide paths trackgate serves (``/v1``) is refused before start."""
    conflict = prefix_conflict(settings.first_party_prefix)
    if conflict:
        raise UpError(conflict)


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something listens on. SO_REUSEADDR as uvicorn binds: the TIME-WAIT sockets a
    stopped ``up`` leaves for a minute do not keep the next one from starting."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UpError(
                f"{host}:{port} is in use ({exc.strerror}); pick another with --port or TRACKGATE_PORT"
            ) from exc


def demo_sources(settings: ServerSettings) -> dict[str, dict[str, Any]]:
    """A source named ``demo`` per dialect; credentials kept in the data dir so that ``up`` can
    print them on every start."""
    path = Path(settings.data_dir) / DEMO_FILE
    known: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for dialect, spec in dialect_gateways().items():
        entry = known.get(dialect)
        existing = find_source(settings.database_url, dialect, "demo")
        if existing and entry and entry.get("id") == existing.id and "key" in entry:
            continue
        created = spec.new_source(None, {"domain": "localhost", "origins": ["*"]})
        if existing:  # made by another data dir: its keys are unknown here, so new ones
            set_key(settings.database_url, existing.id, created["key"])
            for kind, key in created["extra_keys"].items():
                set_key(settings.database_url, existing.id, key, kind=kind)
            source_id = existing.id
        else:
            source, _ = add_source(
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


def admin_key(settings: ServerSettings) -> dict[str, str] | None:
    """The admin API key ``up`` created on its first start (kept in the data dir, 0600, as the demo
    keys are, so that ``up`` can print it on every start); None without ``TRACKGATE_SECRET_KEY``."""
    path = Path(settings.data_dir) / ADMIN_KEY_FILE
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if known and api_keys.exists(settings.database_url, known.get("id", "")):
        return known
    if not settings.secret_key:
        return None
    created = api_keys.create_key(settings, settings.database_url, label="trackgate up")
    known = {"id": created.id, "key": created.key}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=2))
    path.chmod(0o600)
    return known


def masked(url: str | None) -> str:
    """A URL with its password, if any, replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@/]+@", r"\1***@", url or "")


def banner(
    base: str, demo: dict[str, dict[str, Any]], settings: ServerSettings, admin: dict[str, str] | None = None
) -> str:
    data_dir = settings.data_dir
    same_dir = Path(data_dir) == Path(DEFAULT_DATA_DIR)
    lines = [
        "",
        f"trackgate is up at {base}",
        f"  PostgreSQL: {masked(settings.database_url)}",
        f"  Redis:      {masked(settings.redis_url)}",
        "",
        "Demo sources (credentials are shown because `up` created them; only digests are stored).",
        "Send an event to each:",
    ]
    for dialect, spec in dialect_gateways().items():
        entry = demo[dialect]
        shown = ", ".join(f"{label}: {value}" for label, value in entry["show"].items())
        lines.append(f"  {dialect} ({entry['id']}; {shown})")
        lines.extend(spec.demo_lines(base, entry))
    lines += [
        "See them stored (in another shell: every command finds this `up` by its data directory):",
        "  trackgate events list" + ("" if same_dir else f"  (with TRACKGATE_DATA_DIR={data_dir})"),
        "Watch them arrive: `trackgate events tail`, or open the live debugger at",
        f"  {base}/debugger  with the admin API key "
        + (
            admin["key"]
            if admin
            else "from `trackgate admin create-key` (set TRACKGATE_SECRET_KEY first: keys are kept encrypted)"
        ),
    ]
    if admin:
        lines += [
            "Accounts, users and websites (TinyTrail's API; every source, of any dialect, is a website):",
            f"  curl -sS {base}/api/v1/websites -H 'X-API-KEY: {admin['key']}'",
            "Their reports on a dashboard (it asks for the same key once):",
            f"  {base}/dashboard",
        ]
    lines += [
        "",
        f"Point an SDK at {base}: the README lists each dialect's base-URL option.",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)
