"""OpenPanel: ``POST /track`` with a typed envelope ``{type, payload}``, and the legacy ``/event``,
``/profile``, ``/profile/increment``, ``/profile/decrement`` calls of the beta SDKs.

The rules and the 400 messages are OpenPanel's own (zod 4 schemas in ``packages/validation/src/
track.validation.ts``, rendered by fastify as ``"<path> <reason>"``), checked in ``parse`` because the
real server validates before it authenticates. Where trackgate differs on purpose:

- ``null`` counts as absent for every optional field: the PyPI SDK sends ``"profileId": null`` and
  ``"value": null`` (the real server answers 400 to both; liberal to real SDKs).
- ``alias`` is recorded (canonical alias: ``user_id`` = ``profileId``, ``previous_id`` = ``alias``);
  the real server refuses it with 400 ``Alias is not supported``.
- ``replay`` (session recordings) has no canonical event: 400 ``body/type Session replay is not
  supported``.
- ``property`` of increment/decrement must be a dot path without empty segments.

The device id, session id, trusted client IP and bot verdict are the gateway's (``gateway/openpanel``
``prepare``): they arrive in ``meta.hints``, so this module stays pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from trackgate.adapters.base import InvalidPayload, Transport
from trackgate.adapters.fields import NUL, assigned_message_id, decode_json, in_utc_range, scrubbed
from trackgate.schemas.event import Context, Event, Library, Page
from trackgate.schemas.request import RequestMeta

dialect = "openpanel"

MAX_BODY_BYTES = 2 * 1024 * 1024
"""Per request. The real server takes up to 500 MB; its SDKs send one small call per request (session
replay chunks, which trackgate does not take, are the only large ones)."""

TRACK_TYPES = ("track", "identify", "increment", "decrement", "group", "assign_group", "alias", "replay")
CALLS = ("track", "event", "profile", "profile_increment", "profile_decrement")
BODIES: Mapping[str, type] = {}
"""Every call takes a JSON object, read field by field (``{"type": ..., "payload": {...}}`` for track)."""

RESERVED_EVENT_NAMES = ("session_start", "session_end")
MAX_OVERRIDE_DEVICE_ID_LENGTH = 64
SPECIAL_PROPERTIES = ("__timestamp", "__ip", "__deviceId", "__identify", "__revenue")
"""Track properties with a meaning; they become canonical fields and leave ``properties``."""

IDENTITY_FIELDS = ("firstName", "lastName", "email", "avatar")
"""Identify fields outside ``properties``; Segment's trait names are the same."""

_decode_json = msgspec.json.Decoder()

# zod's email pattern (zod 4 ``z.email()``): what the real server accepts
_EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$"
)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*$")
_BLOCKED_SUBSTRINGS = (
    "oastify.com", "burpcollaborator", "interact.sh", "oast.me", "pg_sleep", "waitfor delay", "xp_dirtree",
    "load_file(", "extractvalue(", "dbms_pipe.receive_message", "union select", "nslookup ", "/bin/sleep",
    "/bin/bash", "cmd.exe", "wget+http", "wget http", "chmod+777", "chmod 777", "processbuilder",
    "runtime.getruntime", "java.lang.processbuilder", "eval-stdin.php", "../", "..\\", "%2e%2e",
    "%u002e%u002e", "/etc/passwd", "/etc/shadow", "win.ini", "system.ini", "${", "%{", "<!doctype",
    "<!entity", "<xi:include", "xsi:schemalocation", "\r\n", "bcc:", "phpinfo.php", "wp-config.php",
    ".git/config", ".env.backup", ".env.bak", "/vendor/phpunit/", "mozi.m", "/setup.cgi?", "/cgi-bin/",
    "#<article:0x", "#<video:0x", "#<brand:0x", "exec master.dbo", "declare @", "' and '", "' or '",
    "') or ", "')and ",
)  # fmt: skip
_PATH_SCANS = tuple(
    re.compile(p, re.I)
    for p in (
        r"^/[a-z_-]+\.(php|env|yml|yaml|json|xml|config|ini|bak|sql|log)",
        r"^/\.[a-z]",
        r"^/(wp-|wordpress)",
        r"^/phpmyadmin",
        r"^/.+\.php$",
    )
)


class Envelope(msgspec.Struct, kw_only=True):
    """A validated request: the call, the body (a JSON object) and its text for ``raw``."""

    call: str
    body: dict[str, Any]
    raw: str


# --- validation (zod 4 messages, fastify paths) -------------------------------------------------------


def _kind(value: Any) -> str:
    """zod's names for a value's type (``string``, ``array``), not ``fields.json_kind``'s prose."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fail(path: str, reason: str, code: str = "invalid_field") -> InvalidPayload:
    return InvalidPayload(code, reason, path=path)


_MISSING = object()


def _present(obj: dict, key: str, path: str, expected: str, *, required: bool) -> Any:
    """``obj[key]``, or None when it is absent or null; a required one missing is zod's refusal."""
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            got = "undefined" if value is _MISSING else "null"
            reason = f"Invalid input: expected {expected}, received {got}"
            raise _fail(f"{path}/{key}", reason, "missing_field")
        return None
    return value


def _str(obj: dict, key: str, path: str, *, required: bool, min1: bool = True) -> str | None:
    value = _present(obj, key, path, "string", required=required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(f"{path}/{key}", f"Invalid input: expected string, received {_kind(value)}")
    if min1 and not value:
        raise _fail(f"{path}/{key}", "Too small: expected string to have >=1 characters")
    return value


def _profile_id(obj: dict, path: str, *, required: bool) -> str | None:
    """``string (>= 1 char) | number`` as a string (numbers as JavaScript prints them)."""
    value = obj.get("profileId")
    if value is None:
        if required:
            raise _fail(f"{path}/profileId", "Invalid input", "missing_field")
        return None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _js_number(value)
    raise _fail(f"{path}/profileId", "Invalid input")


def _js_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _record(obj: dict, key: str, path: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(f"{path}/{key}", f"Invalid input: expected record, received {_kind(value)}")
    return value


def _str_list(obj: dict, key: str, path: str, *, required: bool) -> list[str] | None:
    value = _present(obj, key, path, "array", required=required)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _fail(f"{path}/{key}", f"Invalid input: expected array, received {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _fail(f"{path}/{key}/{i}", f"Invalid input: expected string, received {_kind(item)}")
        if not item:
            raise _fail(f"{path}/{key}/{i}", "Too small: expected string to have >=1 characters")
    return value


def _positive(obj: dict, key: str, path: str, *, required: bool) -> float | int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _fail(
                f"{path}/{key}", "Invalid input: expected number, received undefined", "missing_field"
            )
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{path}/{key}", f"Invalid input: expected number, received {_kind(value)}")
    if value <= 0:
        raise _fail(f"{path}/{key}", "Too small: expected number to be >0")
    return value


def _dot_path(obj: dict, path: str) -> str:
    prop = _str(obj, "property", path, required=True)
    assert prop is not None
    if any(not part for part in prop.split(".")):
        raise _fail(f"{path}/property", "Invalid input: expected a dot path such as visits or stats.visits")
    return prop


def is_blocked_event_name(name: str) -> bool:
    """OpenPanel's event-name blocklist (``packages/validation/src/event-blocklist.ts``)."""
    if len(name) > 80 or "\n" in name or "\r" in name:
        return True
    lower = name.lower()
    if any(blocked in lower for blocked in _BLOCKED_SUBSTRINGS):
        return True
    return any(p.search(name) for p in _PATH_SCANS)


def _check_track(payload: dict, path: str) -> None:
    name = _str(payload, "name", path, required=True)
    assert name is not None
    props = _record(payload, "properties", path)
    _profile_id(payload, path, required=False)
    _str_list(payload, "groups", path, required=False)
    if name in RESERVED_EVENT_NAMES:
        raise _fail(
            f"{path}/name",
            "Event name cannot be one of the reserved names: " + ", ".join(RESERVED_EVENT_NAMES),
            "reserved_name",
        )
    if is_blocked_event_name(name):
        raise _fail(f"{path}/name", "Event name contains blocked content", "blocked_name")
    revenue = props.get("__revenue")
    if name == "revenue" and revenue is not None and not _is_cents(revenue):
        raise _fail(
            f"{path}/properties/__revenue", "__revenue must be an integer (no floats or strings)", "revenue"
        )
    identify = props.get("__identify")
    if identify is not None:
        if not isinstance(identify, dict):
            raise _fail(
                f"{path}/properties/__identify", f"Invalid input: expected object, received {_kind(identify)}"
            )
        _check_identify(identify, f"{path}/properties/__identify")


def _is_cents(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return float(value).is_integer() and value >= 0


def _check_identify(payload: dict, path: str) -> None:
    _profile_id(payload, path, required=True)
    _str(payload, "firstName", path, required=False, min1=False)
    _str(payload, "lastName", path, required=False, min1=False)
    email = _str(payload, "email", path, required=False, min1=False)
    if email is not None and not _EMAIL.match(email):
        raise _fail(f"{path}/email", "Invalid email address")
    avatar = _str(payload, "avatar", path, required=False, min1=False)
    if avatar is not None and not _URL.match(avatar):
        raise _fail(f"{path}/avatar", "Invalid URL")
    _record(payload, "properties", path)


def _check_adjust(payload: dict, path: str) -> None:
    _profile_id(payload, path, required=True)
    _dot_path(payload, path)
    _positive(payload, "value", path, required=False)


def _check_group(payload: dict, path: str) -> None:
    for key in ("id", "type", "name"):
        _str(payload, key, path, required=True)
    _record(payload, "properties", path)


def _check_assign_group(payload: dict, path: str) -> None:
    _str_list(payload, "groupIds", path, required=True)
    _profile_id(payload, path, required=False)


def _check_alias(payload: dict, path: str) -> None:
    _profile_id(payload, path, required=True)
    _str(payload, "alias", path, required=True)


_CHECKS = {
    "track": _check_track,
    "identify": _check_identify,
    "increment": _check_adjust,
    "decrement": _check_adjust,
    "group": _check_group,
    "assign_group": _check_assign_group,
    "alias": _check_alias,
}


def parse(call: str, body: bytes) -> Envelope:
    """Bytes to a validated envelope; every rule is checked here (before authentication, as the real
    server does), so ``decode`` cannot fail."""
    if not body.strip():
        raise InvalidPayload(
            "empty_body", "Body cannot be empty when content-type is set to 'application/json'"
        )
    data = decode_json(
        _decode_json.decode,
        body,
        not_json=lambda exc: InvalidPayload(
            "invalid_json", "Body is not valid JSON but content-type is set to 'application/json'"
        ),
    )
    if not isinstance(data, dict):
        raise _fail("body", f"Invalid input: expected object, received {_kind(data)}", "not_an_object")
    for key in ("clientId", "clientSecret"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise _fail(f"body/{key}", f"Invalid input: expected string, received {_kind(data[key])}")
    if call == "track":
        kind = data.get("type")
        if kind not in TRACK_TYPES:
            raise _fail("body/type", "Invalid input", "invalid_type")
        if kind == "replay":
            raise _fail("body/type", "Session replay is not supported", "unsupported_type")
        payload = data.get("payload")
        if not isinstance(payload, dict):
            got = "undefined" if "payload" not in data else _kind(payload)
            raise _fail("body/payload", f"Invalid input: expected object, received {got}", "missing_field")
        _CHECKS[kind](payload, "body/payload")
    elif call == "event":
        _str(data, "name", "body", required=True)
        _record(data, "properties", "body")
        _str(data, "timestamp", "body", required=False, min1=False)
        _profile_id(data, "body", required=False)
    elif call == "profile":
        _check_identify(data, "body")
    elif call in ("profile_increment", "profile_decrement"):
        _check_adjust(data, "body")
    else:  # pragma: no cover - the routes name only the calls above
        raise ValueError(f"unknown OpenPanel call {call!r}")
    return Envelope(call=call, body=data, raw=body.decode())


def credentials(headers: Mapping[str, str], envelope: Envelope | None) -> str | None:
    """The client id: ``openpanel-client-id``, the legacy ``mixan-client-id``, or ``clientId`` in the body."""
    found = headers.get("openpanel-client-id") or headers.get("mixan-client-id")
    if not found and envelope is not None:
        found = envelope.body.get("clientId")
    return found or None


def client_secret(headers: Mapping[str, str], envelope: Envelope | None) -> str | None:
    """The client secret, from the same three places as the client id."""
    found = headers.get("openpanel-client-secret") or headers.get("mixan-client-secret")
    if not found and envelope is not None:
        found = envelope.body.get("clientSecret")
    return found or None


def revenue_of(envelope: Envelope) -> Any:
    """``__revenue`` as the real server looks for it (track payload, or a legacy event's properties)."""
    body = envelope.body
    payload = body.get("payload") if envelope.call == "track" else body
    if not isinstance(payload, dict):
        return None
    props = payload.get("properties")
    return props.get("__revenue") if isinstance(props, dict) else None


def override_device_id(envelope: Envelope) -> str | None:
    """A track call's ``properties.__deviceId``, trimmed, if it is 1-64 characters (else ignored)."""
    if envelope.call != "track" or envelope.body.get("type") != "track":
        return None
    raw = envelope.body["payload"].get("properties", {}) or {}
    value = raw.get("__deviceId")
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if value and len(value) <= MAX_OVERRIDE_DEVICE_ID_LENGTH else None


def explicit_ip(envelope: Envelope) -> str | None:
    """A track call's ``properties.__ip`` (the real server uses it for geo and the device id)."""
    if envelope.call != "track" or envelope.body.get("type") != "track":
        return None
    value = (envelope.body["payload"].get("properties") or {}).get("__ip")
    return value if isinstance(value, str) and value else None


# --- decoding --------------------------------------------------------------------------------------


def client_timestamp(value: Any, now: datetime) -> datetime | None:
    """``__timestamp`` as the real server takes it: ISO text or epoch milliseconds; ignored when it is
    invalid or more than a minute in the future."""
    when: datetime | None = None
    if isinstance(value, str) and value:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if not in_utc_range(when):
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            when = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if when is None or when > now + timedelta(minutes=1):
        return None
    return when


def _library(meta: RequestMeta) -> Library | None:
    name = meta.headers.get("openpanel-sdk-name")
    version = meta.headers.get("openpanel-sdk-version")
    return Library(name=name, version=version) if name or version else None


def _page(props: dict[str, Any]) -> Page | None:
    """The web SDK's ``__path`` (the full URL), ``__title`` and ``__referrer``; kept in properties too."""
    url, title, referrer = props.get("__path"), props.get("__title"), props.get("__referrer")
    if not any(isinstance(v, str) and v for v in (url, title, referrer)):
        return None
    page = Page(
        url=url if isinstance(url, str) and url else None,
        title=title if isinstance(title, str) and title else None,
        referrer=referrer if isinstance(referrer, str) and referrer else None,
    )
    if page.url and "://" in page.url:
        rest = page.url.split("://", 1)[1]
        slash = rest.find("/")
        path = rest[slash:] if slash >= 0 else "/"
        path, _, search = path.partition("?")
        page.path = path.split("#", 1)[0] or "/"
        page.search = f"?{search.split('#', 1)[0]}" if search else None
    return page


class _Builder:
    """Shared fields of the events one request makes."""

    def __init__(self, meta: RequestMeta, envelope: Envelope):
        self.meta = meta
        self.raw = envelope.raw
        self.hints = meta.hints
        self.version = "track" if envelope.call == "track" else "legacy"
        self.library = _library(meta)
        self.index = 0
        enrichment: dict[str, Any] = {}
        if self.hints.get("bot"):
            enrichment["is_bot"] = True
        if self.hints.get("session_id"):
            enrichment["session_id"] = self.hints["session_id"]
        self.enrichment = enrichment

    def make(self, kind: str, *, ip: str | None = None, when: datetime | None = None, **fields) -> Event:
        meta = self.meta
        context = Context(
            ip=ip or self.hints.get("ip") or meta.ip,
            user_agent=meta.user_agent,
            library=self.library,
            page=fields.pop("page", None),
        )
        event = Event(
            id="",
            message_id=assigned_message_id(meta, self.index, when),
            source_id=meta.source_id,
            dialect=dialect,
            dialect_version=self.version,
            type=kind,  # type: ignore[arg-type]
            context=context,
            timestamp=when or meta.received_at,
            original_timestamp=when,
            received_at=meta.received_at,
            raw=self.raw,
            enrichment=dict(self.enrichment),
            **fields,
        )
        self.index += 1
        return event


def _identify_traits(payload: dict[str, Any]) -> dict[str, Any]:
    traits = dict(payload.get("properties") or {})
    for key in IDENTITY_FIELDS:
        if payload.get(key) is not None:
            traits[key] = payload[key]
    return traits


def _track(b: _Builder, payload: dict[str, Any], now: datetime) -> list[Event]:
    props: dict[str, Any] = dict(payload.get("properties") or {})
    special = {key: props.pop(key) for key in SPECIAL_PROPERTIES if key in props}
    when = client_timestamp(special.get("__timestamp"), now)
    revenue = special.get("__revenue")
    if isinstance(revenue, int | float) and not isinstance(revenue, bool):
        props["revenue"] = revenue / 100  # OpenPanel counts revenue in minor units (cents)
    ip = special.get("__ip") if isinstance(special.get("__ip"), str) and special.get("__ip") else None
    override = special.get("__deviceId")
    override = override.strip() if isinstance(override, str) else None
    if not override or len(override) > MAX_OVERRIDE_DEVICE_ID_LENGTH:
        override = None  # ignored, as the real server ignores it
    device = override or b.hints.get("device_id")
    identity = special.get("__identify")
    user_id = _profile_id(identity, "", required=False) if isinstance(identity, dict) else None
    user_id = user_id or _profile_id(payload, "", required=False)
    events = []
    if isinstance(identity, dict) and len(identity) > 1:
        # the real server also upserts the profile when __identify carries more than a profile id
        events.append(
            b.make("identify", ip=ip, when=when, user_id=user_id, anonymous_id=device,
                   traits=_identify_traits(identity))
        )  # fmt: skip
    events.append(
        b.make(
            "track",
            ip=ip,
            when=when,
            name=payload["name"],
            user_id=user_id,
            anonymous_id=device,
            group_ids=list(payload.get("groups") or []),
            properties=props,
            page=_page(props),
        )
    )
    return events


def decode(meta: RequestMeta, envelope: Envelope) -> list[Event]:
    """A validated envelope (see ``parse``) to canonical events; one per call, two for a track call
    whose ``__identify`` carries traits."""
    b = _Builder(meta, envelope)
    body = envelope.body
    now = meta.received_at
    device = meta.hints.get("device_id")
    if envelope.call == "track":
        kind, payload = body["type"], body["payload"]
    elif envelope.call == "event":
        kind, payload = "legacy_event", body
    elif envelope.call == "profile":
        kind, payload = "identify", body
    else:
        kind, payload = envelope.call.removeprefix("profile_"), body

    if kind == "track":
        events = _track(b, payload, now)
    elif kind == "legacy_event":
        props = dict(payload.get("properties") or {})
        when = client_timestamp(props.get("__timestamp"), now) or client_timestamp(
            payload.get("timestamp"), now
        )
        user_id = _profile_id(payload, "", required=False)
        if user_id is None and isinstance(props.get("profileId"), str | int | float):
            user_id = _profile_id(props, "", required=False)
        events = [
            b.make("track", when=when, name=payload["name"], user_id=user_id, anonymous_id=device,
                   properties=props, page=_page(props))
        ]  # fmt: skip
    elif kind == "identify":
        events = [
            b.make(
                "identify", user_id=_profile_id(payload, "", required=True), traits=_identify_traits(payload)
            )
        ]
    elif kind in ("increment", "decrement"):
        value = payload.get("value")
        events = [
            b.make(
                kind,
                user_id=_profile_id(payload, "", required=True),
                properties={"property": payload["property"], "value": 1 if value is None else value},
            )
        ]
    elif kind == "group":
        traits = dict(payload.get("properties") or {})
        traits.update(name=payload["name"], type=payload["type"])
        events = [b.make("group", group_id=payload["id"], traits=traits)]
    elif kind == "assign_group":
        user_id = _profile_id(payload, "", required=False)
        events = [
            b.make(
                "assign_group",
                user_id=user_id,
                anonymous_id=None if user_id else device,
                group_ids=list(payload["groupIds"]),
            )
        ]
    else:  # alias
        events = [
            b.make("alias", user_id=_profile_id(payload, "", required=True), previous_id=payload["alias"])
        ]
    return scrubbed(events) if NUL.decode() in envelope.raw else events


# --- encoding --------------------------------------------------------------------------------------


def _cents(revenue: Any) -> Any:
    if isinstance(revenue, int | float) and not isinstance(revenue, bool):
        return round(revenue * 100)
    return revenue


def encode(events: list[Event]) -> list[dict[str, Any]]:
    """Canonical events as the ``POST /track`` bodies ``@openpanel/sdk`` sends for the matching call
    (``track``, ``identify``, ``increment``, ``decrement``, ``upsertGroup``, ``setGroups``; alias as the
    PyPI SDK sends it). Canonical fields OpenPanel keeps in special properties travel there:
    ``revenue`` as ``__revenue`` in cents, the event time as ``__timestamp``, ``anonymous_id`` as
    ``__deviceId`` and an explicit ``context.ip`` as ``__ip``. Types OpenPanel has no call for (page,
    screen, feedback) become track calls named after the page/screen or the type."""
    return [encode_one(event) for event in events]


def encode_one(event: Event) -> dict[str, Any]:
    kind = event.type
    if kind == "identify":
        traits = dict(event.traits)
        payload: dict[str, Any] = {"profileId": event.user_id or event.anonymous_id}
        for key in IDENTITY_FIELDS:
            if key in traits:
                payload[key] = traits.pop(key)
        payload["properties"] = traits
        return {"type": "identify", "payload": payload}
    if kind in ("increment", "decrement"):
        payload = {"profileId": event.user_id or event.anonymous_id}
        payload["property"] = event.properties.get("property")
        if event.properties.get("value") not in (None, 1):  # 1 is the default: the SDK sends none
            payload["value"] = event.properties["value"]
        return {"type": kind, "payload": payload}
    if kind == "group":
        traits = dict(event.traits)
        payload = {
            "id": event.group_id,
            "type": traits.pop("type", None) or "company",
            "name": traits.pop("name", None) or event.group_id,
        }
        if traits:
            payload["properties"] = traits
        return {"type": "group", "payload": payload}
    if kind == "assign_group":
        payload = {"groupIds": list(event.group_ids)}
        if event.user_id:
            payload["profileId"] = event.user_id
        return {"type": "assign_group", "payload": payload}
    if kind == "alias":
        return {"type": "alias", "payload": {"profileId": event.user_id, "alias": event.previous_id}}
    if kind == "track":
        name = event.name
    elif kind in ("page", "screen"):
        name = event.name or "screen_view"
    else:
        name = kind
    props = dict(event.properties)
    if "revenue" in props:
        props["__revenue"] = _cents(props.pop("revenue"))
    if event.anonymous_id:
        props["__deviceId"] = event.anonymous_id
    if event.context.ip:
        props["__ip"] = event.context.ip
    props["__timestamp"] = _iso(event.original_timestamp or event.timestamp)
    payload = {"name": name}
    if event.user_id:
        payload["profileId"] = event.user_id
    if event.group_ids:
        payload["groups"] = list(event.group_ids)
    payload["properties"] = props
    return {"type": "track", "payload": payload}


def _iso(when: datetime) -> str:
    """``Date.toISOString()``: UTC, milliseconds, ``Z``."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


# --- forwarding and replay -------------------------------------------------------------------------


def _headers(creds: dict[str, str]) -> dict[str, str]:
    headers = {"openpanel-client-id": creds["client_id"], "openpanel-sdk-name": "trackgate"}
    if creds.get("client_secret"):
        headers["openpanel-client-secret"] = creds["client_secret"]
    return headers


TRANSPORT = Transport(
    kind="openpanel",
    dialect="openpanel",
    default_base="https://api.openpanel.dev",
    credentials=("client_id",),
    optional_credentials=("client_secret",),
    route=lambda item: "/track",
    wrap=lambda items, creds, now: items[0],
    headers=_headers,
    per_event=True,
    job_events=100,
    notes="POST {base}/track per event {type, payload}; openpanel-client-id/-secret headers",
)


def replay_call(payload: Any) -> str:
    """Every stored OpenPanel body is a ``/track`` body (``{type, payload}``)."""
    return "track"
