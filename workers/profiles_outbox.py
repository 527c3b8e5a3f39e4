"""Profiles applied after the store, in bulk: the outbox of profile work.

The store transaction does not change profiles any more. It writes, per partition its events fall
in (:data:`PARTITIONS`), one ``profile_outbox`` row holding what profiles read of the events it stored
for the first time (``profiles.ProfileEvent``, a twentieth of an event) and the workspace of each of
their sources (:func:`write`). An applier then takes the oldest rows, applies their events to
profiles and deletes the rows, in one transaction (:func:`apply_pending`): a row's events change
profiles exactly once, however often a job runs or a worker dies, because the row leaves in the
transaction that applied it. An applier locks the partitions of the rows it takes, so a partition's
rows are applied by one applier at a time, oldest first; the profiles' own id locks
(``workers/profiles.py``) keep appliers of different partitions from losing an update.

Who applies:

- Beside a ``trackgate worker``: an :class:`Applier` thread, in a child process of the worker's
  (``workers/applier_process.py``, the default) or in the worker's own process
  (``TRACKGATE_PROFILE_APPLIER=thread``), on a pool of its process. The store wakes it after each
  commit, so it works while the next jobs are being stored: PostgreSQL runs the two on two backends,
  and in a child process their Python does not take turns under one GIL. It also looks every
  :data:`POLL_SECONDS` for rows nobody woke it for (a worker that died after its commit).
- Anywhere else (a replay from the CLI, a test calling ``pipeline.persist``): the caller applies
  what is pending right after its commit (:func:`after_commit`), so profiles are current when it
  returns.

Profiles therefore lag their events by about one applier transaction (tens to hundreds of
milliseconds) while the worker keeps up; ``trackgate_profile_lag_seconds`` measures it, from the
outbox row (written just before the store's commit) to the commit that applied it.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import msgspec
import psycopg

from trackgate.schemas import metrics
from trackgate.schemas.event import Event
from trackgate.workers import profiles
from trackgate.workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)

PARTITIONS = 16
"""The outbox's partitions. A store transaction writes one row per partition its events fall in; the
events of one person (of ids linked in that transaction: a user id, its anonymous and previous ids)
fall in one. An application takes the fewest partitions that fill it, in the order of their oldest
row, each one's rows oldest first, and locks them without waiting (skipping to the next partition when
another applier holds one): several appliers apply different partitions at once, rarely waiting on
each other's id locks. There is no order across partitions."""
MAX_EVENTS = 2000
"""Most events one application takes (rows oldest first, as long as they fit; one row alone may hold
more): two advisory locks an event must fit PostgreSQL's lock table (``store.MAX_TRANSACTION_EVENTS``
says why)."""
SCAN_ROWS = 256
"""Oldest rows one application looks at to choose its own."""
POLL_SECONDS = 1.0
"""How often an idle applier looks for rows nobody woke it for."""
CONFLICT_RETRIES = 5
"""Times an application is run again at once after a conflict with another applier (:func:`raced`)."""
CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
"""What another applier's transaction causes, never one event: a deadlock (appliers of two partitions
merging the same profiles), or a serialization failure. So is :func:`raced`."""
_LOCK_BASE = 0x7472_6B70_0000  # "trkp": a partition's applier lock is this plus its number


class Pending(msgspec.Struct, array_like=True):
    """One row's ``events``: the workspace of each source, and the events as profiles read them."""

    where: dict[str, str]
    events: list[profiles.ProfileEvent]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Pending).decode

INSERT_SQL = "INSERT INTO profile_outbox (partition, n_events, events) VALUES (%s, %s, %s)"
SCAN_SQL = (
    "SELECT id, partition, n_events FROM profile_outbox"
    " WHERE (%s::bigint IS NULL OR id <= %s) AND partition <> ALL(%s::int[])"
    " ORDER BY id LIMIT %s"
)
TRY_LOCKS_SQL = (  # the partitions whose lock this transaction got now (or held already)
    "SELECT p FROM unnest(%s::int[]) AS p WHERE pg_try_advisory_xact_lock(%s + p)"
)
LOCK_ALL_SQL = "SELECT count(pg_advisory_xact_lock(%s + p)) FROM generate_series(0, %s - 1) AS p"
DELETE_SQL = (
    "DELETE FROM profile_outbox WHERE id = ANY(%s)"
    " RETURNING id, n_events, events, clock_timestamp() - created_at"
)


def raced(exc: BaseException) -> bool:
    """Whether ``exc`` is another applier's conflict: one of :data:`CONFLICTS`, or an id that another
    applier created after this one found it missing (a duplicate on ``profile_ids``' primary key: the
    id locks prevent it between appliers of one version, not between two versions taking different
    locks during an upgrade). Run again, the application finds what the other one committed. A
    duplicate on any other constraint is not assumed to be a race: it goes the way of a refused value."""
    if isinstance(exc, CONFLICTS):
        return True
    return isinstance(exc, psycopg.errors.UniqueViolation) and exc.diag.constraint_name == "profile_ids_pkey"


def _partition(key: str) -> int:
    return zlib.crc32(key.encode()) % PARTITIONS


def partitions(events: list[profiles.ProfileEvent]) -> list[int]:
    """Each event's partition: the events whose ids are linked in ``events`` (one person's user,
    anonymous and previous ids: a union-find over them) share the partition of one of those ids."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while (up := parent.setdefault(key, key)) != key:
            parent[key] = parent.setdefault(up, up)  # halve the path
            key = parent[key]
        return key

    keys: list[str] = []
    for event in events:
        ids = [i for i in (event.user_id, event.anonymous_id, event.previous_id) if i]
        first = ids[0] if ids else event.group_id or ""
        top = root(first)
        for other in ids[1:]:
            other_top = root(other)
            if other_top != top:
                parent[other_top] = top
        keys.append(first)
    return [_partition(root(key)) for key in keys]


def write(conn: psycopg.Connection, events: Iterable[Event]) -> int:
    """In the store transaction: the outbox rows for ``events`` (stored for the first time), one per
    partition they fall in; how many events they hold (0: none changes a profile, no row written)."""
    kept = [e for e in map(profiles.essentials, events) if e is not None]
    if not kept:
        return 0
    parts: dict[int, list[profiles.ProfileEvent]] = {}
    for event, partition in zip(kept, partitions(kept), strict=True):
        parts.setdefault(partition, []).append(event)
    where = profiles.workspaces(conn, {e.source_id for e in kept})
    rows = [(p, len(part), _encode(Pending(where, part))) for p, part in sorted(parts.items())]
    with conn.cursor() as cur:
        cur.executemany(INSERT_SQL, rows)  # one round trip (pipelined)
    return len(kept)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one application committed."""

    lags: list[float]
    """Each applied row's seconds from its writing to now."""
    written: profiles.Written | None
    refused: int
    """Events whose profile change PostgreSQL refused (or whose row could not be read): they are
    stored, their profile change is not made."""


def apply_pending(conn: psycopg.Connection, *, wait: bool = False, up_to: int | None = None) -> int:
    """Apply pending rows, oldest first, up to :data:`MAX_EVENTS` events, in one transaction and
    delete them; returns how many rows (0: none pending, or all of them in partitions other appliers
    are applying).

    The transaction locks the partitions of the rows it takes (transaction-level advisory locks,
    tried without waiting): a partition's rows are applied by one applier at a time, oldest first.
    ``wait``: wait for every partition instead (then what other appliers held is applied, and the rest
    is taken); ``up_to``: only rows whose id is at most this. What must not run before the work
    pending now is done (deleting an account's profiles) uses both. A conflict with another applier
    (:func:`raced`) runs it again at once, up to :data:`CONFLICT_RETRIES` times; then a deadlock is
    raised and the rows stay pending, and an id found missing that is there on insert is refused as
    that event's fault (:func:`_apply_isolating`).

    An event whose profile change cannot be made (PostgreSQL refuses a value, Python's decimals
    overflow) does not hold the others back: the application is split in halves down to it
    (:func:`_apply_isolating`), and it is logged and counted (``trackgate_profile_events_refused_total``);
    a row that cannot be read is dropped the same way. Either way the event itself stays stored."""
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            with conn.transaction():
                applied = _apply_once(conn, wait, up_to, last=attempt == CONFLICT_RETRIES)
            break
        except psycopg.Error as exc:
            if not raced(exc) or attempt == CONFLICT_RETRIES:
                raise
            log.warning("profile_outbox_conflict sqlstate=%s attempt=%d", exc.sqlstate, attempt)
    counted = metrics.worker()  # committed
    metrics.observe_all(counted.profile_lag, applied.lags)
    if applied.written is not None:
        counted.profile_updates.labels("profile").inc(applied.written.n_profiles)
        counted.profile_updates.labels("group").inc(applied.written.n_groups)
    if applied.refused:
        counted.profile_refused.inc(applied.refused)
    return len(applied.lags)


_NOTHING = Applied([], None, 0)


def _apply_once(conn: psycopg.Connection, wait: bool, up_to: int | None, *, last: bool = False) -> Applied:
    """:func:`apply_pending`'s transaction (``last``: its last attempt, see :func:`_apply_isolating`)."""
    # its commit need not wait for the WAL flush: a crash that loses it loses the rows' deletion with
    # it (one transaction), so they are applied again, once; the store's commits keep theirs
    conn.execute("SET LOCAL synchronous_commit = off")
    if wait:
        conn.execute(LOCK_ALL_SQL, (_LOCK_BASE, PARTITIONS))
    taken: list[int] = []
    skipped: list[int] = []  # partitions other appliers hold: scanned past
    while not taken:
        rows = conn.execute(SCAN_SQL, (up_to, up_to, skipped, SCAN_ROWS)).fetchall()
        if not rows:
            return _NOTHING
        taken = _choose(conn, rows, wait, skipped)
        if not taken and len(rows) < SCAN_ROWS:
            return _NOTHING  # every pending row is in a partition another applier holds
    # rows another applier applied between the scan and the locks are gone: RETURNING says which are not
    deleted = conn.execute(DELETE_SQL, (taken,)).fetchall()
    where: dict[str, str] = {}
    events: list[profiles.ProfileEvent] = []
    unreadable = 0
    for row_id, n, blob, _ in deleted:
        try:
            pending = _decode(blob)
        except msgspec.DecodeError as exc:
            log.error("profile_outbox_row_unreadable id=%s n_events=%s error=%s; dropped", row_id, n, exc)
            unreadable += n
            continue
        where.update(pending.where)
        events.extend(pending.events)
    written, refused = _apply_isolating(conn, sorted(events, key=profiles.event_order), where, last)
    return Applied([lag.total_seconds() for *_, lag in deleted], written, refused + unreadable)


def _choose(
    conn: psycopg.Connection, rows: list[tuple[int, int, int]], wait: bool, skipped: list[int]
) -> list[int]:
    """The rows one application takes of ``rows`` (id, partition, n_events; oldest first), their
    partitions locked: the fewest partitions that fill it, in the order of their oldest row, each one's
    oldest rows that fit (a partition none of whose rows would fit is not locked). A partition another
    applier holds is added to ``skipped`` and the next one taken instead (``wait``: all are held)."""
    by_partition: dict[int, list[tuple[int, int]]] = {}
    for row_id, partition, n in rows:
        by_partition.setdefault(partition, []).append((row_id, n))
    parts = list(by_partition.items())
    taken: list[int] = []
    got = i = 0
    while i < len(parts):
        # the next partitions that would fill the rest, each with its oldest rows that fit
        batch: list[tuple[int, list[int], int]] = []
        planned = got
        while i < len(parts) and planned < MAX_EVENTS:
            partition, its_rows = parts[i]
            prefix: list[int] = []
            size = 0
            for row_id, n in its_rows:
                if (planned or prefix) and planned + n > MAX_EVENTS:
                    break
                prefix.append(row_id)
                size += n
                planned += n
            if not prefix:
                break  # reconsidered if a partition of this batch is held by another applier
            batch.append((partition, prefix, size))
            i += 1
        if not batch:
            break
        # locked in one statement, without waiting (``wait``: all are locked already)
        wanted = [p for p, _, _ in batch]
        locked = set(wanted) if wait else {p for (p,) in conn.execute(TRY_LOCKS_SQL, (wanted, _LOCK_BASE))}
        for partition, prefix, size in batch:
            if partition in locked:
                taken.extend(prefix)
                got += size
            else:
                skipped.append(partition)
        if got == planned:
            break  # everything planned was locked: full, or no partition left
    return taken


def _apply_isolating(
    conn: psycopg.Connection, events: list[profiles.ProfileEvent], where: dict[str, str], last: bool = False
) -> tuple[profiles.Written | None, int]:
    """``profiles.apply`` of ``events`` (in event order) in a savepoint. If one of them cannot be
    applied (a value PostgreSQL refuses, a number Python's decimals overflow on), the two halves are
    applied apart, in order, and so on down to the event that fails, which is logged and counted:
    ~2 log2(n) savepoints a bad event, not one an event (many subtransactions slow every snapshot of
    the server). Returns what was written and how many events were refused. A conflict or a lost
    connection is raised (the whole transaction is retried, or the rows stay pending). ``last``: the
    transaction's last attempt, where an id found missing that is there on insert (:func:`raced`) is
    no longer taken for a race but for the event's fault: refused, so that a lookup that keeps missing
    an id cannot hold every other event of the partition back."""
    try:
        with conn.transaction():
            return profiles.apply(conn, events, where, ordered=True), 0
    except _PASSED_ON:
        raise
    except Exception as exc:  # noqa: BLE001 - what one event causes must not block every other one
        if raced(exc) and not (last and isinstance(exc, psycopg.errors.UniqueViolation)):
            raise
        if len(events) == 1:
            event = events[0]
            log.warning(
                "profile_event_refused event_id=%s source_id=%s error=%s: %s",
                event.id,
                event.source_id,
                getattr(exc, "sqlstate", None) or type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
            return None, 1
        log.info("profile_outbox_split n_events=%d error=%s", len(events), type(exc).__name__)
    half = len(events) // 2
    first, refused_first = _apply_isolating(conn, events[:half], where, last)
    second, refused_second = _apply_isolating(conn, events[half:], where, last)
    written = [w for w in (first, second) if w is not None]
    total = (
        profiles.Written(sum(w.n_profiles for w in written), sum(w.n_groups for w in written))
        if written
        else None
    )
    return total, refused_first + refused_second


_PASSED_ON = (
    *CONFLICTS,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
"""Not one event's fault (nor is what :func:`raced` says): the caller retries the transaction, or the rows
stay pending."""


def apply_all(conn: psycopg.Connection, *, wait: bool = False, up_to: int | None = None) -> int:
    """:func:`apply_pending` until nothing is left to take; returns how many rows."""
    total = 0
    while n := apply_pending(conn, wait=wait, up_to=up_to):
        total += n
    return total


def apply_written_before(conn: psycopg.Connection) -> int:
    """Apply every row written before this call (waiting for other appliers' partitions), and none
    written after it: what must not run before the pending work is done (deleting an account's
    profiles) calls this, and returns even while ingest keeps writing rows."""
    with conn.transaction():
        # waits for the store transactions writing rows now (and for appliers deleting them): their
        # rows count as written before
        conn.execute("LOCK TABLE profile_outbox IN SHARE MODE")
        row = conn.execute("SELECT max(id) FROM profile_outbox").fetchone()
    if row is None or row[0] is None:
        return 0
    return apply_all(conn, wait=True, up_to=row[0])


def pending(conn: psycopg.Connection) -> tuple[int, int, datetime | None]:
    """(rows, events, the oldest row's time) waiting to be applied."""
    row = conn.execute(
        "SELECT count(*), coalesce(sum(n_events), 0), min(created_at) FROM profile_outbox"
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


# --- who applies ----------------------------------------------------------------------------------


class Applier(threading.Thread):
    """Applies pending rows while its worker stores the next jobs, on a connection of the worker's
    pool (``WorkerRuntime``, as the forward outbox's ``Sweeper``: the pool replaces a broken one);
    woken by :func:`after_commit`, else every :data:`POLL_SECONDS`. :meth:`stop` applies what is left
    first."""

    def __init__(self, rt: WorkerRuntime):
        super().__init__(name="trackgate-profile-applier", daemon=True)
        self.rt = rt
        self.woken = threading.Event()
        self.stopping = threading.Event()
        self.rounds = threading.Condition()
        self.started_rounds = 0
        self.ended_rounds = 0
        self.finished = False

    def wake(self) -> None:
        self.woken.set()

    def run(self) -> None:
        try:
            self._rounds()
        finally:
            with self.rounds:
                self.finished = True
                self.rounds.notify_all()

    def _rounds(self) -> None:
        while True:
            self.woken.wait(POLL_SECONDS)
            self.woken.clear()
            stopping = self.stopping.is_set()
            with self.rounds:
                self.started_rounds += 1
                this_round = self.started_rounds
            try:
                with self.rt.pool.connection() as conn:
                    try:
                        apply_all(conn)
                    finally:
                        _observe_backlog(conn)
            except Exception as exc:  # noqa: BLE001 - the thread outlives a bad turn; rows stay pending
                log.warning("profile_applier_failed error=%s: %s", type(exc).__name__, str(exc)[:200])
                if not stopping:
                    self.stopping.wait(POLL_SECONDS)
            finally:
                with self.rounds:
                    self.ended_rounds = this_round
                    self.rounds.notify_all()
            if stopping:
                return

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until a round that started after this call has ended (everything committed before
        it is applied, unless that round failed); False if ``timeout`` passed first or the thread
        ended before such a round."""
        with self.rounds:
            target = self.started_rounds + 1
            self.wake()
            self.rounds.wait_for(lambda: self.ended_rounds >= target or self.finished, timeout)
            return self.ended_rounds >= target

    def stop(self, timeout: float | None = None) -> None:
        """Apply what is pending, then end the thread (at most ``timeout`` seconds)."""
        self.stopping.set()
        self.woken.set()
        self.join(timeout)


def _observe_backlog(conn: psycopg.Connection) -> None:
    """The backlog gauges, after each round (applied or failed): a stuck outbox shows."""
    if conn.closed:
        return
    try:
        with conn.transaction():
            rows, _, oldest = pending(conn)
    except psycopg.Error:
        return
    counted = metrics.worker()
    counted.profile_outbox_rows.set(rows)
    counted.profile_outbox_oldest.set(0.0 if oldest is None else max(0.0, time.time() - oldest.timestamp()))


class Woken(Protocol):
    """What :func:`after_commit` wakes: an :class:`Applier` thread, or the worker's applier process
    (``workers/applier_process.py``)."""

    def wake(self) -> None: ...

    def is_alive(self) -> bool: ...

    def stop(self, timeout: float | None = None) -> None: ...


_applier: Woken | None = None


def start_applier(rt: WorkerRuntime) -> Applier:
    """This process's applier thread (a worker process): :func:`after_commit` wakes it from now on."""
    applier = Applier(rt)
    applier.start()
    use_applier(applier)
    return applier


def use_applier(applier: Woken) -> None:
    """From now on :func:`after_commit` wakes ``applier`` (and :func:`stop_applier` stops it)."""
    global _applier
    _applier = applier


def stop_applier(timeout: float | None = None) -> None:
    global _applier
    applier, _applier = _applier, None
    if applier is not None:
        applier.stop(timeout)


def after_commit(conn: psycopg.Connection, n_written: int) -> None:
    """After a store transaction committed (``n_written``: the events of its outbox row): wake this
    process's applier; or, none running here, apply what is pending now on ``conn`` (rows written by
    this call, or left by one that failed: a failure here is logged, the rows stay pending for the
    next call or an applier)."""
    if _applier is not None and _applier.is_alive():
        if n_written:
            _applier.wake()
        return
    try:
        apply_all(conn)
    except psycopg.Error as exc:
        log.warning("profile_outbox_apply_failed error=%s: %s", type(exc).__name__, str(exc)[:200])
