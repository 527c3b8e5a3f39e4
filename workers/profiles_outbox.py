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

- In a ``trackgate worker`` process, a thread (:class:`Applier`) with its own connection. The store
  wakes it after each commit, so it works while the next jobs are being stored: PostgreSQL runs the
  two on two backends and the worker's Python takes turns between them. It also looks every
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
import zlib
from collections.abc import Iterable
from datetime import datetime

import msgspec
import psycopg

from trackgate.schemas import metrics
from trackgate.schemas.event import Event
from trackgate.workers import profiles

log = logging.getLogger(__name__)

PARTITIONS = 16
"""The outbox's partitions. A store transaction writes one row per partition its events fall in; the
events of one person (of ids linked in that transaction: a user id, its anonymous and previous ids)
fall in one. An applier takes rows oldest first and locks their partitions (never waiting): one
applier applies in the order the store wrote, as one worker did before, and several apply different
partitions at once, rarely waiting on each other's id locks."""
MAX_EVENTS = 2000
"""Most events one application takes (rows oldest first, as long as they fit; one row alone may hold
more): two advisory locks an event must fit PostgreSQL's lock table (``store.MAX_TRANSACTION_EVENTS``
says why)."""
SCAN_ROWS = 256
"""Oldest rows one application looks at to choose its own."""
POLL_SECONDS = 1.0
"""How often an idle applier looks for rows nobody woke it for."""
CONFLICT_RETRIES = 5
"""Times an application is run again at once after a deadlock (appliers of two partitions merging the
same profiles)."""
_LOCK_BASE = 0x7472_6B70_0000  # "trkp": a partition's applier lock is this plus its number


class Pending(msgspec.Struct, array_like=True):
    """One row's ``events``: the workspace of each source, and the events as profiles read them."""

    where: dict[str, str]
    events: list[profiles.ProfileEvent]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Pending).decode

INSERT_SQL = "INSERT INTO profile_outbox (partition, n_events, events) VALUES (%s, %s, %s)"
SCAN_SQL = "SELECT id, partition, n_events FROM profile_outbox ORDER BY id LIMIT %s"
TRY_LOCKS_SQL = (  # the partitions whose lock this transaction got now (or held already)
    "SELECT p FROM unnest(%s::int[]) AS p WHERE pg_try_advisory_xact_lock(%s + p)"
)
LOCK_ALL_SQL = "SELECT count(pg_advisory_xact_lock(%s + p)) FROM generate_series(0, %s - 1) AS p"
DELETE_SQL = "DELETE FROM profile_outbox WHERE id = ANY(%s) RETURNING events, clock_timestamp() - created_at"


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


def apply_pending(conn: psycopg.Connection, *, wait: bool = False) -> int:
    """Apply pending rows, oldest first, up to :data:`MAX_EVENTS` events, in one transaction and
    delete them; returns how many rows (0: none pending, or all of them in partitions other appliers
    are applying).

    The transaction locks the partitions of the rows it takes (transaction-level advisory locks,
    tried without waiting): a partition's rows are applied by one applier at a time, oldest first.
    ``wait``: wait for every partition instead (then what other appliers held is applied, and the rest
    is taken): what must not run before the pending work is done (deleting an account's profiles) uses
    it. A deadlock with another applier runs it again at once."""
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            with conn.transaction():
                lags, written = _apply_once(conn, wait)
            break
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            if attempt == CONFLICT_RETRIES:
                raise
            log.warning("profile_outbox_conflict sqlstate=%s attempt=%d", exc.sqlstate, attempt)
    counted = metrics.worker()  # committed
    metrics.observe_all(counted.profile_lag, lags)
    if written is not None:
        counted.profile_updates.labels("profile").inc(written.n_profiles)
        counted.profile_updates.labels("group").inc(written.n_groups)
    return len(lags)


def _apply_once(conn: psycopg.Connection, wait: bool) -> tuple[list[float], profiles.Written | None]:
    """:func:`apply_pending`'s transaction: (each applied row's lag in seconds, what ``apply`` wrote)."""
    if wait:
        conn.execute(LOCK_ALL_SQL, (_LOCK_BASE, PARTITIONS))
    rows = conn.execute(SCAN_SQL, (SCAN_ROWS,)).fetchall()
    if not rows:
        return [], None
    if wait:
        held = set(range(PARTITIONS))
    else:  # the partitions of the rows that would fit, locked in one statement
        wanted: list[int] = []
        n_events = 0
        for _, partition, n in rows:
            if n_events >= MAX_EVENTS:
                break
            n_events += n
            if partition not in wanted:
                wanted.append(partition)
        held = {p for (p,) in conn.execute(TRY_LOCKS_SQL, (wanted, _LOCK_BASE)).fetchall()}
    taken: list[int] = []
    n_events = 0
    for row_id, partition, n in rows:
        if partition not in held:
            continue  # another applier is applying that partition: its later rows wait for it
        if taken and n_events + n > MAX_EVENTS:
            break
        taken.append(row_id)
        n_events += n
    if not taken:
        return [], None
    # rows another applier applied between the scan and the locks are gone: RETURNING says which are not
    deleted = conn.execute(DELETE_SQL, (taken,)).fetchall()
    where: dict[str, str] = {}
    events: list[profiles.ProfileEvent] = []
    for blob, _ in deleted:
        pending = _decode(blob)
        where.update(pending.where)
        events.extend(pending.events)
    return [lag.total_seconds() for _, lag in deleted], profiles.apply(conn, events, where)


def apply_all(conn: psycopg.Connection, *, wait: bool = False) -> int:
    """:func:`apply_pending` until nothing is left to take; returns how many rows."""
    total = 0
    while n := apply_pending(conn, wait=wait):
        total += n
    return total


def pending(conn: psycopg.Connection) -> tuple[int, int, datetime | None]:
    """(rows, events, the oldest row's time) waiting to be applied."""
    row = conn.execute(
        "SELECT count(*), coalesce(sum(n_events), 0), min(created_at) FROM profile_outbox"
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


# --- who applies ----------------------------------------------------------------------------------


class Applier(threading.Thread):
    """Applies pending rows on its own connection while its worker stores the next jobs; woken by
    :func:`after_commit`, else every :data:`POLL_SECONDS`. :meth:`stop` applies what is left first."""

    def __init__(self, database_url: str, connect_timeout: float = 5.0):
        super().__init__(name="trackgate-profile-applier", daemon=True)
        self.database_url = database_url
        self.connect_timeout = max(1, round(connect_timeout))
        self.woken = threading.Event()
        self.stopping = threading.Event()
        self.rounds = threading.Condition()
        self.started_rounds = 0
        self.ended_rounds = 0
        self.conn: psycopg.Connection | None = None

    def wake(self) -> None:
        self.woken.set()

    def connect(self) -> None:
        """Open the connection now (else on the first round): its backend then exists from the start."""
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.database_url, connect_timeout=self.connect_timeout)

    def run(self) -> None:
        while True:
            self.woken.wait(POLL_SECONDS)
            self.woken.clear()
            stopping = self.stopping.is_set()
            with self.rounds:
                self.started_rounds += 1
                this_round = self.started_rounds
            try:
                self.connect()
                assert self.conn is not None
                apply_all(self.conn)
            except Exception as exc:  # noqa: BLE001 - the thread outlives a bad turn; rows stay pending
                log.warning("profile_applier_failed error=%s: %s", type(exc).__name__, str(exc)[:200])
                if self.conn is not None and self.conn.broken:
                    self.conn = None
                if not stopping:
                    self.stopping.wait(POLL_SECONDS)
            finally:
                with self.rounds:
                    self.ended_rounds = this_round
                    self.rounds.notify_all()
            if stopping:
                break
        if self.conn is not None:
            self.conn.close()

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until a round that started after this call has ended (everything committed before
        it is applied, unless that round failed); False if ``timeout`` passed first."""
        with self.rounds:
            target = self.started_rounds + 1
            self.wake()
            return self.rounds.wait_for(lambda: self.ended_rounds >= target, timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Apply what is pending, then end the thread (at most ``timeout`` seconds)."""
        self.stopping.set()
        self.woken.set()
        self.join(timeout)


_applier: Applier | None = None


def start_applier(database_url: str, connect_timeout: float = 5.0, *, connect: bool = False) -> Applier:
    """This process's applier thread (a worker process): :func:`after_commit` wakes it from now on.
    ``connect``: open its connection before the thread starts (raises if it cannot)."""
    global _applier
    applier = Applier(database_url, connect_timeout)
    if connect:
        applier.connect()
    applier.start()
    _applier = applier
    return applier


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
