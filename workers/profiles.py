"""Identity state: profiles, the ids that resolve to them, groups and memberships, from stored events.

``apply(conn, events)`` runs inside the transaction that stored ``events`` for the first time
(``store.store_batch(conn, batch, apply=apply)``): the profile changes commit or roll back together
with the dedupe claim, so a job that is run again, whose events are claimed already, changes nothing a
second time (an increment is counted once).

The model (the canonical conventions decide what each event type means):

- A **workspace** is the scope of identity. Every source belongs to one (``sources.workspace``,
  default ``default``): a user id names the same person in every source of a workspace, whatever its
  dialect. Profiles are keyed by (workspace, id) through ``profile_ids``.
- An event's ``user_id``, ``anonymous_id`` and (alias) ``previous_id`` resolve to one profile. An event
  with both a user id and an anonymous id links them: an anonymous profile is merged into the user's;
  an anonymous id that already belongs to another *identified* profile (a shared device) stays where it
  is, and only an explicit alias merges two identified profiles.
- Traits are merged per trait by event time (a late event never overwrites a newer value); counters by
  increment/decrement (``properties {"property": <dot path>, "value": <number, default 1>}``), kept
  flat by path; ``properties.mrr``/``arr`` overwrite by event time; ``properties.revenue`` (major units)
  is summed per ``properties.currency`` (upper-cased; USD when absent, as Segment's spec assumes).
- first seen is the earliest event; last seen the latest event not sent with ``context.active=false``.
- Groups: group events (and identify ``traits.company``) set group traits by event time; any event
  of a profile naming a group (``group_id``, ``group_ids``, ``traits.company.id``) makes a membership.
- Events flagged ``enrichment.is_bot`` or ``enrichment.is_excluded`` change no state.

Concurrency: every id and every group key this batch may create or change is locked first with
transaction-level advisory locks taken in one sorted order; then the profiles those ids resolve to are
locked with ``SELECT ... ORDER BY id FOR UPDATE``, and the resolution is repeated until it is stable
(a concurrent merge can move an id to another profile while we wait). State is then read, changed in
Python and written back while those locks are held, so no update is lost. A deadlock that a racing
merge can still cause is detected by PostgreSQL; the caller retries the transaction.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb, set_json_loads

from schemas.event import Event

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE = "default"
DEFAULT_CURRENCY = "USD"

_dumps = msgspec.json.Encoder(decimal_format="number").encode
_loads = msgspec.json.Decoder(float_hook=Decimal).decode


def id_key(value: str) -> bytes:
    """The lookup key of an id or group id: its SHA-256 (ids of any length fit a B-tree)."""
    return hashlib.sha256(value.encode()).digest()


def _lock_id(kind: bytes, workspace: str, key: bytes) -> int:
    digest = hashlib.sha256(kind + workspace.encode() + b"\0" + key).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _when(moment: datetime) -> str:
    """An event time as fixed-width UTC ISO text: compares correctly as a string."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _number(value: Any) -> Decimal | None:
    """A finite number from a JSON value (numbers, numeric strings); None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def _skipped(event: Event) -> bool:
    flags = event.enrichment
    return bool(flags) and bool(flags.get("is_bot") or flags.get("is_excluded"))


def _company(event: Event) -> tuple[str | None, dict]:
    """Identify ``traits.company`` ({id, name, ...}): the group id it names and its group traits."""
    company = event.traits.get("company") if event.type == "identify" else None
    if not isinstance(company, dict):
        return None, {}
    raw_id = company.get("id")
    group_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    return group_id or None, {k: v for k, v in company.items() if k != "id"}


def _group_ids(event: Event) -> list[str]:
    """Every group the event's profile is a member of, by the event."""
    found = [event.group_id] if event.group_id else []
    found.extend(event.group_ids)
    company_id, _ = _company(event)
    if company_id and not event.group_id:
        found.append(company_id)
    return list(dict.fromkeys(g for g in found if g))


def _group_traits(event: Event) -> tuple[str, dict] | None:
    """The group whose traits this event sets, with the traits (group events; identify company)."""
    if event.type == "group" and event.group_id:
        return event.group_id, event.traits
    company_id, traits = _company(event)
    group_id = event.group_id or company_id
    if group_id and traits:
        return group_id, traits
    return None


# --- in-memory state of the profiles and groups one batch touches ---------------------------------


@dataclass(eq=False)
class Profile:
    id: uuid.UUID
    workspace: str
    first_seen: datetime
    user_id: str | None = None
    traits: dict = field(default_factory=dict)
    trait_times: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    revenue: dict = field(default_factory=dict)
    mrr: Decimal | None = None
    mrr_at: datetime | None = None
    arr: Decimal | None = None
    arr_at: datetime | None = None
    last_seen: datetime | None = None
    stored: bool = False
    """A row exists in the database (else it is inserted at the end)."""
    merged_into: Profile | None = None

    def final(self) -> Profile:
        profile = self
        while profile.merged_into is not None:
            profile = profile.merged_into
        return profile

    def seen(self, moment: datetime, active: bool) -> None:
        if moment < self.first_seen:
            self.first_seen = moment
        if active and (self.last_seen is None or moment > self.last_seen):
            self.last_seen = moment

    def absorb(self, other: Profile) -> None:
        """Merge ``other`` into this profile: traits by time, counters and revenue summed."""
        for name, value in other.traits.items():
            when = other.trait_times.get(name, "")
            if when > self.trait_times.get(name, ""):
                self.traits[name] = value
                self.trait_times[name] = when
        for path, value in other.counters.items():
            self.counters[path] = self.counters.get(path, 0) + value
        for currency, value in other.revenue.items():
            self.revenue[currency] = self.revenue.get(currency, 0) + value
        if other.mrr_at is not None and (self.mrr_at is None or other.mrr_at > self.mrr_at):
            self.mrr, self.mrr_at = other.mrr, other.mrr_at
        if other.arr_at is not None and (self.arr_at is None or other.arr_at > self.arr_at):
            self.arr, self.arr_at = other.arr, other.arr_at
        self.first_seen = min(self.first_seen, other.first_seen)
        if other.last_seen is not None and (self.last_seen is None or other.last_seen > self.last_seen):
            self.last_seen = other.last_seen
        self.user_id = self.user_id or other.user_id
        other.merged_into = self


@dataclass(eq=False)
class Group:
    workspace: str
    key: bytes
    group_id: str
    first_seen: datetime
    traits: dict = field(default_factory=dict)
    trait_times: dict = field(default_factory=dict)
    stored: bool = False
    write: bool = False


def _merge_traits(traits: dict, times: dict, new: dict, when: str) -> None:
    for name, value in new.items():
        if when >= times.get(name, ""):
            traits[name] = value
            times[name] = when


class _Batch:
    """Applies a batch's events, in event-time order, to the state read under lock; then writes it."""

    def __init__(self, links: dict[tuple[str, bytes], Profile], groups: dict[tuple[str, bytes], Group]):
        self.links = links
        self.new_links: dict[tuple[str, bytes], tuple[str, str]] = {}  # -> (id, kind)
        self.profiles: dict[uuid.UUID, Profile] = {p.id: p for p in links.values()}
        self.groups = groups
        self.members: dict[tuple[str, bytes, uuid.UUID], list] = {}  # -> [profile, first, last]

    # identity resolution

    def _lookup(self, workspace: str, value: str) -> Profile | None:
        profile = self.links.get((workspace, id_key(value)))
        return profile.final() if profile is not None else None

    def _link(self, workspace: str, value: str, kind: str, profile: Profile) -> None:
        key = (workspace, id_key(value))
        if key not in self.links:
            self.links[key] = profile
            self.new_links[key] = (value, kind)

    def _create(self, workspace: str, moment: datetime) -> Profile:
        profile = Profile(id=uuid.uuid4(), workspace=workspace, first_seen=moment)
        self.profiles[profile.id] = profile
        return profile

    def resolve(self, workspace: str, event: Event) -> Profile | None:
        user_id, anonymous_id = event.user_id, event.anonymous_id
        if event.type == "alias" and user_id and event.previous_id:
            current = self._lookup(workspace, user_id)
            previous = self._lookup(workspace, event.previous_id)
            if current is not None and previous is not None and current is not previous:
                current.absorb(previous)
            profile = current or previous or self._create(workspace, event.timestamp)
            self._link(workspace, user_id, "user", profile)
            self._link(workspace, event.previous_id, "previous", profile)
            profile.user_id = user_id
        elif user_id:
            profile = self._lookup(workspace, user_id)
            if profile is None:
                device = self._lookup(workspace, anonymous_id) if anonymous_id else None
                # an anonymous profile becomes the user's; a device of another user does not
                profile = device if device is not None and device.user_id is None else None
                profile = profile or self._create(workspace, event.timestamp)
                self._link(workspace, user_id, "user", profile)
                profile.user_id = profile.user_id or user_id
        elif anonymous_id:
            profile = self._lookup(workspace, anonymous_id) or self._create(workspace, event.timestamp)
        else:
            return None
        if anonymous_id:
            device = self._lookup(workspace, anonymous_id)
            if device is None:
                self._link(workspace, anonymous_id, "anonymous", profile)
            elif device is not profile and device.user_id is None:
                profile.absorb(device)
        return profile

    # applying one event

    def apply(self, workspace: str, event: Event) -> None:
        moment = event.timestamp
        when = _when(moment)
        group = _group_traits(event)
        if group is not None:
            found = self.groups[(workspace, id_key(group[0]))]
            _merge_traits(found.traits, found.trait_times, group[1], when)
            found.first_seen = min(found.first_seen, moment)
            found.write = True
        profile = self.resolve(workspace, event)
        if profile is None:
            return
        profile.seen(moment, event.context.active is not False)
        if event.type == "identify" and event.traits:
            _merge_traits(profile.traits, profile.trait_times, event.traits, when)
        elif event.type in ("increment", "decrement"):
            self._count(profile, event)
        for group_id in _group_ids(event):
            key = (workspace, id_key(group_id), profile.id)
            member = self.members.get(key)
            if member is None:
                self.members[key] = [profile, moment, moment]
            else:
                member[1], member[2] = min(member[1], moment), max(member[2], moment)
        properties = event.properties
        if properties and event.type not in ("increment", "decrement"):
            self._money(profile, properties, moment)

    @staticmethod
    def _count(profile: Profile, event: Event) -> None:
        path = event.properties.get("property")
        raw = event.properties.get("value")
        value = Decimal(1) if raw is None else _number(raw)
        if not isinstance(path, str) or not path or value is None:
            log.info("counter_skipped event_id=%s type=%s", event.id, event.type)
            return
        if event.type == "decrement":
            value = -value
        profile.counters[path] = profile.counters.get(path, 0) + value

    @staticmethod
    def _money(profile: Profile, properties: dict, moment: datetime) -> None:
        revenue = _number(properties.get("revenue"))
        if revenue is not None:
            currency = properties.get("currency")
            currency = currency.strip().upper() if isinstance(currency, str) and currency.strip() else None
            currency = currency or DEFAULT_CURRENCY
            profile.revenue[currency] = profile.revenue.get(currency, 0) + revenue
        mrr = _number(properties.get("mrr"))
        if mrr is not None and (profile.mrr_at is None or moment >= profile.mrr_at):
            profile.mrr, profile.mrr_at = mrr, moment
        arr = _number(properties.get("arr"))
        if arr is not None and (profile.arr_at is None or moment >= profile.arr_at):
            profile.arr, profile.arr_at = arr, moment

    # writing back

    def write(self, cur: psycopg.Cursor) -> None:
        alive = [p for p in self.profiles.values() if p.merged_into is None]
        cur.executemany(INSERT_PROFILE_SQL, [_profile_row(p) for p in alive if not p.stored])
        groups = sorted((g for g in self.groups.values() if g.write), key=lambda g: (g.workspace, g.key))
        cur.executemany(
            UPSERT_GROUP_SQL,
            [
                (
                    g.workspace,
                    g.key,
                    g.group_id,
                    Jsonb(g.traits, _dumps),
                    Jsonb(g.trait_times, _dumps),
                    g.first_seen,
                )
                for g in groups
            ],
        )
        members: dict[tuple[str, bytes, uuid.UUID], list] = {}
        for (workspace, group_key, _), (profile, first, last) in self.members.items():
            target = profile.final()
            key = (workspace, group_key, target.id)
            if key in members:
                members[key][0] = min(members[key][0], first)
                members[key][1] = max(members[key][1], last)
            else:
                members[key] = [first, last]
        # groups only named by memberships, not stored yet: created without traits
        blank = [self.groups[(w, k)] for w, k in sorted({(w, k) for w, k, _ in members})]
        cur.executemany(
            INSERT_BLANK_GROUP_SQL,
            [(g.workspace, g.key, g.group_id, g.first_seen) for g in blank if not g.stored and not g.write],
        )
        for dying in (p for p in self.profiles.values() if p.merged_into is not None and p.stored):
            target = dying.final().id
            cur.execute(MOVE_IDS_SQL, (target, dying.id))
            cur.execute(MOVE_MEMBERS_SQL, (target, dying.id))
            cur.execute("DELETE FROM profiles WHERE id = %s", (dying.id,))
        cur.executemany(UPDATE_PROFILE_SQL, [_profile_row(p)[2:] + (p.id,) for p in alive if p.stored])
        cur.executemany(
            UPSERT_ID_SQL,
            [
                (workspace, key, value, kind, self.links[(workspace, key)].final().id)
                for (workspace, key), (value, kind) in sorted(self.new_links.items())
            ],
        )
        cur.executemany(
            UPSERT_MEMBER_SQL,
            [(w, k, pid, first, last) for (w, k, pid), (first, last) in sorted(members.items())],
        )


def _profile_row(p: Profile) -> tuple:
    return (
        p.id,
        p.workspace,
        p.user_id,
        Jsonb(p.traits, _dumps),
        Jsonb(p.trait_times, _dumps),
        Jsonb(p.counters, _dumps),
        Jsonb(p.revenue, _dumps),
        p.mrr,
        p.mrr_at,
        p.arr,
        p.arr_at,
        p.first_seen,
        p.last_seen,
    )


_PROFILE_COLUMNS = (
    "user_id, traits, trait_times, counters, revenue, mrr, mrr_at, arr, arr_at, first_seen, last_seen"
)
INSERT_PROFILE_SQL = (
    f"INSERT INTO profiles (id, workspace, {_PROFILE_COLUMNS})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
UPDATE_PROFILE_SQL = (
    f"UPDATE profiles SET ({_PROFILE_COLUMNS}, updated_at)"
    " = (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) WHERE id = %s"
)
SELECT_PROFILES_SQL = (
    f"SELECT id, workspace, {_PROFILE_COLUMNS} FROM profiles WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
)
RESOLVE_SQL = (
    "SELECT i.workspace, i.key, i.profile_id FROM profile_ids i"
    " JOIN unnest(%s::text[], %s::bytea[]) AS w (workspace, key) USING (workspace, key)"
)
SELECT_GROUPS_SQL = (
    "SELECT g.workspace, g.key, g.group_id, g.traits, g.trait_times, g.first_seen FROM groups g"
    " JOIN unnest(%s::text[], %s::bytea[]) AS w (workspace, key) USING (workspace, key)"
)
UPSERT_GROUP_SQL = (
    "INSERT INTO groups (workspace, key, group_id, traits, trait_times, first_seen)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (workspace, key) DO UPDATE SET"
    " traits = EXCLUDED.traits, trait_times = EXCLUDED.trait_times,"
    " first_seen = LEAST(groups.first_seen, EXCLUDED.first_seen), updated_at = now()"
)
INSERT_BLANK_GROUP_SQL = (
    "INSERT INTO groups (workspace, key, group_id, first_seen) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (workspace, key) DO NOTHING"
)
MOVE_IDS_SQL = "UPDATE profile_ids SET profile_id = %s WHERE profile_id = %s"
MOVE_MEMBERS_SQL = (
    "INSERT INTO group_members (workspace, group_key, profile_id, first_seen, last_seen)"
    " SELECT workspace, group_key, %s, first_seen, last_seen FROM group_members WHERE profile_id = %s"
    " ON CONFLICT (workspace, group_key, profile_id) DO UPDATE SET"
    " first_seen = LEAST(group_members.first_seen, EXCLUDED.first_seen),"
    " last_seen = GREATEST(group_members.last_seen, EXCLUDED.last_seen)"
)
UPSERT_ID_SQL = (
    "INSERT INTO profile_ids (workspace, key, id, kind, profile_id) VALUES (%s, %s, %s, %s, %s)"
    " ON CONFLICT (workspace, key) DO UPDATE SET profile_id = EXCLUDED.profile_id"
)
UPSERT_MEMBER_SQL = (
    "INSERT INTO group_members (workspace, group_key, profile_id, first_seen, last_seen)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (workspace, group_key, profile_id) DO UPDATE SET"
    " first_seen = LEAST(group_members.first_seen, EXCLUDED.first_seen),"
    " last_seen = GREATEST(group_members.last_seen, EXCLUDED.last_seen)"
)
LOCK_SQL = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k"


# --- the entry point ------------------------------------------------------------------------------


def workspaces(conn: psycopg.Connection, source_ids: set[str]) -> dict[str, str]:
    rows = conn.execute("SELECT id, workspace FROM sources WHERE id = ANY(%s)", (list(source_ids),))
    return dict(rows.fetchall())


def apply(conn: psycopg.Connection, events: list[Event]) -> None:
    """Apply events stored for the first time to profile and group state, in the caller's transaction."""
    events = [e for e in events if not _skipped(e)]
    if not events:
        return
    events.sort(key=lambda e: (e.timestamp, e.id))
    where = workspaces(conn, {e.source_id for e in events})
    plan = [(where.get(e.source_id, DEFAULT_WORKSPACE), e) for e in events]

    ids: set[tuple[str, bytes]] = set()
    group_names: dict[tuple[str, bytes], tuple[str, datetime]] = {}
    group_writes: set[tuple[str, bytes]] = set()
    for workspace, event in plan:
        for value in (
            event.user_id,
            event.anonymous_id,
            event.previous_id if event.type == "alias" else None,
        ):
            if value:
                ids.add((workspace, id_key(value)))
        written = _group_traits(event)
        named = _group_ids(event) if (event.user_id or event.anonymous_id) else []
        if written is not None:
            named = [*named, written[0]]
            group_writes.add((workspace, id_key(written[0])))
        for group_id in named:
            key = (workspace, id_key(group_id))
            if key not in group_names or event.timestamp < group_names[key][1]:
                group_names[key] = (group_id, event.timestamp)

    with conn.cursor() as cur:
        set_json_loads(_loads, cur)
        # groups that exist and whose traits this batch does not change need no lock (never deleted)
        existing = _read_groups(cur, set(group_names))
        locked_groups = group_writes | (set(group_names) - set(existing))
        lock_ids = sorted(
            {_lock_id(b"id", w, k) for w, k in ids} | {_lock_id(b"group", w, k) for w, k in locked_groups}
        )
        cur.execute(LOCK_SQL, (lock_ids,))
        groups = {**existing, **_read_groups(cur, locked_groups)}
        for key, (group_id, first) in group_names.items():
            if key not in groups:
                groups[key] = Group(workspace=key[0], key=key[1], group_id=group_id, first_seen=first)
        batch = _Batch(_lock_profiles(cur, ids), groups)
        for workspace, event in plan:
            batch.apply(workspace, event)
        batch.write(cur)


def _read_groups(cur: psycopg.Cursor, keys: set[tuple[str, bytes]]) -> dict[tuple[str, bytes], Group]:
    if not keys:
        return {}
    workspace_list, key_list = zip(*keys, strict=True)
    cur.execute(SELECT_GROUPS_SQL, (list(workspace_list), list(key_list)))
    return {
        (w, bytes(k)): Group(w, bytes(k), group_id, first, traits, times, stored=True)
        for w, k, group_id, traits, times, first in cur.fetchall()
    }


def _lock_profiles(cur: psycopg.Cursor, ids: set[tuple[str, bytes]]) -> dict[tuple[str, bytes], Profile]:
    """Lock the profiles ``ids`` resolve to and return the links; repeated until the links are stable
    (a merge committed while we waited may have moved an id to a profile we have not locked)."""
    if not ids:
        return {}
    workspace_list, key_list = (list(x) for x in zip(*ids, strict=True))
    locked: dict[uuid.UUID, Profile] = {}
    while True:
        cur.execute(RESOLVE_SQL, (workspace_list, key_list))
        links = {(w, bytes(k)): pid for w, k, pid in cur.fetchall()}
        missing = set(links.values()) - set(locked)
        if not missing:
            return {key: locked[pid] for key, pid in links.items()}
        cur.execute(SELECT_PROFILES_SQL, (sorted(missing),))
        for row in cur.fetchall():
            locked[row[0]] = Profile(
                id=row[0],
                workspace=row[1],
                user_id=row[2],
                traits=row[3],
                trait_times=row[4],
                counters=row[5],
                revenue=row[6],
                mrr=row[7],
                mrr_at=row[8],
                arr=row[9],
                arr_at=row[10],
                first_seen=row[11],
                last_seen=row[12],
                stored=True,
            )
