"""Forwarding stored events to destinations: fan-out after store, delivery, retries, dead letters.

- :func:`fan_out` (called by ``persist_batch`` with the events it newly stored): for each destination
  that takes the events' source and passes its filters, the events in chunks of what the destination's
  transport accepts per job; one delivery-log row and one RQ job on ``trackgate-forward`` per chunk.
  Enqueuing is all it does, so a slow destination never delays the persist queue.
- :func:`forward_batch` (the job): encodes the events with the destination dialect's adapter, plans
  the requests (``adapters/transports.py``) and sends them in order with this process's httpx client.
  Success moves on; a retryable failure (timeout, connection error, 408, 429, 5xx) schedules the rest
  of the job again (``Retry-After`` when given, else exponential backoff with jitter) until the retry
  horizon, after which the rest is dead-lettered; a permanent failure dead-letters that request and
  the job goes on with the next one.
- A destination that fails retryably is put on hold until its retry time: other jobs for it do not
  call it meanwhile (they reschedule themselves at the hold's end, without using up an attempt), and
  when the hold ends one job probes it first. So a down or slow destination costs one timeout per
  retry interval, not one per job, and other destinations' jobs keep flowing.

The clock (``clock``) and the jitter (``rng``) are module attributes so tests can move time.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import psycopg
import redis
from rq import Queue, Retry

from trackgate.adapters import transports
from trackgate.adapters.registry import ADAPTERS
from trackgate.schemas.destinations import (
    FORWARD_FUNC,
    FORWARD_QUEUE,
    Destination,
    Filters,
    ForwardJob,
    Part,
    SecretKeyMissing,
    accepts,
    decrypt_credentials,
    forward_job_from_arg,
)
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import MsgspecJSONSerializer
from trackgate.schemas.settings import Settings
from trackgate.workers import runtime

log = logging.getLogger(__name__)

clock = time.time
rng = random.Random()

BACKOFF_BASE = 2.0
BACKOFF_CAP = 900.0
"""Retries back off 2 s, 4 s, 8 s, ... up to 15 min between attempts, each jittered to 50-100%."""
KEY_RECHECK = 300.0
"""Forwards wait this long between looks while their credentials cannot be decrypted."""
PAUSED_RECHECK = 60.0
"""A paused destination's forwards look again once a minute (a small job run per waiting chunk)."""
JOB_TIMEOUT = 600
MAX_JOB_RAW_BYTES = 4 * 1024 * 1024
ERROR_BODY_CHARS = 2000
DESTINATION_CACHE_SECONDS = 2.0

_http: httpx.Client | None = None
_redis: redis.Redis | None = None
_cache: tuple[float, list[Destination]] | None = None


# --- process-wide clients ----------------------------------------------------------------------


def http_client(settings: Settings) -> httpx.Client:
    """One client per worker process: connections to each destination are reused across jobs."""
    global _http
    if _http is None:
        _http = httpx.Client(
            timeout=httpx.Timeout(
                settings.forward_read_timeout,
                connect=settings.forward_connect_timeout,
            ),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            follow_redirects=False,
        )
    return _http


def redis_connection(settings: Settings) -> redis.Redis:
    global _redis
    if _redis is None:
        if not settings.redis_url:
            raise ValueError("TRACKGATE_REDIS_URL is not set")
        _redis = redis.Redis.from_url(settings.redis_url)
    return _redis


def forward_queue(connection: redis.Redis) -> Queue:
    return Queue(FORWARD_QUEUE, connection=connection, serializer=MsgspecJSONSerializer)


def reset() -> None:
    """Forget the process's clients and cached destinations (tests; a changed configuration)."""
    global _http, _redis, _cache
    if _http is not None:
        _http.close()
    if _redis is not None:
        _redis.close()
    _http = _redis = _cache = None


# --- destinations ------------------------------------------------------------------------------

_SELECT = "SELECT id, name, kind, base_url, credentials, source_ids, filters, paused FROM destinations"


def _row_to_destination(row: tuple, secret_key: str | None, decrypt: bool = True) -> Destination:
    return Destination(
        id=row[0],
        name=row[1],
        kind=row[2],
        base_url=row[3],
        credentials=decrypt_credentials(secret_key, row[4]) if decrypt else {},
        source_ids=list(row[5] or []),
        filters=msgspec.convert(row[6] or {}, Filters),
        paused=row[7],
    )


def destinations(conn: psycopg.Connection, settings: Settings) -> list[Destination]:
    """Every destination (paused ones too: their deliveries wait), re-read every couple of seconds.
    Credentials stay encrypted here: fan-out never needs them (only the forward job decrypts)."""
    global _cache
    now = time.monotonic()
    if _cache is not None and now - _cache[0] < DESTINATION_CACHE_SECONDS:
        return _cache[1]
    rows = conn.execute(_SELECT + " ORDER BY created_at").fetchall()
    conn.commit()
    loaded = [_row_to_destination(row, settings.secret_key, decrypt=False) for row in rows]
    _cache = (now, loaded)
    return loaded


def load_destination(conn: psycopg.Connection, settings: Settings, destination_id: str) -> Destination | None:
    row = conn.execute(_SELECT + " WHERE id = %s", (destination_id,)).fetchone()
    conn.commit()
    return _row_to_destination(row, settings.secret_key) if row else None


# --- fan-out -----------------------------------------------------------------------------------


def chunks(events: list[Event], size: int) -> list[list[Event]]:
    out: list[list[Event]] = []
    current: list[Event] = []
    weight = 0
    for event in events:
        if current and (len(current) >= size or weight + len(event.raw) > MAX_JOB_RAW_BYTES):
            out.append(current)
            current, weight = [], 0
        current.append(event)
        weight += len(event.raw)
    if current:
        out.append(current)
    return out


def plan_deliveries(dests: list[Destination], events: list[Event]) -> list[tuple[Destination, list[Event]]]:
    planned = []
    for dest in dests:
        transport = transports.TRANSPORTS.get(dest.kind)
        if transport is None:
            continue
        selected = [e for e in events if dest.takes_source(e.source_id) and accepts(dest.filters, e)]
        planned.extend((dest, chunk) for chunk in chunks(selected, transport.job_events))
    return planned


def enqueue_deliveries(
    conn: psycopg.Connection,
    connection: redis.Redis,
    batch_id: str,
    planned: list[tuple[Destination, list[Event]]],
) -> list[int]:
    """One delivery-log row and one forward job per (destination, chunk); returns the delivery ids."""
    if not planned:
        return []
    queue = forward_queue(connection)
    now = clock()
    # the jobs are written before the rows commit: if Redis refuses them, no row claims a forward
    # that will never run
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO deliveries (destination_id, batch_id, n_events) VALUES (%s, %s, %s) RETURNING id",
            [(dest.id, batch_id, len(chunk)) for dest, chunk in planned],
            returning=True,
        )
        ids = []
        while True:
            ids.append(cur.fetchone()[0])
            if not cur.nextset():
                break
        with connection.pipeline() as pipe:
            for delivery_id, (dest, chunk) in zip(ids, planned, strict=True):
                job = ForwardJob(delivery_id=delivery_id, destination_id=dest.id, events=chunk, first_at=now)
                _enqueue(queue, job, pipeline=pipe)
            pipe.execute()
    return ids


def fan_out(conn: psycopg.Connection, settings: Settings, batch_id: str, events: list[Event]) -> int:
    """Queue the forwarding of newly stored ``events``; returns how many forward jobs.

    A failure here is logged, not raised: the events are stored, and a re-run of the persist job
    would find them stored already and forward nothing. ``trackgate replay events`` sends them.
    """
    if not events:
        return 0
    try:
        return _fan_out(conn, settings, batch_id, events)
    except Exception:  # noqa: BLE001 - the events are stored: a fan-out failure must not fail the job
        log.exception(
            "forward_fanout_failed batch_id=%s n_events=%d (send them with `trackgate replay events`)",
            batch_id,
            len(events),
        )
        return 0


def _fan_out(conn: psycopg.Connection, settings: Settings, batch_id: str, events: list[Event]) -> int:
    global _cache
    dests = destinations(conn, settings)
    if not dests:
        return 0
    try:
        ids = enqueue_deliveries(conn, redis_connection(settings), batch_id, plan_deliveries(dests, events))
    except psycopg.errors.ForeignKeyViolation:  # a destination removed since the cache was filled
        _cache = None
        dests = destinations(conn, settings)
        ids = enqueue_deliveries(conn, redis_connection(settings), batch_id, plan_deliveries(dests, events))
    if ids:
        log.info("forward_queued batch_id=%s n_jobs=%d", batch_id, len(ids))
    return len(ids)


def _job_id(delivery_id: int) -> str:
    return f"fwd-{delivery_id}-{uuid.uuid4().hex[:12]}"


def _enqueue(queue: Queue, job: ForwardJob, *, at: float | None = None, pipeline=None) -> None:
    options: dict[str, Any] = {
        "job_id": _job_id(job.delivery_id),
        "description": f"forward_batch delivery={job.delivery_id} destination={job.destination_id}",
        "result_ttl": 0,
        "job_timeout": JOB_TIMEOUT,
        # a crash of the job itself (PostgreSQL or Redis down), not a destination failure
        "retry": Retry(max=5, interval=[10, 60, 300, 900, 1800]),
    }
    if pipeline is not None:
        options["pipeline"] = pipeline
    if at is None:
        queue.enqueue(FORWARD_FUNC, job, **options)
    else:
        queue.enqueue_at(datetime.fromtimestamp(at, UTC), FORWARD_FUNC, job, **options)


# --- the forward job ---------------------------------------------------------------------------


def _hold_key(destination_id: str) -> str:
    return f"trackgate:forward:hold:{destination_id}"


def _probe_key(destination_id: str) -> str:
    return f"trackgate:forward:probe:{destination_id}"


def backoff(attempt: int) -> float:
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1))
    return delay * (0.5 + rng.random() / 2)


class Outcome(msgspec.Struct):
    ok: bool
    retryable: bool = False
    status: int | None = None
    body: str | None = None
    error: str = ""
    wait: float | None = None


def send(
    client: httpx.Client, request: transports.Request, transport: transports.Transport, now: float
) -> Outcome:
    try:
        response = client.request(
            request.method, request.url, headers=request.headers, content=request.content
        )
    except httpx.TimeoutException as exc:
        return Outcome(False, retryable=True, error=f"timeout: {type(exc).__name__}")
    except httpx.TransportError as exc:
        return Outcome(False, retryable=True, error=f"connection: {type(exc).__name__}: {exc}"[:500])
    content = response.content
    status = response.status_code
    if transport.success(status, content):
        return Outcome(True, status=status)
    body = content[:ERROR_BODY_CHARS].decode("utf-8", "replace")
    error = f"HTTP {status}: {body[:200]}"
    if transports.retryable_status(status):
        wait = transports.retry_after(response.headers.get("retry-after"), now)
        return Outcome(False, retryable=True, status=status, body=body, error=error, wait=wait)
    return Outcome(False, status=status, body=body, error=error)


def forward_batch(arg: Any) -> None:
    job = forward_job_from_arg(arg)
    rt = runtime.current()
    settings = rt.settings
    connection = redis_connection(settings)
    queue = forward_queue(connection)
    now = clock()
    with rt.pool.connection() as conn:
        try:
            dest = load_destination(conn, settings, job.destination_id)
        except SecretKeyMissing as exc:
            # a configuration error, not the destination's: wait for the key (the horizon still applies
            # when it is fixed), and say so in the delivery log
            _record_retry(conn, job, Outcome(False, error=str(exc)[:500]), now + KEY_RECHECK)
            _enqueue(queue, job, at=now + KEY_RECHECK)
            log.error("forward_waiting delivery=%d reason=credentials_unreadable", job.delivery_id)
            return
        if dest is None:
            log.info("forward_dropped delivery=%d reason=destination_removed", job.delivery_id)
            return
        transport = transports.TRANSPORTS[dest.kind]
        horizon_end = job.first_at + settings.forward_horizon_seconds
        if dest.paused:
            _enqueue(queue, job, at=now + PAUSED_RECHECK)
            return
        if job.parts is None:
            items = transports.encode(transport, ADAPTERS, job.events or [])
            job = msgspec.structs.replace(job, parts=transports.plan(transport, items), events=None)
        parts: list[Part] = job.parts or []

        probing = False
        hold = connection.get(_hold_key(dest.id))
        if hold is not None and now < horizon_end:
            until = float(hold)
            if until > now:  # the destination is failing: wait for its retry time, attempts untouched
                _enqueue(queue, job, at=math.ceil(until + rng.random()))
                _log_state(conn, job, "retrying", until)
                return
            probe_ttl = int(settings.forward_connect_timeout + settings.forward_read_timeout) * 2 + 5
            if not connection.set(_probe_key(dest.id), job.delivery_id, nx=True, ex=probe_ttl):
                _enqueue(queue, job, at=now + 2 + 3 * rng.random())  # another job is probing
                return
            probing = True

        client = http_client(settings)
        done, n_dead = job.done, job.n_dead
        last: Outcome | None = None
        while done < len(parts):
            if now >= horizon_end:
                error = f"retry horizon reached ({settings.forward_horizon_seconds:.0f} s)"
                if last is not None:
                    error += f"; last error: {last.error}"
                for part in parts[done:]:
                    _dead_letter(conn, job, dest, part, last, error)
                    n_dead += 1
                done = len(parts)
                break
            part = parts[done]
            request = transports.render(transport, dest.base_url, dest.credentials, part, now)
            outcome = send(client, request, transport, now)
            last = outcome
            if outcome.ok:
                done += 1
                continue
            if outcome.retryable:
                attempts = job.attempts + 1
                wait = outcome.wait if outcome.wait is not None else backoff(attempts)
                at = math.ceil(now + wait)  # RQ schedules to the whole second
                if at > horizon_end:
                    now = horizon_end  # dead-letter the rest on the next turn of the loop
                    continue
                connection.set(_hold_key(dest.id), repr(at), ex=int(settings.forward_horizon_seconds) + 3600)
                if probing:
                    connection.delete(_probe_key(dest.id))
                retry = msgspec.structs.replace(job, done=done, n_dead=n_dead, attempts=attempts)
                _enqueue(queue, retry, at=at)
                _record_retry(conn, job, outcome, at)
                log.info(
                    "forward_retry delivery=%d destination=%s attempt=%d wait=%.1f error=%s",
                    job.delivery_id,
                    dest.id,
                    attempts,
                    wait,
                    outcome.error,
                )
                return
            _dead_letter(conn, job, dest, part, outcome, outcome.error)
            n_dead += 1
            done += 1
        if hold is not None or probing:
            connection.delete(_hold_key(dest.id), _probe_key(dest.id))
        _finish(conn, job, n_dead, last)
        log.info(
            "forward_done delivery=%d destination=%s n_requests=%d n_dead=%d",
            job.delivery_id,
            dest.id,
            len(parts),
            n_dead,
        )


def _log_state(conn: psycopg.Connection, job: ForwardJob, status: str, at: float) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE deliveries SET status = %s, next_attempt_at = %s, updated_at = now() WHERE id = %s",
            (status, datetime.fromtimestamp(at, UTC), job.delivery_id),
        )


def _record_retry(conn: psycopg.Connection, job: ForwardJob, outcome: Outcome, at: float) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE deliveries SET status = 'retrying', attempts = attempts + 1, last_status = %s,"
            " last_error = %s, next_attempt_at = %s, updated_at = now() WHERE id = %s",
            (outcome.status, outcome.error, datetime.fromtimestamp(at, UTC), job.delivery_id),
        )


def _dead_letter(
    conn: psycopg.Connection,
    job: ForwardJob,
    dest: Destination,
    part: Part,
    outcome: Outcome | None,
    error: str,
) -> None:
    status = outcome.status if outcome else None
    body = outcome.body if outcome else None
    with conn.transaction():
        if job.dead_letter_id is not None:
            conn.execute(
                "UPDATE dead_letters SET status = 'dead', http_status = %s, response_body = %s, error = %s,"
                " attempts = attempts + 1, updated_at = now() WHERE id = %s",
                (status, body, error, job.dead_letter_id),
            )
        else:
            conn.execute(
                "INSERT INTO dead_letters (delivery_id, destination_id, route, items, n_events,"
                " http_status, response_body, error, attempts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    job.delivery_id,
                    dest.id,
                    part.route,
                    msgspec.json.encode(part.items).decode(),
                    len(part.items),
                    status,
                    body,
                    error,
                    job.attempts + 1,
                ),
            )
    log.warning(
        "forward_dead_letter delivery=%d destination=%s status=%s error=%s",
        job.delivery_id,
        dest.id,
        status,
        error[:200],
    )


def _finish(conn: psycopg.Connection, job: ForwardJob, n_dead: int, last: Outcome | None) -> None:
    error = last.error if last is not None and not last.ok else None
    status_code = last.status if last is not None else None
    with conn.transaction():
        if job.dead_letter_id is not None and n_dead == 0:
            conn.execute(
                "UPDATE dead_letters SET status = 'replayed', attempts = attempts + 1, updated_at = now()"
                " WHERE id = %s",
                (job.dead_letter_id,),
            )
        if n_dead:
            conn.execute(
                "UPDATE deliveries SET status = 'dead', attempts = attempts + 1, last_status = %s,"
                " last_error = %s, next_attempt_at = NULL, updated_at = now() WHERE id = %s",
                (status_code, error, job.delivery_id),
            )
        else:
            # delivered, unless another of its dead letters still waits for a replay
            conn.execute(
                "UPDATE deliveries SET status = CASE WHEN EXISTS (SELECT 1 FROM dead_letters d"
                " WHERE d.delivery_id = deliveries.id AND d.status <> 'replayed') THEN 'dead'"
                " ELSE 'delivered' END, attempts = attempts + 1, last_status = %s, next_attempt_at = NULL,"
                " delivered_at = now(), updated_at = now() WHERE id = %s",
                (status_code, job.delivery_id),
            )
