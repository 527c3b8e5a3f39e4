"""Delivery: the forward job sends one chunk of stored events to one destination, with holds,
retries and dead letters.

:func:`forward_batch` encodes the events with the destination dialect's adapter, plans the requests
(``adapters/transports.py``) and sends them in order with this process's httpx client. Success moves
on; a retryable failure (timeout, connection error, 408, 429, 5xx) schedules the rest of the job again
(``Retry-After`` when given, else exponential backoff with jitter) until the retry horizon, after which
the rest is dead-lettered; a permanent failure dead-letters that request and the job goes on with the
next one.

A destination that fails retryably is put on hold until its retry time: other jobs for it do not call
it meanwhile (they reschedule themselves at the hold's end, without using up an attempt), and when the
hold ends one job probes it first. So a down or slow destination costs one timeout per retry interval,
not one per job, and other destinations' jobs keep flowing.

The clock and the jitter are ``resources.clock`` / ``resources.rng`` so tests can move time.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import psycopg

from trackgate.adapters import transports
from trackgate.adapters.registry import ADAPTERS
from trackgate.schemas import metrics
from trackgate.schemas.destinations import (
    Destination,
    ForwardJob,
    Part,
    SecretKeyMissing,
    forward_job_from_arg,
)
from trackgate.workers import destinations as destination_table
from trackgate.workers.forward import outbox, resources
from trackgate.workers.forward.fanout import enqueue
from trackgate.workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)

BACKOFF_BASE = 2.0
BACKOFF_CAP = 900.0
"""Retries back off 2 s, 4 s, 8 s, ... up to 15 min between attempts, each jittered to 50-100%."""
KEY_RECHECK = 30.0
"""Forwards wait this long between looks while their credentials cannot be decrypted (short: once the key
is set and the workers restarted, waiting forwards go out within half a minute, not five)."""
PAUSED_RECHECK = 60.0
"""A paused destination's forwards look again once a minute (a small job run per waiting chunk)."""
ERROR_BODY_CHARS = 2000


# --- the forward job ---------------------------------------------------------------------------


def _hold_key(destination_id: str) -> str:
    return f"trackgate:forward:hold:{destination_id}"


def _probe_key(destination_id: str) -> str:
    return f"trackgate:forward:probe:{destination_id}"


def backoff(attempt: int) -> float:
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1))
    return delay * (0.5 + resources.rng.random() / 2)


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


def forward_batch(rt: WorkerRuntime, arg: Any) -> None:
    """The forward job (``jobs.forward_batch``): send what is left of one chunk, as described above."""
    job = forward_job_from_arg(arg)
    settings = rt.settings
    connection = resources.redis_connection(settings)
    queue = resources.forward_queue(connection)
    now = resources.clock()
    with rt.pool.connection() as conn:
        try:
            dest = destination_table.load(conn, settings.secret_key, job.destination_id)
        except SecretKeyMissing as exc:
            # a configuration error, not the destination's: wait for the key (the horizon still applies
            # when it is fixed), and say so in the delivery log
            _record_retry(conn, job, Outcome(False, error=str(exc)[:500]), now + KEY_RECHECK)
            enqueue(queue, job, at=now + KEY_RECHECK)
            log.error("forward_waiting delivery=%d reason=credentials_unreadable", job.delivery_id)
            return
        if dest is None:
            log.info("forward_dropped delivery=%d reason=destination_removed", job.delivery_id)
            return
        transport = transports.TRANSPORTS[dest.kind]
        horizon_end = job.first_at + settings.forward_horizon_seconds
        if dest.paused:
            enqueue(queue, job, at=now + PAUSED_RECHECK)
            outbox.mark_taken(conn, job.delivery_id)  # requeued under another id, still 'queued'
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
                enqueue(queue, job, at=math.ceil(until + resources.rng.random()))
                _log_state(conn, job, "retrying", until)
                return
            probe_ttl = int(settings.forward_connect_timeout + settings.forward_read_timeout) * 2 + 5
            if not connection.set(_probe_key(dest.id), job.delivery_id, nx=True, ex=probe_ttl):
                enqueue(queue, job, at=now + 2 + 3 * resources.rng.random())  # another job is probing
                outbox.mark_taken(conn, job.delivery_id)
                return
            probing = True

        client = resources.http_client(settings)
        forwards = metrics.worker().forwards
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
                forwards.labels(dest.id, "delivered").inc()
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
                enqueue(queue, retry, at=at)
                _record_retry(conn, job, outcome, at)
                forwards.labels(dest.id, "retrying").inc()
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
    metrics.worker().forwards.labels(dest.id, "dead").inc()


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
