"""Identity state: profiles, the ids that resolve to them, groups and memberships, from stored events.

``apply(conn, events)`` applies events stored for the first time (as :class:`ProfileEvent`, what it
reads of them) in the caller's transaction. The pipeline runs it from the profile outbox
(``workers/profiles_outbox.py``): the store transaction writes the events' row there with the dedupe
claim, and the transaction that applies the row deletes it, so a job that is run again, whose events
are claimed already, changes nothing a second time (an increment is counted once).

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
locked with ``SELECT ... ORDER BY id FOR UPDATE``; if one of them was merged away while we waited for
its lock (its ids moved to another profile), the ids are resolved again and the new profiles locked.
State is then read, changed in Python and written back while those locks are held: no update is lost.
A deadlock that a racing merge can still cause is detected by PostgreSQL; the caller retries the
transaction.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Json, set_json_loads
from uuid_utils import uuid7

from trackgate.schemas.event import Event
from trackgate.workers import pg_arrays
from trackgate.workers.storable import times_as_text

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE = "default"
DEFAULT_CURRENCY = "USD"

_dumps = msgspec.json.Encoder(decimal_format="number").encode
_loads = msgspec.json.Decoder(float_hook=Decimal).decode
_blake2b = hashlib.blake2b
_sha256 = hashlib.sha256

# Rows travel to PostgreSQL as one JSON document per statement (json_to_recordset): one parameter,
# encoded by msgspec, parsed by PostgreSQL in C. Ids are looked up by sha256(id) (``key`` columns).
# Profile ids are handled as text here (no uuid objects to build per row).
_KEY = "sha256(convert_to({}, 'UTF8'))"


def _key(value: str) -> bytes:
    """An id's or a group id's ``key``: sha256 of its UTF-8 (the columns' lookup key)."""
    return _sha256(value.encode()).digest()


@functools.lru_cache(maxsize=256)
def _space(kind: bytes, workspace: str) -> int:
    """What sets one kind of lock of one workspace apart (ids ``i``, groups ``g``): 64 bits of blake2b."""
    return int.from_bytes(_blake2b(kind + workspace.encode(), digest_size=8).digest(), "big", signed=True)


def _lock_id(kind: bytes, workspace: str, key: bytes) -> int:
    """A 64-bit advisory lock key for an id or a group of a workspace (stable across processes): the
    first 64 bits of its ``key`` (already a hash) XOR its kind's and workspace's. One hash an id, not
    two: the key is needed anyway to look the id up."""
    return int.from_bytes(key[:8], "big", signed=True) ^ _space(kind, workspace)


def _when(moment: datetime) -> str:
    """An event time as fixed-width UTC ISO text: compares correctly as a string."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _number(value: Any) -> Decimal | None:
    """A finite number from a JSON value (numbers, numeric strings); None for anything else."""
    if value is None or value is True or value is False:
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


class ProfileEvent(msgspec.Struct, array_like=True, gc=False):
    """What :func:`apply` reads of an event (:func:`essentials`), and nothing else: the profile outbox
    keeps a list of these (JSON arrays, ~170 bytes an event; an event's ``raw``, context and most
    properties are not needed), made and read back at ~1 and ~3 µs an event (an ``Event`` took 6
    and 11). Rows written by one version are read by the next (a rolling upgrade): add a field only
    at the end, with a default, or a pending row no longer reads (it is then dropped, and logged)."""

    id: str
    source_id: str
    type: str
    user_id: str | None
    anonymous_id: str | None
    group_id: str | None
    group_ids: list[str]
    previous_id: str | None
    properties: dict[str, Any]
    """Only what counters (``property``, ``value``) or money (``revenue``, ``currency``, ``mrr``,
    ``arr``) read."""
    traits: dict[str, Any]
    """Identify and group events' only."""
    active: bool
    """False when sent with ``context.active=false`` (last seen does not move)."""
    timestamp: datetime


def _company(event: ProfileEvent) -> tuple[str | None, dict]:
    """Identify ``traits.company`` ({id, name, ...}): the group id it names and its group traits."""
    company = event.traits.get("company") if event.type == "identify" and event.traits else None
    if not isinstance(company, dict):
        return None, {}
    raw_id = company.get("id")
    group_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    return group_id or None, {k: v for k, v in company.items() if k != "id"}


def _groups_of(event: ProfileEvent) -> tuple[tuple[str, dict] | None, list[str]]:
    """(the group whose traits the event sets, with the traits; the groups its profile is a member of).

    Group traits come from group events and identify ``traits.company``; memberships from any event
    of a profile that names a group (``group_id``, ``group_ids``, ``traits.company.id``)."""
    company_id, company_traits = _company(event)
    if event.group_id is None and not event.group_ids and company_id is None and not company_traits:
        return None, []
    written: tuple[str, dict[str, Any]] | None = None
    group_or_company = event.group_id or company_id
    if event.type == "group" and event.group_id:
        written = (event.group_id, event.traits)
    elif group_or_company and company_traits:
        written = (group_or_company, company_traits)
    named = [event.group_id] if event.group_id else []
    named.extend(event.group_ids)
    if company_id and not event.group_id:
        named.append(company_id)
    if not (event.user_id or event.anonymous_id):
        named = []
    return written, list(dict.fromkeys(g for g in named if g))


# --- in-memory state of the profiles and groups one batch touches ---------------------------------


class Profile(msgspec.Struct, eq=False, omit_defaults=True):
    """A profile's state. Encoded as is into the JSON rows of the writes (None and defaults omitted
    read back as NULL / the column's value; ``stored`` is ignored)."""

    id: str
    workspace: str
    first_seen: datetime
    user_id: str | None = None
    traits: dict = {}
    trait_times: dict = {}
    counters: dict = {}
    revenue: dict = {}
    mrr: Decimal | None = None
    mrr_at: datetime | None = None
    arr: Decimal | None = None
    arr_at: datetime | None = None
    last_seen: datetime | None = None
    stored: bool = False
    """A row exists in the database (else it is inserted at the end)."""
    merged_into: Profile | None = None
    """Set once merged into another profile (such a profile is never written as a row)."""

    def final(self) -> Profile:
        profile = self
        while profile.merged_into is not None:
            profile = profile.merged_into
        return profile

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


Step = tuple[str, ProfileEvent, "tuple[str, dict] | None", list[str]]
"""One event to apply: (workspace, event, the group traits it writes, the groups it names)."""


class _Batch:
    """Applies a batch's events, in event-time order, to the state read under lock; then writes it."""

    def __init__(
        self,
        links: dict[tuple[str, str], Profile],
        groups: dict[tuple[str, str], Group],
        keys: dict[tuple[str, str], bytes],
    ):
        self.links = links
        self.keys = keys  # every id the batch may link -> its key
        self.new_links: dict[tuple[str, str], str] = {}  # -> kind
        self.profiles: dict[str, Profile] = {p.id: p for p in links.values()}
        self.groups = groups
        self.members: dict[tuple[str, str, str], list] = {}  # -> [profile, first, last]

    # identity resolution

    def _lookup(self, workspace: str, value: str) -> Profile | None:
        profile = self.links.get((workspace, value))
        return profile.final() if profile is not None else None

    def _link(self, workspace: str, value: str, kind: str, profile: Profile) -> None:
        key = (workspace, value)
        if key not in self.links:
            self.links[key] = profile
            self.new_links[key] = kind

    def _create(self, workspace: str, moment: datetime) -> Profile:
        # UUIDv7: new profiles append to the primary key's index
        profile = Profile(id=str(uuid7()), workspace=workspace, first_seen=moment)
        self.profiles[profile.id] = profile
        return profile

    def resolve(self, workspace: str, event: ProfileEvent) -> Profile | None:
        user_id, anonymous_id = event.user_id, event.anonymous_id
        profile: Profile | None
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

    def apply(self, step: Step) -> None:
        workspace, event, written, named = step
        moment = event.timestamp
        if written is not None:
            group = self.groups[(workspace, written[0])]
            _merge_traits(group.traits, group.trait_times, written[1], _when(moment))
            group.first_seen = min(group.first_seen, moment)
            group.write = True
        profile = self.resolve(workspace, event)
        if profile is None:
            return
        if moment < profile.first_seen:
            profile.first_seen = moment
        if event.active and (profile.last_seen is None or moment > profile.last_seen):
            profile.last_seen = moment
        kind = event.type
        if kind == "identify":
            if event.traits:
                _merge_traits(profile.traits, profile.trait_times, event.traits, _when(moment))
        elif kind == "increment" or kind == "decrement":
            self._count(profile, event)
        elif event.properties:
            self._money(profile, event.properties, moment)
        for group_id in named:
            key = (workspace, group_id, profile.id)
            member = self.members.get(key)
            if member is None:
                self.members[key] = [profile, moment, moment]
            else:
                member[1], member[2] = min(member[1], moment), max(member[2], moment)

    @staticmethod
    def _count(profile: Profile, event: ProfileEvent) -> None:
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
        if "revenue" in properties:
            revenue = _number(properties["revenue"])
            if revenue is not None:
                currency = properties.get("currency")
                currency = currency.strip().upper() if isinstance(currency, str) else ""
                currency = currency or DEFAULT_CURRENCY
                profile.revenue[currency] = profile.revenue.get(currency, 0) + revenue
        if "mrr" in properties:
            mrr = _number(properties["mrr"])
            if mrr is not None and (profile.mrr_at is None or moment >= profile.mrr_at):
                profile.mrr, profile.mrr_at = mrr, moment
        if "arr" in properties:
            arr = _number(properties["arr"])
            if arr is not None and (profile.arr_at is None or moment >= profile.arr_at):
                profile.arr, profile.arr_at = arr, moment

    # writing back

    def insert(self, cur: psycopg.Cursor) -> None:
        """COPY the new profiles and the new ids (plain inserts: every new id is advisory-locked and
        was not found under that lock, every new profile has a fresh id). COPY cannot run in pipeline
        mode, so this is sent before :meth:`write`; no other write depends on these rows."""
        fresh = [p for p in self.profiles.values() if p.merged_into is None and not p.stored]
        # most new profiles have only ids and times (a first track or page): their row takes the
        # columns' defaults for the rest (no empty jsonb to format and parse four times a row)
        plain: list[Profile] = []
        rich: list[Profile] = []
        for p in fresh:
            (rich if p.traits or p.counters or p.revenue or p.mrr_at or p.arr_at else plain).append(p)
        if plain:
            times = iter(times_as_text([t for p in plain for t in (p.first_seen, p.last_seen)]))
            with cur.copy(COPY_PLAIN_PROFILES_SQL) as copy:
                write = copy.write_row
                for p in plain:
                    write((p.id, p.workspace, p.user_id, next(times), next(times)))
        if rich:
            times = iter(
                times_as_text([t for p in rich for t in (p.mrr_at, p.arr_at, p.first_seen, p.last_seen)])
            )
            with cur.copy(COPY_PROFILES_SQL) as copy:
                write = copy.write_row
                for p in rich:
                    write(
                        (
                            p.id,
                            p.workspace,
                            p.user_id,
                            _jsonb(p.traits),
                            _jsonb(p.trait_times),
                            _jsonb(p.counters),
                            _jsonb(p.revenue),
                            p.mrr,
                            next(times),
                            p.arr,
                            next(times),
                            next(times),
                            next(times),
                        )
                    )
        if self.new_links:
            links, keys = self.links, self.keys
            # in key order: each insertion lands next to the last in the primary key's index
            # (10-30% less of the server's time for this COPY than in event order)
            rows = sorted((keys[pair], pair, kind) for pair, kind in self.new_links.items())
            with cur.copy(COPY_IDS_SQL) as copy:
                write = copy.write_row
                for key, (w, value), kind in rows:
                    write((w, key, value, kind, links[(w, value)].final().id))

    def write(self, cur: psycopg.Cursor) -> Written:
        alive = [p for p in self.profiles.values() if p.merged_into is None]
        written = sorted(
            (g for g in self.groups.values() if g.write), key=lambda g: (g.workspace, g.group_id)
        )
        _send(
            cur,
            UPSERT_GROUPS_SQL,
            [
                {
                    "workspace": g.workspace,
                    "group_id": g.group_id,
                    "traits": g.traits,
                    "trait_times": g.trait_times,
                    "first_seen": g.first_seen,
                }
                for g in written
            ],
        )
        members: dict[tuple[str, str, str], list] = {}
        for (workspace, group_id, _), (profile, first, last) in self.members.items():
            key = (workspace, group_id, profile.final().id)
            if key in members:
                members[key][0] = min(members[key][0], first)
                members[key][1] = max(members[key][1], last)
            else:
                members[key] = [first, last]
        # groups only named by memberships and not stored yet: created without traits
        blank = [self.groups[key] for key in sorted({(w, g) for w, g, _ in members})]
        created = [
            {"workspace": g.workspace, "group_id": g.group_id, "first_seen": g.first_seen}
            for g in blank
            if not g.stored and not g.write
        ]
        _send(cur, INSERT_BLANK_GROUPS_SQL, created)
        for dying in (p for p in self.profiles.values() if p.merged_into is not None and p.stored):
            target = dying.final().id
            cur.execute(MOVE_IDS_SQL, (target, dying.id))
            cur.execute(MOVE_MEMBERS_SQL, (target, dying.id))
            cur.execute("DELETE FROM group_members WHERE profile_id = %s::uuid", (dying.id,))
            cur.execute("DELETE FROM profiles WHERE id = %s::uuid", (dying.id,))
        _send(cur, UPDATE_PROFILES_SQL, [p for p in alive if p.stored])
        _send(
            cur,
            UPSERT_MEMBERS_SQL,
            [
                {"workspace": w, "group_id": g, "profile_id": pid, "first_seen": first, "last_seen": last}
                for (w, g, pid), (first, last) in sorted(members.items())
            ],
        )
        return Written(n_profiles=len(alive), n_groups=len(written) + len(created))


def _jsonb(value: dict) -> str:
    return _dumps(value).decode() if value else "{}"


def _send(cur: psycopg.Cursor, sql: str, rows: list) -> None:
    if rows:
        cur.execute(sql, (Json(rows, _dumps),))


_PROFILE_RECORD = (
    "id uuid, workspace text, user_id text, traits jsonb, trait_times jsonb, counters jsonb, revenue jsonb,"
    " mrr numeric, mrr_at timestamptz, arr numeric, arr_at timestamptz, first_seen timestamptz,"
    " last_seen timestamptz"
)
_PROFILE_COLUMNS = (
    "user_id, traits, trait_times, counters, revenue, mrr, mrr_at, arr, arr_at, first_seen, last_seen"
)
_JSONB_COLUMNS = ("traits", "trait_times", "counters", "revenue")  # omitted when empty
_PROFILE_VALUES = ", ".join(
    f"COALESCE(v.{c}, '{{}}')" if c in _JSONB_COLUMNS else f"v.{c}"
    for c in (c.strip() for c in _PROFILE_COLUMNS.split(","))
)
COPY_PROFILES_SQL = f"COPY profiles (id, workspace, {_PROFILE_COLUMNS}) FROM STDIN"
COPY_PLAIN_PROFILES_SQL = "COPY profiles (id, workspace, user_id, first_seen, last_seen) FROM STDIN"
UPDATE_PROFILES_SQL = (
    f"UPDATE profiles p SET ({_PROFILE_COLUMNS}, updated_at) = ({_PROFILE_VALUES}, now())"
    f" FROM json_to_recordset(%s) AS v ({_PROFILE_RECORD}) WHERE p.id = v.id"
)
SELECT_PROFILES_SQL = (
    f"SELECT id::text, workspace, {_PROFILE_COLUMNS} FROM profiles"
    " WHERE id = ANY(%b::uuid[]) ORDER BY id FOR UPDATE"
)
RESOLVE_SQL = (  # one workspace's ids by their keys (a binary bytea[]): one sorted index scan
    "SELECT key, profile_id::text FROM profile_ids WHERE workspace = %s AND key = ANY(%b::bytea[])"
)
SELECT_GROUPS_SQL = (
    "SELECT w.workspace, w.id, g.traits, g.trait_times, g.first_seen"
    " FROM json_to_recordset(%s) AS w (workspace text, id text)"
    f" JOIN groups g ON g.workspace = w.workspace AND g.key = {_KEY.format('w.id')}"
)
UPSERT_GROUPS_SQL = (
    "INSERT INTO groups (workspace, key, group_id, traits, trait_times, first_seen)"
    f" SELECT workspace, {_KEY.format('group_id')}, group_id, traits, trait_times, first_seen"
    " FROM json_to_recordset(%s)"
    " AS v (workspace text, group_id text, traits jsonb, trait_times jsonb, first_seen timestamptz)"
    " ON CONFLICT (workspace, key) DO UPDATE SET"
    " traits = EXCLUDED.traits, trait_times = EXCLUDED.trait_times,"
    " first_seen = LEAST(groups.first_seen, EXCLUDED.first_seen), updated_at = now()"
)
INSERT_BLANK_GROUPS_SQL = (
    "INSERT INTO groups (workspace, key, group_id, first_seen)"
    f" SELECT workspace, {_KEY.format('group_id')}, group_id, first_seen"
    " FROM json_to_recordset(%s) AS v (workspace text, group_id text, first_seen timestamptz)"
    " ON CONFLICT (workspace, key) DO NOTHING"
)
MOVE_IDS_SQL = "UPDATE profile_ids SET profile_id = %s::uuid WHERE profile_id = %s::uuid"
MOVE_MEMBERS_SQL = (
    "INSERT INTO group_members (workspace, group_key, profile_id, first_seen, last_seen)"
    " SELECT workspace, group_key, %s::uuid, first_seen, last_seen FROM group_members"
    " WHERE profile_id = %s::uuid"
    " ON CONFLICT (workspace, group_key, profile_id) DO UPDATE SET"
    " first_seen = LEAST(group_members.first_seen, EXCLUDED.first_seen),"
    " last_seen = GREATEST(group_members.last_seen, EXCLUDED.last_seen)"
)
COPY_IDS_SQL = (  # new ids only: each is advisory-locked and was not found under that lock
    "COPY profile_ids (workspace, key, id, kind, profile_id) FROM STDIN"  # key: sha256 of the UTF-8 id
)
UPSERT_MEMBERS_SQL = (
    "INSERT INTO group_members (workspace, group_key, profile_id, first_seen, last_seen)"
    f" SELECT workspace, {_KEY.format('group_id')}, profile_id, first_seen, last_seen"
    " FROM json_to_recordset(%s) AS v"
    " (workspace text, group_id text, profile_id uuid, first_seen timestamptz, last_seen timestamptz)"
    " ON CONFLICT (workspace, group_key, profile_id) DO UPDATE SET"
    " first_seen = LEAST(group_members.first_seen, EXCLUDED.first_seen),"
    " last_seen = GREATEST(group_members.last_seen, EXCLUDED.last_seen)"
)
LOCK_SQL = "SELECT count(pg_advisory_xact_lock(k::bigint)) FROM json_array_elements_text(%s) AS k"


# --- the entry point ------------------------------------------------------------------------------

_MONEY = ("revenue", "currency", "mrr", "arr")
_COUNTER = ("property", "value")


def essentials(event: Event) -> ProfileEvent | None:
    """What :func:`apply` reads of ``event``; None for an event that changes no state (bot or
    excluded traffic, or no id and no group to change). Kept next to :func:`apply` so that the two
    change together; every profile test runs its events through it (the outbox)."""
    kind = event.type
    if _skipped(event) or not (
        event.user_id
        or event.anonymous_id
        or event.previous_id
        or event.group_id
        or event.group_ids
        or kind == "identify"  # traits.company names a group even without an id
    ):
        return None
    properties = event.properties
    if properties:
        keys = _COUNTER if kind == "increment" or kind == "decrement" else _MONEY
        properties = {k: properties[k] for k in keys if k in properties}
    return ProfileEvent(
        event.id,
        event.source_id,
        kind,
        event.user_id,
        event.anonymous_id,
        event.group_id,
        event.group_ids,
        event.previous_id,
        properties,
        event.traits if kind == "identify" or kind == "group" else {},
        event.context.active is not False,
        event.timestamp,
    )


def workspaces(conn: psycopg.Connection, source_ids: set[str]) -> dict[str, str]:
    rows = conn.execute("SELECT id, workspace FROM sources WHERE id = ANY(%s)", (list(source_ids),))
    return dict(rows.fetchall())


@dataclass(frozen=True, slots=True)
class Written:
    """What one :func:`apply` wrote: profiles (new or changed) and groups whose traits changed."""

    n_profiles: int
    n_groups: int


def event_order(event: ProfileEvent) -> tuple[datetime, str]:
    """The order :func:`apply` applies events in: event time, then id."""
    return event.timestamp, event.id


def apply_events(conn: psycopg.Connection, events: list[Event]) -> Written | None:
    """:func:`apply` of whole events (what a test or the bench holds), in the caller's transaction."""
    return apply(conn, [e for e in map(essentials, events) if e is not None])


def apply(
    conn: psycopg.Connection,
    events: list[ProfileEvent],
    where: dict[str, str] | None = None,
    *,
    ordered: bool = False,
) -> Written | None:
    """Apply events stored for the first time to profile and group state, in the caller's transaction;
    None when no event touches a profile. ``where``: each source's workspace, when read before (the
    outbox, ``workers/profiles_outbox.py``, keeps the one a source had when its events were stored);
    else read now. A source in neither is of the default workspace. ``ordered``: ``events`` are in
    :func:`event_order` already (the outbox sorts them once, to split them in order)."""
    if not events:
        return None
    if not ordered:
        events = sorted(events, key=event_order)
    if where is None:
        where = workspaces(conn, {e.source_id for e in events})

    steps: list[Step] = []
    ids: set[tuple[str, str]] = set()
    group_first: dict[tuple[str, str], datetime] = {}
    group_writes: set[tuple[str, str]] = set()
    for event in events:
        workspace = where.get(event.source_id, DEFAULT_WORKSPACE)
        written, named = _groups_of(event)
        steps.append((workspace, event, written, named))
        if event.user_id:
            ids.add((workspace, event.user_id))
        if event.anonymous_id:
            ids.add((workspace, event.anonymous_id))
        if event.previous_id and event.type == "alias":
            ids.add((workspace, event.previous_id))
        if written is not None:
            group_writes.add((workspace, written[0]))
            named = [*named, written[0]]
        for group_id in named:
            key = (workspace, group_id)
            if key not in group_first or event.timestamp < group_first[key]:
                group_first[key] = event.timestamp

    with conn.cursor() as cur:
        set_json_loads(_loads, cur)
        pg_arrays.register(cur)
        # groups that exist and whose traits this batch does not change need no lock (never deleted)
        existing = _read_groups(cur, set(group_first))
        locked_groups = group_writes | (set(group_first) - set(existing))
        keys = {pair: _key(pair[1]) for pair in ids}
        lock_ids = sorted(
            {_lock_id(b"i", w, key) for (w, _), key in keys.items()}
            | {_lock_id(b"g", w, _key(g)) for w, g in locked_groups}
        )
        if lock_ids:
            cur.execute(LOCK_SQL, (Json(lock_ids, _dumps),))
        groups = {**existing, **_read_groups(cur, locked_groups)}
        for (workspace, group_id), first in group_first.items():
            if (workspace, group_id) not in groups:
                groups[(workspace, group_id)] = Group(workspace, group_id, first)
        batch = _Batch(_lock_profiles(cur, ids, keys), groups, keys)
        for step in steps:
            batch.apply(step)
        batch.insert(cur)
        with conn.pipeline():  # the writes need no answers: sent back to back, one round trip
            return batch.write(cur)


def _pairs(keys: set[tuple[str, str]]) -> Json:
    return Json([{"workspace": w, "id": value} for w, value in keys], _dumps)


def _read_groups(cur: psycopg.Cursor, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Group]:
    if not keys:
        return {}
    cur.execute(SELECT_GROUPS_SQL, (_pairs(keys),))
    return {
        (w, group_id): Group(w, group_id, first, traits, times, stored=True)
        for w, group_id, traits, times, first in cur.fetchall()
    }


def _lock_profiles(
    cur: psycopg.Cursor, ids: set[tuple[str, str]], keys: dict[tuple[str, str], bytes]
) -> dict[tuple[str, str], Profile]:
    """Lock the profiles ``ids`` resolve to and return the links.

    Ids move to another profile only when their profile is merged away (and deleted), by a transaction
    holding that profile's lock. So once every profile the links name is locked and was found, the
    links are current; if one was gone (merged while we waited for its lock), they are read again."""
    if not ids:
        return {}
    # per workspace: the ids by key (sha256 of the UTF-8 id, computed here once: the new ones are
    # COPYed with it), sent as one binary bytea[]
    by_workspace: dict[str, dict[bytes, str]] = {}
    for w, value in ids:
        by_workspace.setdefault(w, {})[keys[(w, value)]] = value
    queries = [(w, pg_arrays.bytea_array(list(found)), found) for w, found in by_workspace.items()]
    locked: dict[str, Profile] = {}
    while True:
        links: dict[tuple[str, str], str] = {}
        for w, param, found in queries:
            cur.execute(RESOLVE_SQL, (w, param))
            links.update(((w, found[key]), pid) for key, pid in cur.fetchall())
        missing = set(links.values()) - set(locked)
        if not missing:
            return {key: locked[pid] for key, pid in links.items()}
        cur.execute(SELECT_PROFILES_SQL, (pg_arrays.uuid_array(sorted(missing)),))
        rows = cur.fetchall()
        for row in rows:
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
        if len(rows) == len(missing):
            return {key: locked[pid] for key, pid in links.items()}
