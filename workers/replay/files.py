"""``trackgate replay file``: an archive of raw vendor payloads fed through the dialect's adapter into
the persist queue (so through the persist pipeline), as the gateway would have; message ids the
payloads lack are derived from the file's digest and the line number, so a second import stores
nothing new."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
import psycopg
import uuid_utils
from rq import Queue, Retry

from trackgate.adapters.base import Adapter, AdapterError, Refused
from trackgate.adapters.registry import ADAPTERS, BY_NAME
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import (
    PERSIST_FUNC,
    PERSIST_QUEUE,
    MsgspecJSONSerializer,
    PersistBatch,
    RefusedItem,
)
from trackgate.schemas.request import RequestMeta
from trackgate.schemas.settings import Settings
from trackgate.workers.replay.progress import Progress, checkpoint, redis_for, save_checkpoint

log = logging.getLogger(__name__)

PERSIST_RETRY = [1, 5, 15, 60, 300, 900, 1800, 3600]

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
                yield line_no, LineError(text=line.decode("utf-8", "replace").strip(), error=str(exc))


class LineError(msgspec.Struct):
    """A line that is not JSON: its text, kept in quarantine, and the parser's complaint."""

    text: str
    error: str


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
) -> tuple[list[Event], list[Refused]]:
    """The line's events, and the items of it the dialect refused (a partial-success dialect's)."""
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
    partial = BY_NAME[dialect].partial
    refused: list[Refused] = []
    if partial is not None:
        decoded = partial.decode_partial(meta, envelope)
        for item in decoded.refused:
            log.warning("replay_item_refused request=%s index=%d code=%s", request_id, item.index, item.code)
        events, refused = decoded.events, decoded.refused
    else:
        events = adapter.decode(meta, envelope)
    for event in events:  # as the gateway does after decoding
        event.id = str(uuid_utils.uuid7())
    return events, refused


def _quarantined(
    key: str,
    source_id: str,
    dialect: str,
    request_id: str,
    now: datetime,
    refused: Refused | None = None,
    *,
    code: str = "",
    reason: str = "",
    raw: str = "",
) -> RefusedItem:
    """A refused line (or item of a line) as the persist job quarantines it; ``key`` is stable per
    file and line, so importing the file again quarantines nothing twice."""
    return RefusedItem(
        key=key,
        source_id=source_id,
        dialect=refused.dialect if refused and refused.dialect else dialect,
        version=refused.version if refused else "",
        index=refused.index if refused else 0,
        code=refused.code if refused else code,
        reason=refused.reason if refused else reason,
        message_id=refused.message_id if refused else None,
        raw=refused.raw if refused else raw,
        request_id=request_id,
        received_at=(refused.received_at if refused else None) or now,
    )


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
        position, done, saved = (0, False, {}) if restart else checkpoint(conn, key)
        counts = {"events": 0, "lines": 0, "refused": 0, "quarantined": 0, "jobs": 0}
        if done:
            click.echo(
                f"{path} was imported already ({saved}); --restart imports it again (dedupe stores nothing"
                " twice)",
                file=out or sys.stderr,
            )
            return {**counts, "already": 1}
        counts.update({k: saved.get(k, 0) for k in counts})
        connection = redis_for(settings)
        queue = Queue(PERSIST_QUEUE, connection=connection, serializer=MsgspecJSONSerializer)
        retry = Retry(max=len(PERSIST_RETRY), interval=PERSIST_RETRY)
        size = path.stat().st_size
        raw, stream = _open(path)
        progress = Progress(f"replay {path.name}", size, counts, out=out)
        pending: list[Event] = []
        quarantine: list[RefusedItem] = []
        limit = batch_events or settings.max_batch_events
        last_line = position
        reported = 0
        prefix = f"file-{digest[:24]}"

        def flush(upto: int) -> None:
            nonlocal pending, quarantine
            if pending or quarantine:
                batch_id = str(uuid_utils.uuid7())
                queue.enqueue(
                    PERSIST_FUNC,
                    PersistBatch(batch_id=batch_id, events=pending, refused=quarantine),
                    job_id=batch_id,
                    description=f"persist_batch {batch_id} n_events={len(pending)} (replay file)",
                    result_ttl=0,
                    retry=retry,
                )
                counts["jobs"] += 1
                counts["quarantined"] += len(quarantine)
                pending, quarantine = [], []
            save_checkpoint(conn, key, upto, False, counts)

        try:
            for line_no, payload in payloads(stream):
                if line_no <= position:
                    continue
                counts["lines"] += 1
                last_line = line_no
                request_id = f"{prefix}-{line_no}"
                if isinstance(payload, LineError):
                    counts["refused"] += 1
                    log.warning("replay_line_refused line=%d reason=invalid JSON", line_no)
                    quarantine.append(
                        _quarantined(
                            request_id, source_id, dialect, request_id, now(),
                            code="invalid_json", reason=f"line {line_no}: {payload.error}", raw=payload.text,
                        )
                    )  # fmt: skip
                    continue
                try:
                    events, refused = _decode_line(adapter, dialect, source_id, request_id, payload, now())
                except AdapterError as exc:
                    counts["refused"] += 1
                    log.warning("replay_line_refused line=%d code=%s path=%s", line_no, exc.code, exc.path)
                    reason = f"line {line_no}: {exc.message}" + (f" ({exc.path})" if exc.path else "")
                    quarantine.append(
                        _quarantined(
                            request_id, source_id, dialect, request_id, now(),
                            code=exc.code, reason=reason, raw=msgspec.json.encode(payload).decode(),
                        )
                    )  # fmt: skip
                    continue
                if refused:
                    counts["refused"] += 1  # the line, partly
                    quarantine.extend(
                        _quarantined(
                            f"{request_id}-{item.index}", source_id, dialect, request_id, now(), item
                        )
                        for item in refused
                    )
                pending.extend(events)
                counts["events"] += len(events)
                if len(pending) + len(quarantine) >= limit:
                    flush(line_no)
                tell = raw.tell()
                progress.update(tell - reported)
                reported = tell
            flush(last_line)
            save_checkpoint(conn, key, last_line, True, counts)
        finally:
            stream.close()
            raw.close()
            connection.close()
        progress.close()
    return counts
