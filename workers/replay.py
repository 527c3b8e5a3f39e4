"""Replays: dead letters again, stored events to a destination, archives of raw vendor payloads.

Run by ``trackgate replay ...`` (the CLI reaches this module by dotted path). Each is

- idempotent: dead letters are claimed row by row (``dead`` → ``replaying``) so one is re-sent once;
  stored events keep their message ids (destinations that dedupe, like Segment, drop repeats);
  archive lines get message ids derived from the file's digest and the line number when the payload
  has none, so importing a file twice stores nothing new (the store dedupes on message id);
- resumable: ``replay_checkpoints`` records how far a run got; a re-run continues from there
  (``--restart`` ignores it);
- visible: a progress bar with counts and rate on a terminal, plain lines otherwise.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
import psycopg
import redis
import uuid_utils
from psycopg.types.json import Jsonb
from rq import Queue, Retry

from trackgate.adapters import transports
from trackgate.adapters.base import Adapter, AdapterError
from trackgate.adapters.registry import ADAPTERS
from trackgate.schemas.destinations import ForwardJob, Part
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PERSIST_FUNC, PERSIST_QUEUE, MsgspecJSONSerializer, PersistBatch
from trackgate.schemas.request import RequestMeta
from trackgate.schemas.settings import Settings
from trackgate.workers import forward
from trackgate.workers.store import COLUMNS

log = logging.getLogger(__name__)

PERSIST_RETRY = [1, 5, 15, 60, 300, 900, 1800, 3600]


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """``click.progressbar`` on a terminal (counts and rate beside the bar); plain lines elsewhere."""

    def __init__(self, label: str, total: int | None, counts: dict[str, int], out=None, every: float = 5.0):
        self.out = out or sys.stderr
        self.counts = counts
        self.label = label
        self.started = time.monotonic()
        self.every = every
        self.last_line = 0.0
        self.pending = 0
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self.bar = None
        if self.tty:
            self.bar = click.progressbar(
                length=total,
                label=label,
                file=self.out,
                show_pos=True,
                item_show_func=lambda _: self.summary(),
            )
            self.bar.__enter__()

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        main = next(iter(self.counts.values()), 0)
        parts = [f"{k}={v}" for k, v in self.counts.items()]
        return " ".join(parts) + f" ({main / elapsed:,.0f}/s)"

    def update(self, n: int) -> None:
        now = time.monotonic()
        if self.bar is not None:
            # redrawn at most 5 times a second: a redraw per line costs more than the import
            self.pending += n
            if now - self.last_line >= 0.2:
                self.last_line = now
                self.bar.update(self.pending, current_item=True)
                self.pending = 0
            return
        if now - self.last_line >= self.every:
            self.last_line = now
            click.echo(f"{self.label}: {self.summary()}", file=self.out)

    def close(self) -> str:
        if self.bar is not None:
            self.bar.update(self.pending, current_item=True)
            self.bar.__exit__(None, None, None)
        elapsed = time.monotonic() - self.started
        line = f"{self.label}: done in {elapsed:.1f} s, {self.summary()}"
        click.echo(line, file=self.out)
        return line


# --- checkpoints -------------------------------------------------------------------------------


def _checkpoint(conn: psycopg.Connection, key: str) -> tuple[int, bool, dict]:
    row = conn.execute(
        "SELECT position, done, counts FROM replay_checkpoints WHERE key = %s", (key,)
    ).fetchone()
    return (row[0], row[1], row[2]) if row else (0, False, {})


def _save_checkpoint(conn: psycopg.Connection, key: str, position: int, done: bool, counts: dict) -> None:
    conn.execute(
        "INSERT INTO replay_checkpoints (key, position, done, counts) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (key) DO UPDATE SET position = EXCLUDED.position, done = EXCLUDED.done,"
        " counts = EXCLUDED.counts, updated_at = now()",
        (key, position, done, Jsonb(counts)),
    )
    conn.commit()


def _redis(settings: Settings) -> redis.Redis:
    if not settings.redis_url:
        raise ValueError("TRACKGATE_REDIS_URL is not set")
    return redis.Redis.from_url(settings.redis_url)


# --- dead letters ------------------------------------------------------------------------------


def replay_dead_letters(
    settings: Settings,
    destination: str | None = None,
    since: datetime | None = None,
    out=None,
) -> dict[str, int]:
    """Re-send every dead letter (of ``destination``, dead-lettered since ``since``) through the normal
    forward path: it is retried until the destination takes it, or dead again if still refused."""
    assert settings.database_url
    connection = _redis(settings)
    queue = forward.forward_queue(connection)
    counts = {"requeued": 0, "events": 0}
    with psycopg.connect(settings.database_url) as conn:
        destination_id = None
        if destination:
            row = conn.execute(
                "SELECT id FROM destinations WHERE id = %s OR name = %s", (destination, destination)
            ).fetchone()
            if row is None:
                raise ValueError(f"no destination {destination!r}")
            destination_id = row[0]
        where = ["status = 'dead'"]
        params: list[Any] = []
        if destination_id:
            where.append("destination_id = %s")
            params.append(destination_id)
        if since:
            where.append("created_at >= %s")
            params.append(since)
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT id FROM dead_letters WHERE {' AND '.join(where)} ORDER BY id", params
            ).fetchall()
        ]
        conn.commit()
        progress = Progress("replay dead-letters", len(ids), counts, out=out)
        now = forward.clock()
        for dead_letter_id in ids:
            # claim it: a concurrent or repeated run re-sends each dead letter once
            with conn.transaction():
                row = conn.execute(
                    "UPDATE dead_letters SET status = 'replaying', updated_at = now()"
                    " WHERE id = %s AND status = 'dead'"
                    " RETURNING delivery_id, destination_id, route, items, n_events",
                    (dead_letter_id,),
                ).fetchone()
                if row is None:
                    continue
                conn.execute(
                    "UPDATE deliveries SET status = 'retrying', next_attempt_at = NULL, updated_at = now()"
                    " WHERE id = %s",
                    (row[0],),
                )
                job = ForwardJob(
                    delivery_id=row[0],
                    destination_id=row[1],
                    parts=[Part(row[2], msgspec.json.decode(row[3]))],
                    first_at=now,
                    dead_letter_id=dead_letter_id,
                )
                # enqueued inside the claim's transaction: if Redis refuses, the row stays dead
                forward._enqueue(queue, job)
            counts["requeued"] += 1
            counts["events"] += row[4]
            progress.update(1)
        progress.close()
    connection.close()
    return counts


# --- stored events -----------------------------------------------------------------------------

_EVENT_COLUMNS = ", ".join(f'"{c}"' for c in COLUMNS)
_event_fields = [c for c in COLUMNS if c != "batch_id"]


def _row_event(row: tuple) -> Event:
    values = dict(zip(COLUMNS, row, strict=True))
    values.pop("batch_id")
    values["id"] = str(values["id"])
    values["group_ids"] = values["group_ids"] or []
    for key in (
        "name",
        "user_id",
        "anonymous_id",
        "group_id",
        "previous_id",
        "original_timestamp",
        "sent_at",
    ):
        if values[key] is None:
            values.pop(key)
    if isinstance(values["raw"], dict | list):  # psycopg loads json; the canonical raw is text
        values["raw"] = json.dumps(values["raw"])
    return msgspec.convert(values, Event)


def replay_events(
    settings: Settings,
    source: str,
    start: datetime,
    end: datetime,
    destination: str,
    restart: bool = False,
    chunk: int = 2000,
    out=None,
) -> dict[str, int]:
    """Forward the source's stored events with ``start <= timestamp < end`` to ``destination`` (its
    filters apply), in timestamp order; a checkpoint after each chunk lets an interrupted run resume."""
    assert settings.database_url
    connection = _redis(settings)
    counts = {"events": 0, "jobs": 0, "skipped": 0}
    with psycopg.connect(settings.database_url) as conn:
        dest_row = conn.execute(
            "SELECT id FROM destinations WHERE id = %s OR name = %s", (destination, destination)
        ).fetchone()
        if dest_row is None:
            raise ValueError(f"no destination {destination!r}")
        dest = forward.load_destination(conn, settings, dest_row[0])
        assert dest is not None
        src = conn.execute("SELECT id FROM sources WHERE id = %s OR name = %s", (source, source)).fetchall()
        if len(src) != 1:
            raise ValueError(f"no single source {source!r}" + (" (use its id)" if src else ""))
        source_id = src[0][0]
        key = f"events:{source_id}:{dest.id}:{start.isoformat()}:{end.isoformat()}"
        position, done, saved = (0, False, {}) if restart else _checkpoint(conn, key)
        if done:
            click.echo(f"already replayed ({saved}); --restart sends them again", file=out or sys.stderr)
            return {"events": 0, "jobs": 0, "skipped": 0}
        total = conn.execute(
            'SELECT count(*) FROM events WHERE source_id = %s AND "timestamp" >= %s AND "timestamp" < %s',
            (source_id, start, end),
        ).fetchone()[0]
        conn.commit()
        progress = Progress("replay events", total, counts, out=out)
        progress.update(position)
        counts["events"] = saved.get("events", 0)
        counts["jobs"] = saved.get("jobs", 0)
        transport = transports.TRANSPORTS[dest.kind]
        batch_prefix = "replay-" + hashlib.sha256(key.encode()).hexdigest()[:16]
        with conn.cursor(name="trackgate_replay") as cur:
            cur.itersize = chunk
            # keyset, not OFFSET: events that arrive meanwhile (a late client time inside the range)
            # must not shift a resumed run onto rows it sent or past rows it never sent
            after = saved.get("after")
            resume = ' AND ("timestamp", id) > (%s, %s::uuid)' if after else ""
            cur.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE source_id = %s"
                f' AND "timestamp" >= %s AND "timestamp" < %s{resume} ORDER BY "timestamp", id',
                (source_id, start, end, *(after or ())),
            )
            while True:
                rows = cur.fetchmany(chunk)
                if not rows:
                    break
                events = [_row_event(r) for r in rows]
                selected = [e for e in events if forward.accepts(dest.filters, e)]
                counts["skipped"] += len(events) - len(selected)
                planned = [(dest, c) for c in forward.chunks(selected, transport.job_events)]
                with psycopg.connect(settings.database_url) as wconn:
                    ids = forward.enqueue_deliveries(wconn, connection, f"{batch_prefix}-{position}", planned)
                    position += len(rows)
                    counts["events"] += len(selected)
                    counts["jobs"] += len(ids)
                    last = dict(zip(COLUMNS, rows[-1], strict=True))
                    after = [last["timestamp"].isoformat(), str(last["id"])]
                    _save_checkpoint(wconn, key, position, False, {**counts, "after": after})
                progress.update(len(rows))
        conn.commit()
        _save_checkpoint(conn, key, position, True, counts)
        progress.close()
    connection.close()
    return counts


# --- archive files -----------------------------------------------------------------------------


def _open(path: Path) -> tuple[io.BufferedReader, Any]:
    raw = open(path, "rb")  # noqa: SIM115 (closed by the caller)
    head = raw.peek(2)[:2]
    if head == b"\x1f\x8b":
        return raw, gzip.GzipFile(fileobj=raw)
    return raw, raw


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def payloads(stream) -> Iterator[tuple[int, Any]]:
    """(line number from 1, payload) for an NDJSON stream, or the items of one JSON array/object."""
    first = b""
    for line in stream:
        if line.strip():
            first = line
            break
    else:
        return
    stripped = first.lstrip()
    if stripped.startswith(b"["):
        document = msgspec.json.decode(first + stream.read())
        yield from enumerate(document, start=1)
        return
    line_no = 1
    try:
        value = msgspec.json.decode(first)
    except msgspec.DecodeError:  # a pretty-printed single document
        yield 1, msgspec.json.decode(first + stream.read())
        return
    yield line_no, value
    for line in stream:
        line_no += 1
        if line.strip():
            try:
                yield line_no, msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                yield line_no, exc


_ENVELOPE_KEYS = {"call", "body", "headers", "query", "received_at", "ip", "user_agent"}


def _call_for(adapter: Adapter, payload: Any) -> str:
    """The call a bare payload was posted to, from its shape (an envelope line names it instead)."""
    return adapter.replay_call(payload)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _decode_line(
    adapter: Any,
    dialect: str,
    source_id: str,
    request_id: str,
    payload: Any,
    now: datetime,
) -> list[Event]:
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    ip = user_agent = None
    received_at = None
    if (
        isinstance(payload, dict)
        and "body" in payload
        and "call" in payload
        and set(payload) <= _ENVELOPE_KEYS
    ):
        call = str(payload["call"])
        headers = {str(k).lower(): str(v) for k, v in (payload.get("headers") or {}).items()}
        query = {str(k): str(v) for k, v in (payload.get("query") or {}).items()}
        ip, user_agent = payload.get("ip"), payload.get("user_agent") or headers.get("user-agent")
        received_at = _time(payload.get("received_at"))
        body = payload["body"]
    else:
        call = _call_for(adapter, payload)
        body = payload
    if received_at is None and isinstance(body, dict):
        # a historical payload: arrival as close to when it was sent as it says (so clock-skew
        # correction leaves its times alone)
        for key in ("receivedAt", "received_at", "sentAt", "sent_at"):
            received_at = _time(body.get(key))
            if received_at:
                break
    content = body.encode() if isinstance(body, str) else msgspec.json.encode(body)
    meta = RequestMeta(
        source_id=source_id,
        dialect=dialect,
        call=call,
        received_at=received_at or now,
        request_id=request_id,
        ip=ip,
        user_agent=user_agent,
        headers=headers,
        query=query,
    )
    envelope = adapter.parse(call, content)
    decode_partial = getattr(adapter, "decode_partial", None)
    if decode_partial is not None:
        decoded = decode_partial(meta, envelope)
        for item in decoded.refused:
            log.warning("replay_item_refused request=%s index=%d code=%s", request_id, item.index, item.code)
        events = decoded.events
    else:
        events = adapter.decode(meta, envelope)
    for event in events:  # as the gateway does after decoding
        event.id = str(uuid_utils.uuid7())
    return events


def replay_file(
    settings: Settings,
    path: str | Path,
    source: str,
    dialect: str | None = None,
    restart: bool = False,
    batch_events: int | None = None,
    out=None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, int]:
    """Feed an archive of raw vendor payloads (NDJSON, a JSON array or one JSON document; gzip or
    not) through the dialect's adapter into the persist queue, as the gateway would have.

    A line is a payload as the vendor's SDK posted it (the call is inferred: a Segment ``batch`` or a
    single message by its ``type``), or an envelope ``{"call", "body", "headers"?, "received_at"?}``.
    Message ids the payload lacks are derived from the file's digest and the line number.
    """
    assert settings.database_url
    path = Path(path)
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "SELECT id, dialect FROM sources WHERE id = %s OR name = %s", (source, source)
        ).fetchall()
        if dialect:
            rows = [r for r in rows if r[1] == dialect] or rows
        if len(rows) != 1:
            raise ValueError(f"no single source {source!r}" + (" (use its id, or --dialect)" if rows else ""))
        source_id, source_dialect = rows[0]
        dialect = dialect or source_dialect
        if dialect not in ADAPTERS:
            raise ValueError(f"unknown dialect {dialect!r}")
        adapter = ADAPTERS[dialect]
        digest = _digest(path)
        key = f"file:{digest}:{source_id}:{dialect}"
        position, done, saved = (0, False, {}) if restart else _checkpoint(conn, key)
        counts = {"events": 0, "lines": 0, "refused": 0, "jobs": 0}
        if done:
            click.echo(
                f"{path} was imported already ({saved}); --restart imports it again (dedupe stores nothing"
                " twice)",
                file=out or sys.stderr,
            )
            return {**counts, "already": 1}
        counts.update({k: saved.get(k, 0) for k in counts})
        connection = _redis(settings)
        queue = Queue(PERSIST_QUEUE, connection=connection, serializer=MsgspecJSONSerializer)
        retry = Retry(max=len(PERSIST_RETRY), interval=PERSIST_RETRY)
        size = path.stat().st_size
        raw, stream = _open(path)
        progress = Progress(f"replay {path.name}", size, counts, out=out)
        pending: list[Event] = []
        limit = batch_events or settings.max_batch_events
        last_line = position
        reported = 0
        prefix = f"file-{digest[:24]}"

        def flush(upto: int) -> None:
            nonlocal pending
            if pending:
                batch_id = str(uuid_utils.uuid7())
                queue.enqueue(
                    PERSIST_FUNC,
                    PersistBatch(batch_id=batch_id, events=pending),
                    job_id=batch_id,
                    description=f"persist_batch {batch_id} n_events={len(pending)} (replay file)",
                    result_ttl=0,
                    retry=retry,
                )
                counts["jobs"] += 1
                pending = []
            _save_checkpoint(conn, key, upto, False, counts)

        try:
            for line_no, payload in payloads(stream):
                if line_no <= position:
                    continue
                counts["lines"] += 1
                last_line = line_no
                if isinstance(payload, Exception):
                    counts["refused"] += 1
                    log.warning("replay_line_refused line=%d reason=invalid JSON", line_no)
                    continue
                try:
                    events = _decode_line(adapter, dialect, source_id, f"{prefix}-{line_no}", payload, now())
                except AdapterError as exc:
                    counts["refused"] += 1
                    log.warning("replay_line_refused line=%d code=%s path=%s", line_no, exc.code, exc.path)
                    continue
                pending.extend(events)
                counts["events"] += len(events)
                if len(pending) >= limit:
                    flush(line_no)
                tell = raw.tell()
                progress.update(tell - reported)
                reported = tell
            flush(last_line)
            _save_checkpoint(conn, key, last_line, True, counts)
        finally:
            stream.close()
            raw.close()
            connection.close()
        progress.close()
    return counts
