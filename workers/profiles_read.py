"""Reading profiles (``trackgate profiles show``): plain SQL over the tables ``workers/profiles.py``
writes, next to their writer. An id's lookup key is its SHA-256, computed here in SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import set_json_loads

_loads = msgspec.json.Decoder(float_hook=Decimal).decode

_PROFILE_SQL = (
    "SELECT p.id, p.workspace, p.user_id, p.traits, p.counters, p.revenue, p.mrr, p.arr,"
    " p.first_seen, p.last_seen, p.created_at, p.updated_at"
    " FROM profile_ids i JOIN profiles p ON p.id = i.profile_id"
    " WHERE i.workspace = ANY(%s) AND i.key = sha256(convert_to(%s, 'UTF8'))"
)
_IDS_SQL = "SELECT id, kind FROM profile_ids WHERE profile_id = %s ORDER BY created_at, kind DESC, id"
_GROUPS_SQL = (
    "SELECT g.group_id, g.type, g.name, g.traits, m.first_seen, m.last_seen"
    " FROM group_members m JOIN groups g ON g.workspace = m.workspace AND g.key = m.group_key"
    " WHERE m.profile_id = %s ORDER BY g.group_id"
)
_WORKSPACES_SQL = "SELECT DISTINCT workspace FROM sources UNION SELECT 'default'"
_PROFILE_KEYS = (
    "profile_id",
    "workspace",
    "user_id",
    "traits",
    "counters",
    "revenue",
    "mrr",
    "arr",
    "first_seen",
    "last_seen",
    "created_at",
    "updated_at",
)


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


class AmbiguousProfile(Exception):
    """The id has a profile in more than one workspace: the caller must name one."""

    def __init__(self, workspaces: list[str]):
        super().__init__(f"the id has a profile in several workspaces: {', '.join(workspaces)}")
        self.workspaces = workspaces


def find_profile(
    conn: psycopg.Connection, any_id: str, workspace: str | None = None
) -> dict[str, Any] | None:
    """The profile that ``any_id`` (a user id, an anonymous/device id, an alias) resolves to, with its
    ids, traits, counters, revenue and groups; None when there is none. Without ``workspace``, every
    workspace is searched, and more than one match raises :class:`AmbiguousProfile`."""
    with conn.cursor() as cur:
        set_json_loads(_loads, cur)
        scope = [workspace] if workspace else [row[0] for row in cur.execute(_WORKSPACES_SQL)]
        rows = cur.execute(_PROFILE_SQL, (scope, any_id)).fetchall()
        if not rows:
            return None
        if len(rows) > 1:
            raise AmbiguousProfile(sorted(row[1] for row in rows))
        profile: dict[str, Any] = dict(zip(_PROFILE_KEYS, map(_utc, rows[0]), strict=True))
        profile["profile_id"] = str(profile["profile_id"])
        profile["ids"] = [{"id": i, "kind": kind} for i, kind in cur.execute(_IDS_SQL, (rows[0][0],))]
        profile["groups"] = [
            {
                "group_id": group_id,
                "type": group_type,
                "name": name,
                "traits": traits,
                "first_seen": _utc(first),
                "last_seen": _utc(last),
            }
            for group_id, group_type, name, traits, first, last in cur.execute(_GROUPS_SQL, (rows[0][0],))
        ]
    return profile


_encode = msgspec.json.Encoder(decimal_format="number").encode


def profile_json(profile: dict[str, Any]) -> str:
    """A profile as JSON (numbers exact, times ISO 8601)."""
    return _encode(profile).decode()


def profile_text(profile: dict[str, Any]) -> str:
    """A profile for people to read."""

    def value(v: Any) -> str:
        return _encode(v).decode() if not isinstance(v, str) else v

    lines = [
        f"profile {profile['profile_id']} (workspace {profile['workspace']})",
        f"user id:    {profile['user_id'] or '(anonymous)'}",
        "ids:        " + ", ".join(f"{i['id']} ({i['kind']})" for i in profile["ids"]),
        f"first seen: {profile['first_seen'].isoformat()}",
        f"last seen:  {profile['last_seen'].isoformat() if profile['last_seen'] else '-'}",
    ]
    for title, mapping in (("traits", profile["traits"]), ("counters", profile["counters"])):
        lines.append(f"{title}:" + ("" if mapping else " -"))
        lines.extend(f"  {name}: {value(v)}" for name, v in sorted(mapping.items()))
    revenue = ", ".join(
        f"{value(total)} {currency}" for currency, total in sorted(profile["revenue"].items())
    )
    lines.append(f"revenue:    {revenue or '-'}")
    lines.append(f"mrr:        {value(profile['mrr']) if profile['mrr'] is not None else '-'}")
    lines.append(f"arr:        {value(profile['arr']) if profile['arr'] is not None else '-'}")
    lines.append("groups:" + ("" if profile["groups"] else " -"))
    for group in profile["groups"]:
        described = ", ".join(str(x) for x in (group["type"], group["name"]) if x)
        lines.append(f"  {group['group_id']}" + (f" ({described})" if described else ""))
    return "\n".join(lines)
