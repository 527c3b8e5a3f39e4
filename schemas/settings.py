"""Configuration, read once from ``TRACKGATE_*`` environment variables into a frozen struct.

Shared by the gateway, the workers and the CLI; passed explicitly, never read at import time.

Two views of one configuration: ``Settings``, where the server URLs may still be unset (the CLI reads it
first, then finds them: ``trackgate up`` starts embedded servers for what is missing), and
``ServerSettings``, what a gateway or worker process runs on, whose ``database_url`` and ``redis_url``
are ``str``. ``Settings.require()`` turns the first into the second, or says which variable to set.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    """PostgreSQL URL. Unset: ``trackgate up`` starts an embedded server under ``data_dir``."""
    redis_url: str | None = None
    """Redis URL. Unset: ``trackgate up`` starts an embedded server under ``data_dir``."""
    data_dir: str = ".trackgate"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    """Base URL clients use to reach the gateway (printed by ``up``, returned as analytics.js apiHost)."""
    first_party_prefix: str | None = None
    """A path (``/t``) under which every path is served too, so a site can route it from its own domain
    (``gateway/first_party.py``); analytics.js's settings then name it in ``apiHost``."""
    source_refresh_seconds: float = 2.0
    """How often a gateway re-reads the sources table."""
    redis_timeout_seconds: float = 2.0
    """How long a request waits for Redis before it is answered 503."""
    max_batch_events: int = 5000
    """Most events in one group-committed RQ job."""
    publish_linger_ms: int = 1
    """How long a flush to Redis waits, from its first request, for others to share it (0: none); whole
    milliseconds, the event loop's timer resolution."""
    publish_linger_above_cpu_pct: int = 0
    """0: a flush always lingers. Else it lingers only while the gateway's event loop uses at least this
    share of one core (percent; once lingering, it stops below three quarters of it)."""
    job_compress_level: int = 1
    """zlib level of RQ job data: 0 (plain, fastest, ~4x the Redis memory) to 9."""
    job_retries: int = 10
    """How often a failed persist job is retried (with backoff) before it lands in RQ's failed registry."""
    worker_group_jobs: int = 32
    """Most queued persist jobs a worker stores in one transaction (1: one job per transaction)."""
    worker_group_events: int = 2000
    """Most events a worker stores in one transaction of several jobs (a bigger job is stored alone)."""
    profile_applier: str = "process"
    """Where a persist worker applies the profile outbox: ``process``, a child process of its own (the
    store's Python and the applier's do not take turns under one GIL), or ``thread``, a thread of the
    worker (one process; for a container limited to one core)."""
    dedupe_days: int = 30
    """How long a (source, message id) pair is remembered for dedupe. At least 7."""
    quarantine_max_per_source: int = 10_000
    """Most quarantined rows kept per source; beyond it the oldest are dropped (replayed ones first)."""
    log_level: str = "INFO"
    log_format: str = "text"
    """``text`` (one line: time, level, logger, message) or ``json`` (one JSON object a line)."""
    metrics: str = "on"
    """``on``: the gateway serves ``GET /metrics`` (Prometheus, unauthenticated); ``off``: it does not."""
    worker_metrics_port: int = 0
    """A port on which ``trackgate worker`` serves its own ``/metrics`` (0: none; its counts are on the
    gateway's ``/metrics`` when both share ``PROMETHEUS_MULTIPROC_DIR``, as under ``up``)."""
    tinytrail_rate_limit: int = 10
    """TinyTrail collect requests one IP may send per ``tinytrail_rate_window`` (0: no limit)."""
    tinytrail_rate_window: int = 10
    """Seconds of TinyTrail's rate-limit window (counted in Redis, shared by every gateway process)."""
    api_rate_limit: int = 60
    """Requests one API key may make to the TinyTrail management and report API (``/api/v1/...``
    protected routes) per 60 seconds, counted in Redis, shared by every gateway process (0: no limit)."""
    reports_raw_cache_seconds: float = 10.0
    """How long a gateway process reuses the numbers it computed from raw events (today, and days not
    aggregated) for the reports of one website: today's figures lag by at most this (0: never reused)."""

    trusted_proxies: str = ""
    """Comma-separated IPs/CIDRs of proxies in front of the gateway whose client-IP headers
    (``x-forwarded-for``, ``x-real-ip``, ...) are believed (``gateway/client_ip.py``). Empty: none."""
    geoip_db: str | None = None
    """Path of a MaxMind-format database (GeoLite2/GeoIP2 City): workers add region and city. Country
    needs none (it ships with the ``iptocc`` package). Never downloaded at run time."""
    secret_key: str | None = None
    """Encrypts destination credentials (Fernet key, or any long random string)."""
    forward_horizon_seconds: float = 86400.0
    """How long a forward is retried (backoff with jitter, or Retry-After) before it is dead-lettered."""
    forward_connect_timeout: float = 5.0
    forward_read_timeout: float = 10.0
    pg_connect_timeout: float = 3.0
    """Seconds a worker waits for a new PostgreSQL connection (libpq ``connect_timeout``, whole seconds)."""
    pg_pool_timeout: float = 5.0
    """Seconds a job waits for a pooled connection before it fails and RQ retries it with backoff."""

    key_pepper: str | None = None
    """A secret mixed into the HMAC of stored source keys besides the installation's own (kept in
    PostgreSQL): set it, outside the database, so that not even a full dump lets anyone test guesses of a
    key. Set it before the first source: changing it makes every stored key fail (set them again)."""
    http_header_timeout_seconds: float = 10.0
    """How long a client has to send a request's line and headers (from the connection, or from the first
    byte of a request on a kept-alive one): then 408 and the connection closed."""
    http_body_timeout_seconds: float = 30.0
    """How long a request's whole body may take to arrive once it is read: then 408 (dialect's shape)."""
    http_keepalive_timeout_seconds: float = 5.0
    """How long an idle kept-alive connection stays open between requests."""
    http_max_header_bytes: int = 32768
    """Most bytes of a request line and headers: beyond it 431 and the connection closed."""
    http_max_connections: int = 2000
    """Most connections (or requests in progress) per gateway process: beyond it uvicorn answers 503."""
    max_pending_events: int = 50_000
    """Most events a gateway process holds waiting for Redis: beyond it requests are answered 503 with
    Retry-After, so a slow or frozen Redis cannot grow the gateway's memory without bound."""

    def require(self) -> ServerSettings:
        """These settings with both server URLs present, typed so; ``MissingSetting`` names the
        variables to set when one is not."""
        if isinstance(self, ServerSettings):
            return self
        missing = [name for name in _REQUIRED if not getattr(self, name)]
        if missing:
            raise MissingSetting(missing)
        return ServerSettings(**msgspec.structs.asdict(self))


class ServerSettings(Settings, frozen=True, kw_only=True):
    """Settings of a process that serves or works: PostgreSQL and Redis are known (not Optional)."""

    database_url: str
    redis_url: str


_REQUIRED = ("database_url", "redis_url")

_PREFIX = re.compile(r"(/[A-Za-z0-9._-]+)+")


class MissingSetting(ValueError):
    """A setting a command needs is unset; the message names the environment variables."""

    def __init__(self, fields: list[str]):
        self.variables = [f"TRACKGATE_{field.upper()}" for field in fields]
        super().__init__("set " + " and ".join(self.variables))


_ENV = {
    "database_url": str,
    "redis_url": str,
    "data_dir": str,
    "host": str,
    "port": int,
    "public_url": str,
    "first_party_prefix": str,
    "source_refresh_seconds": float,
    "redis_timeout_seconds": float,
    "max_batch_events": int,
    "publish_linger_ms": int,
    "publish_linger_above_cpu_pct": int,
    "job_compress_level": int,
    "job_retries": int,
    "worker_group_jobs": int,
    "worker_group_events": int,
    "profile_applier": str,
    "dedupe_days": int,
    "quarantine_max_per_source": int,
    "log_level": str,
    "log_format": str,
    "metrics": str,
    "worker_metrics_port": int,
    "tinytrail_rate_limit": int,
    "tinytrail_rate_window": int,
    "api_rate_limit": int,
    "reports_raw_cache_seconds": float,
    "trusted_proxies": str,
    "geoip_db": str,
    "secret_key": str,
    "forward_horizon_seconds": float,
    "forward_connect_timeout": float,
    "forward_read_timeout": float,
    "key_pepper": str,
    "http_header_timeout_seconds": float,
    "http_body_timeout_seconds": float,
    "http_keepalive_timeout_seconds": float,
    "http_max_header_bytes": int,
    "http_max_connections": int,
    "max_pending_events": int,
    "pg_connect_timeout": float,
    "pg_pool_timeout": float,
}


def settings_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read ``TRACKGATE_<FIELD>`` variables; keyword overrides win. Empty values count as unset."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for field, kind in _ENV.items():
        raw = env.get(f"TRACKGATE_{field.upper()}")
        if raw:
            try:
                values[field] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"TRACKGATE_{field.upper()}={raw!r}: expected {kind.__name__}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    if not 0 <= settings.job_compress_level <= 9:
        raise ValueError("TRACKGATE_JOB_COMPRESS_LEVEL must be 0 to 9")
    if settings.redis_timeout_seconds <= 0:
        raise ValueError("TRACKGATE_REDIS_TIMEOUT_SECONDS must be more than 0")
    if not 0 <= settings.publish_linger_ms <= 100:
        raise ValueError("TRACKGATE_PUBLISH_LINGER_MS must be 0 (no wait) to 100")
    if not 0 <= settings.publish_linger_above_cpu_pct <= 100:
        raise ValueError("TRACKGATE_PUBLISH_LINGER_ABOVE_CPU_PCT must be 0 (always) to 100 (% of a core)")
    if settings.job_retries < 0:
        raise ValueError("TRACKGATE_JOB_RETRIES must be 0 or more")
    if settings.worker_group_jobs < 1 or settings.worker_group_events < 1:
        raise ValueError("TRACKGATE_WORKER_GROUP_JOBS and TRACKGATE_WORKER_GROUP_EVENTS must be at least 1")
    if settings.profile_applier not in ("process", "thread"):
        raise ValueError("TRACKGATE_PROFILE_APPLIER must be process or thread")
    if settings.quarantine_max_per_source < 1:
        raise ValueError("TRACKGATE_QUARANTINE_MAX_PER_SOURCE must be at least 1")
    if settings.dedupe_days < 7:
        raise ValueError("TRACKGATE_DEDUPE_DAYS must be at least 7")
    if settings.log_format not in ("text", "json"):
        raise ValueError("TRACKGATE_LOG_FORMAT must be text or json")
    if settings.metrics not in ("on", "off"):
        raise ValueError("TRACKGATE_METRICS must be on or off")
    if not 0 <= settings.worker_metrics_port <= 65535:
        raise ValueError("TRACKGATE_WORKER_METRICS_PORT must be 0 to 65535")
    if settings.tinytrail_rate_limit < 0 or settings.tinytrail_rate_window < 1:
        raise ValueError("TRACKGATE_TINYTRAIL_RATE_LIMIT must be 0 or more, _RATE_WINDOW at least 1")
    if settings.api_rate_limit < 0:
        raise ValueError("TRACKGATE_API_RATE_LIMIT must be 0 (no limit) or more")
    if settings.reports_raw_cache_seconds < 0:
        raise ValueError("TRACKGATE_REPORTS_RAW_CACHE_SECONDS must be 0 (no reuse) or more")

    if min(settings.http_header_timeout_seconds, settings.http_body_timeout_seconds) <= 0:
        raise ValueError("TRACKGATE_HTTP_HEADER_TIMEOUT_SECONDS and _BODY_TIMEOUT_SECONDS must be over 0")
    if settings.http_max_header_bytes < 1024 or settings.http_max_connections < 1:
        raise ValueError("TRACKGATE_HTTP_MAX_HEADER_BYTES must be at least 1024, _MAX_CONNECTIONS at least 1")
    if settings.max_pending_events < settings.max_batch_events:
        raise ValueError("TRACKGATE_MAX_PENDING_EVENTS must be at least TRACKGATE_MAX_BATCH_EVENTS")

    prefix = settings.first_party_prefix
    if prefix is not None and not _PREFIX.fullmatch(prefix):
        raise ValueError(
            "TRACKGATE_FIRST_PARTY_PREFIX must be a path like /t: a leading slash, no trailing one, "
            "letters, digits, '-', '_' or '.'"
        )

    for part in filter(None, (p.strip() for p in settings.trusted_proxies.split(","))):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError as exc:
            raise ValueError(f"TRACKGATE_TRUSTED_PROXIES: {exc}") from exc
    return settings


TEXT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str, log_format: str = "text") -> None:
    """One log format for every trackgate process (CLI, each uvicorn worker, RQ workers): ``text``, one
    line each, or ``json`` (``TRACKGATE_LOG_FORMAT``), one object a line: ``time`` (UTC, ISO 8601),
    ``level``, ``logger``, ``event`` (the message's first word: ``batch_stored``), ``message``, and
    ``exc_info`` with the traceback when there is one."""
    handler = logging.StreamHandler()
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
        )
        handler.addFilter(_event_name)
    else:
        handler.setFormatter(logging.Formatter(TEXT_LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _event_name(record: logging.LogRecord) -> bool:
    """The event name our messages start with (``ingest_refused dialect=...``), as its own field; no
    terminal colours (uvicorn's ``color_message``)."""
    record.__dict__.pop("color_message", None)
    if isinstance(record.msg, str):
        head = record.msg.split(" ", 1)[0]
        if head.isidentifier() and head.islower():
            record.event = head
    return True


def tune_gc() -> None:
    """For the long-running gateway and worker processes: long-lived objects (modules, routes, the
    source table) out of the collector's way, and fewer young-generation passes. Events are plain
    trees without cycles; collecting them cost ~11% of a busy gateway's CPU (bench/)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
