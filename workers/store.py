"""Storing canonical events in PostgreSQL: dedupe, then COPY, in one transaction.

For each batch: first the (source, message id) pairs never seen before are claimed in ``event_dedupe``,
then only those events are COPYed into ``events``. The claim is a COPY of every pair (the usual case:
all are new); if one was claimed before, the unique index fails it and the transaction runs again
with ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, which claims the others. A second worker racing
on the same pair waits on the first's index entry and then fails (COPY) or gets nothing back (INSERT),
so an event is stored once however often it is delivered, within the dedupe window.

A leaf: it stores and says what it stored and what PostgreSQL refused (:class:`Stored`); keeping the
refused events (quarantine) and forwarding the stored ones is ``workers/pipeline.py``'s job. Every
text goes through ``workers/storable.py`` first, so no NUL or lone surrogate fails a statement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Json

from trackgate.schemas import enrichment_columns
from trackgate.schemas.event import Event
from trackgate.schemas.jobs import PersistBatch
from trackgate.workers import storable

log = logging.getLogger(__name__)

COLUMNS = (
    "id",
    "source_id",
    "message_id",
    "dialect",
    "dialect_version",
    "type",
    "name",
    "user_id",
    "anonymous_id",
    "group_id",
    "group_ids",
    "previous_id",
    "properties",
    "traits",
    "context",
    "integrations",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "enrichment",
    "raw",
    "batch_id",
    *enrichment_columns.COLUMNS,
)
"""The ``events`` columns a row of :func:`event_row` fills: the canonical fields, then the enrichment
keys with a column of their own (``schemas/enrichment_columns.py``; ``enrichment`` holds the rest)."""
N_FIELDS = len(COLUMNS) - len(enrichment_columns.COLUMNS)
"""How many of :data:`COLUMNS` come first as the canonical event's fields."""
_QUOTED = ", ".join(f'"{column}"' for column in COLUMNS)
COPY_SQL = f"COPY events ({_QUOTED}) FROM STDIN"
CLAIM_COPY_SQL = "COPY event_dedupe (source_id, message_id, claimed_at) FROM STDIN"
"""The usual claim: every pair of the transaction is new, and a plain COPY inserts them at about half
the server's cost of ``INSERT ... ON CONFLICT`` (5.8 against 10.6 µs of PostgreSQL's CPU a pair,
3,125 pairs a transaction). Each row's ``claimed_at`` is the text ``now``, which PostgreSQL reads as
the transaction's start, as the INSERT's ``now()``. One pair claimed before (a redelivered job, a
retried request) fails the COPY with a unique violation; the transaction is then run again with
:data:`CLAIM_SQL`. While that happens to many transactions (:data:`COPY_WHILE_SEEN_BEFORE_BELOW`),
they claim with :data:`CLAIM_SQL` at once."""
CLAIM_SQL = (  # the ids as two JSON arrays: parsed by PostgreSQL in C, ~2x cheaper than text[] parameters
    "INSERT INTO event_dedupe (source_id, message_id, claimed_at)"
    " SELECT source_id, message_id, now()"
    " FROM ROWS FROM (json_array_elements_text(%s), json_array_elements_text(%s)) AS u(source_id, message_id)"
    " ON CONFLICT DO NOTHING RETURNING source_id, message_id"
)

COPY_WHILE_SEEN_BEFORE_BELOW = 0.1
"""Transactions claim by COPY first while fewer than this share of the recent claims met a pair
claimed before. A COPY that fails costs about half a COPY more than :data:`CLAIM_SQL` alone (it stops
at the first such pair, in key order), and leaves the rows it inserted as dead tuples, a rollback and
an ERROR line in PostgreSQL's log: COPY first pays on CPU alone below ~1/3, and is kept to the traffic
where such transactions are rare; duplicates in many (an SDK retrying often, a replay) claim with
INSERT."""
_SEEN_BEFORE_WEIGHT = 0.1  # of the last claim in the running share (an exponential average)
_seen_before_share = 0.0

_encode = msgspec.json.encode
_created_partitions: set[tuple[int, int]] = set()

RowsOf = Callable[[Iterable[Event]], Iterable[Event]]
"""What the store passes the events it writes through, as it writes their rows (``rows_of=``): the
pipeline enriches each new event there (``workers/pipeline.py``), so that the chain's Python runs while
PostgreSQL parses the rows already sent. It gets each transaction's events again when that is run
again, and must leave an event it has seen as it is. What it costs runs inside the transaction: its
claims are held that much longer (the warm chain: ~7 µs an event, ~14 ms for 2,000), which a worker
racing for the same pairs waits."""


def row_fields(row: Sequence[Any]) -> dict[str, Any]:
    """An ``events`` row read with :data:`COLUMNS`, by field: its enrichment columns folded back into
    ``enrichment`` (the dict the event was stored with)."""
    fields = dict(zip(COLUMNS[:N_FIELDS], row[:N_FIELDS], strict=True))
    fields["enrichment"] = enrichment_columns.joined(fields["enrichment"], row[N_FIELDS:])
    return fields


def event_row(event: Event, batch_id: str) -> tuple[Any, ...]:
    """The ``events`` row of an event whose text columns are storable (``storable.texts``); a JSON
    value holding a lone surrogate is cleaned first (it could not be encoded). An enrichment value
    bound for a text column is sent as it is: one psycopg cannot send (a NUL, a lone surrogate) fails
    the transaction, which :func:`_store_parts` runs again with it cleaned."""
    try:
        return _event_row(event, batch_id)
    except UnicodeEncodeError:
        storable.json_values(event)
        return _event_row(event, batch_id)


def _event_row(event: Event, batch_id: str) -> tuple[Any, ...]:
    rest, typed = enrichment_columns.split(event.enrichment)
    timestamp, original, sent, received = storable.times_as_text(
        (event.timestamp, event.original_timestamp, event.sent_at, event.received_at)
    )
    return (
        event.id,
        event.source_id,
        event.message_id,
        event.dialect,
        event.dialect_version,
        event.type,
        event.name,
        event.user_id,
        event.anonymous_id,
        event.group_id,
        event.group_ids or None,
        event.previous_id,
        _encode(event.properties).decode(),
        _encode(event.traits).decode(),
        _encode(event.context).decode(),
        _encode(event.integrations).decode(),
        timestamp,
        original,
        sent,
        received,
        "{}" if rest is None else _encode(rest).decode(),
        event.raw,
        batch_id,
        *typed,
    )


Apply = Callable[[psycopg.Connection, list[Event]], Any]
"""What runs on the events a batch stored for the first time, inside the transaction that stored them;
what it returns (when not None) is kept in ``Stored.applied`` once that transaction has committed."""

Outbox = Callable[[psycopg.Connection, list[Event]], list[Any]]
"""What writes the forward intents of the events a batch stored for the first time, inside the
transaction that stored them (``workers/forward/outbox.py``); what it returns is kept in
``Stored.outbox`` once that transaction has committed."""

REFUSED = (psycopg.DataError, psycopg.errors.ProgramLimitExceeded)
"""What PostgreSQL refuses because of a value in one event (not an outage): quarantined, not retried."""


@dataclass(frozen=True, slots=True)
class RefusedEvent:
    """An event PostgreSQL refused: its SQLSTATE and the reason (without PostgreSQL's CONTEXT line,
    which quotes the refused value)."""

    event: Event
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Stored:
    """What one ``store_batch`` did, once committed."""

    stored: list[Event] = field(default_factory=list)
    """The events stored for the first time (the ones to forward), in claim order."""
    refused: list[RefusedEvent] = field(default_factory=list)
    """Events PostgreSQL refused, each alone (the batch's others are stored)."""
    outbox: list[Any] = field(default_factory=list)
    """What ``outbox`` returned in the transactions that committed."""
    applied: list[Any] = field(default_factory=list)
    """What ``apply`` returned (when not None) in the transactions that committed."""

    @property
    def n_stored(self) -> int:
        return len(self.stored)


def store_batch(
    conn: psycopg.Connection,
    batch: PersistBatch,
    apply: Apply | None = None,
    outbox: Outbox | None = None,
    *,
    rows_of: RowsOf | None = None,
) -> Stored:
    """Store the batch's events not stored before; returns those it stored and those PostgreSQL refused.

    ``apply(conn, new_events)``, when given, runs in the same transaction as the dedupe claim, with
    only the events this call stored: its changes commit exactly once per event, however often the
    batch is delivered (a re-run job finds its events claimed and applies nothing). ``outbox(conn,
    new_events)`` runs there too, after ``apply``: the forward intents commit with the events.
    ``rows_of`` (:data:`RowsOf`) sees each new event as its row is written.

    If PostgreSQL refuses a value (a data error), that transaction's events (the batch's, or their part
    of it: :data:`MAX_TRANSACTION_EVENTS`) are stored event by event instead, and each event it still
    refuses is returned in ``refused``: one bad event never holds back the others.
    """
    return store_events(conn, batch.batch_id, batch.events, apply, outbox, rows_of=rows_of)


MAX_TRANSACTION_EVENTS = 2000
"""Most events one batch stores in one transaction; a bigger batch (a job may hold 5,000) is stored in
several, each claiming its own events. Set when profiles were applied in the store transaction: they
take a transaction-level advisory lock per id they touch (two an event for new visitors), and
PostgreSQL's shared lock table is sized for ``max_locks_per_transaction`` (64) x ``max_connections``
(100) locks in all: one 5,000-event transaction of new ids takes 10,000 of them, and beside another
worker's it failed with ``out of shared memory`` on every retry. The profile outbox's applier now
takes those locks, for at most ``profiles_outbox.MAX_EVENTS`` events a transaction; the store keeps
this cap (it bounds what a refused value makes it store again event by event). (Groups of queued jobs
are capped at ``worker_group_events``, 2,000.)"""


def store_events(
    conn: psycopg.Connection,
    batch_id: str,
    events: Sequence[Event],
    apply: Apply | None = None,
    outbox: Outbox | None = None,
    chunk: int = MAX_TRANSACTION_EVENTS,
    *,
    rows_of: RowsOf | None = None,
) -> Stored:
    """:func:`store_batch` for events outside a ``PersistBatch`` (a quarantine replay).

    At most ``chunk`` events a transaction: each is claimed and stored exactly once however the batch
    is cut (an event of two parts is claimed by the first), and a batch run again after a failure
    between two parts stores only what the first run did not."""
    for event in events:
        storable.texts(event)
    result = Stored()
    for start in range(0, len(events), chunk):
        part = events[start : start + chunk]
        try:
            _add(result, *_store(conn, batch_id, part, apply, outbox, rows_of))
            continue
        except REFUSED as exc:
            log.warning(
                "batch_refused batch_id=%s sqlstate=%s; storing event by event", batch_id, exc.sqlstate
            )
        for event in part:
            try:
                _add(result, *_store(conn, batch_id, [event], apply, outbox, rows_of))
            except REFUSED as exc:
                reason = f"{exc.sqlstate}: {exc.diag.message_primary}"
                result.refused.append(RefusedEvent(event, exc.sqlstate or "data_error", reason))
    return result


def _add(result: Stored, new: list[Event], written: list[Any], applied: list[Any]) -> None:
    result.stored.extend(new)
    result.outbox.extend(written)
    result.applied.extend(applied)


GroupOutbox = Callable[[psycopg.Connection, int, list[Event]], list[Any]]
""":data:`Outbox` for :func:`store_group`: also given the index of the batch the new events are of."""


def store_group(
    conn: psycopg.Connection,
    parts: Sequence[tuple[str, Sequence[Event]]],
    apply: Apply | None = None,
    outbox: GroupOutbox | None = None,
    *,
    rows_of: RowsOf | None = None,
) -> list[Stored]:
    """Store several batches, ``(batch_id, events)`` each, in ONE transaction: one dedupe claim, one
    COPY (each row keeps its own batch id), ``apply`` once on all their new events, ``outbox`` per
    batch. Returns one :class:`Stored` per part (``applied`` on the first).

    All or nothing: what PostgreSQL raises (a refused value, a deadlock) is raised with nothing of
    the group stored, and the caller stores each batch alone (:func:`store_batch`), which isolates
    the bad one. Exactly-once as for one batch: an event of two parts is claimed once."""
    for _, events in parts:
        for event in events:
            storable.texts(event)
    news, written, applied = _store_parts(conn, parts, apply, outbox, rows_of)
    return [
        Stored(stored=new, outbox=w, applied=applied if i == 0 else [])
        for i, (new, w) in enumerate(zip(news, written, strict=True))
    ]


def _store(
    conn: psycopg.Connection,
    batch_id: str,
    batch_events: Sequence[Event],
    apply: Apply | None = None,
    outbox: Outbox | None = None,
    rows_of: RowsOf | None = None,
) -> tuple[list[Event], list[Any], list[Any]]:
    """Claim and COPY in one transaction; returns the events stored for the first time, what
    ``outbox`` wrote for them and what ``apply`` returned (in a list: empty when it returned None)."""

    def one_outbox(conn: psycopg.Connection, _part: int, new: list[Event]) -> list[Any]:
        assert outbox is not None
        return outbox(conn, new)

    news, written, applied = _store_parts(
        conn, [(batch_id, batch_events)], apply, one_outbox if outbox is not None else None, rows_of
    )
    return news[0], written[0], applied


def _store_parts(
    conn: psycopg.Connection,
    parts: Sequence[tuple[str, Sequence[Event]]],
    apply: Apply | None,
    outbox: GroupOutbox | None,
    rows_of: RowsOf | None,
) -> tuple[list[list[Event]], list[list[Any]], list[Any]]:
    """Claim and COPY the events of every part in one transaction; per part, the events stored for
    the first time and what ``outbox`` wrote for them; and what ``apply`` returned (a list)."""
    unique: dict[tuple[str, str], tuple[int, Event]] = {}
    for i, (_, part_events) in enumerate(parts):
        for event in part_events:
            unique.setdefault((event.source_id, event.message_id), (i, event))
    if not unique:
        return [[] for _ in parts], [[] for _ in parts], []
    ensure_partitions(conn, {(e.received_at.year, e.received_at.month) for _, e in unique.values()})
    # Claim in key order: two workers claiming overlapping batches then take the index locks in the
    # same order and one waits for the other instead of deadlocking.
    keys = sorted(unique)
    cleaned = False
    while True:
        try:
            if claims_by_copy():
                try:
                    return _claim_and_store(conn, parts, unique, keys, apply, outbox, rows_of, every_new=True)
                except _SeenBefore:
                    pass
            return _claim_and_store(conn, parts, unique, keys, apply, outbox, rows_of, every_new=False)
        except (UnicodeEncodeError, psycopg.DataError) as exc:
            if cleaned or getattr(exc, "sqlstate", None) is not None:  # PostgreSQL refused a value
                raise
        # psycopg could not send an enrichment text column's value (a lone surrogate cannot be
        # encoded, a NUL cannot be in text) and the transaction rolled back: made storable as the
        # canonical text fields are, in the events themselves (what is forwarded is what is stored),
        # then once again. Caught here rather than checked on every row: it costs nothing until then.
        # Every event is passed through rows_of first: those after the one that failed have their
        # enrichment only then, and are cleaned with the others.
        events = [event for _, event in unique.values()]
        for event in events if rows_of is None else rows_of(events):
            storable.enrichment_texts(event, enrichment_columns.TEXTS)
        cleaned = True


def claims_by_copy() -> bool:
    """Whether the next transaction claims by COPY first (:data:`COPY_WHILE_SEEN_BEFORE_BELOW`)."""
    return _seen_before_share < COPY_WHILE_SEEN_BEFORE_BELOW


def _note_claim(seen_before: bool) -> None:
    global _seen_before_share
    _seen_before_share += _SEEN_BEFORE_WEIGHT * (seen_before - _seen_before_share)


class _SeenBefore(Exception):
    """A pair of the transaction was claimed before: its COPY claim failed, and rolled back."""


def _claim(cur: psycopg.Cursor, keys: list[tuple[str, str]], every_new: bool) -> set[tuple[str, str]]:
    """Claim ``keys`` (sorted); returns the pairs claimed now. ``every_new``: by COPY, all or
    :class:`_SeenBefore`; else by ``INSERT ... ON CONFLICT DO NOTHING``, the pairs not claimed before
    (a pair another transaction is claiming waits for it)."""
    if not every_new:
        cur.execute(CLAIM_SQL, (Json([k[0] for k in keys], _encode), Json([k[1] for k in keys], _encode)))
        claimed = set(cur.fetchall())
        _note_claim(len(claimed) < len(keys))
        return claimed
    try:
        with cur.copy(CLAIM_COPY_SQL) as copy:
            write = copy.write_row
            for source_id, message_id in keys:
                write((source_id, message_id, "now"))
    except psycopg.errors.UniqueViolation as exc:  # noted by the INSERT that claims them instead
        raise _SeenBefore from exc
    _note_claim(False)
    return set(keys)


def _claim_and_store(
    conn: psycopg.Connection,
    parts: Sequence[tuple[str, Sequence[Event]]],
    unique: dict[tuple[str, str], tuple[int, Event]],
    keys: list[tuple[str, str]],
    apply: Apply | None,
    outbox: GroupOutbox | None,
    rows_of: RowsOf | None,
    every_new: bool,
) -> tuple[list[list[Event]], list[list[Any]], list[Any]]:
    """:func:`_store_parts`' transaction, its claim made as :func:`_claim` says."""
    news: list[list[Event]] = [[] for _ in parts]
    written: list[list[Any]] = [[] for _ in parts]
    applied: list[Any] = []
    with conn.transaction(), conn.cursor() as cur:
        claimed = _claim(cur, keys, every_new)
        for key, (i, event) in unique.items():
            if key in claimed:
                news[i].append(event)
        if claimed:
            with cur.copy(COPY_SQL) as copy:
                write = copy.write_row
                for (batch_id, _), new in zip(parts, news, strict=True):
                    for event in new if rows_of is None else rows_of(new):
                        write(event_row(event, batch_id))
            every = news[0] if len(parts) == 1 else [event for new in news for event in new]
            if apply is not None and (result := apply(conn, every)) is not None:
                applied.append(result)
            if outbox is not None:
                written = [outbox(conn, i, new) if new else [] for i, new in enumerate(news)]
    return news, written, applied  # committed


def _month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def ensure_partitions(conn: psycopg.Connection, months: set[tuple[int, int]]) -> None:
    """Create the monthly partitions these months need (once per process per month).

    Runs in its own short transaction. If it cannot (the default partition already holds rows of that
    month), rows keep landing in the default partition, which is correct, only slower to scan.
    """
    for year, month in sorted(months - _created_partitions):
        start, end = _month_bounds(year, month)
        name = f"events_y{year:04d}m{month:02d}"
        try:
            with conn.transaction():
                # never queue behind a long query holding the parent: rows go to the default
                # partition meanwhile, and the next batch tries again
                conn.execute("SET LOCAL lock_timeout = '2s'")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events"
                    f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
        except psycopg.errors.CheckViolation:
            # the default partition already holds rows of that month: it keeps them, correctly
            log.warning("partition_skipped partition=%s reason=default_has_rows", name)
        except psycopg.Error as exc:
            log.warning("partition_create_failed partition=%s sqlstate=%s", name, exc.sqlstate)
            continue
        _created_partitions.add((year, month))


def prune_dedupe(conn: psycopg.Connection, days: int, chunk: int = 20_000) -> int:
    """Forget (source, message id) pairs stored more than ``days`` ago, in short transactions; returns
    how many. The window counts from the claim, so an imported historical event is remembered too."""
    total = 0
    while True:
        with conn.transaction():
            cur = conn.execute(
                "DELETE FROM event_dedupe WHERE ctid = ANY(ARRAY(SELECT ctid FROM event_dedupe"
                " WHERE claimed_at < now() - make_interval(days => %s) LIMIT %s))",
                (days, chunk),
            )
        total += cur.rowcount
        if cur.rowcount < chunk:
            return total
