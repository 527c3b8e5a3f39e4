"""Field coercions and parse errors the dialect adapters share.

Every function here is pure and raises ``InvalidPayload`` with a stable code and the field's path. An
adapter whose dialect means something else by a field (Bucket's numeric ids, Commanders Act's epoch
milliseconds, OpenPanel's zod messages) keeps its own helper and says why next to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from trackgate.adapters.base import InvalidPayload, scrub_nul
from trackgate.schemas.event import Event
from trackgate.schemas.request import RequestMeta

NUL = b"\\u0000"
"""A JSON-escaped NUL: a body holding it needs ``scrub_nul`` (PostgreSQL refuses NUL in text)."""


def has_nul(body: bytes) -> bool:
    """Whether ``body`` holds :data:`NUL`. A backslash is looked for first (``memchr``: ~0.6 µs for
    the bench's 51 KB batch); most bodies have none, and the search for the escape itself costs ~27."""
    return b"\\" in body and NUL in body


def utf8(body: bytes) -> str:
    """The body as text; msgspec does not check UTF-8 inside strings, and ``raw`` must be valid text."""
    try:
        return body.decode()
    except UnicodeDecodeError as exc:
        raise InvalidPayload("invalid_json", f"body is not valid UTF-8: {exc}") from exc


def json_error(exc: Exception) -> InvalidPayload:
    return InvalidPayload("invalid_json", f"body is not valid JSON: {exc}")


_LONE_HIGH_SURROGATE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])")
"""A ``\\ud800``-``\\udbff`` escape (not itself escaped) without the low half that must follow it."""


def _clearer(exc: Exception, data: Any) -> Exception:
    """msgspec's reason, except where it misleads: a lone high surrogate escape (``"\\ud800"`` with no
    ``\\udc00``-``\\udfff`` after it) is reported as "Input data was truncated" or "unexpected end of
    hex escape" by where it stands; a lone low one is "invalid utf-16 surrogate pair", and now both say so.
    An empty body is "truncated" too: it says it is empty."""
    reason = str(exc)
    if isinstance(data, bytes | str) and not data.strip():  # msgspec: "Input data was truncated"
        return msgspec.DecodeError("the body is empty")
    if (
        (reason == "Input data was truncated" or "escape" in reason)
        and isinstance(data, bytes)
        and _LONE_HIGH_SURROGATE.search(data) is not None
    ):
        return msgspec.DecodeError(
            "JSON is malformed: invalid utf-16 surrogate pair (a \\ud800-\\udbff escape alone)"
        )
    return exc


def too_deep(path: str | None = None) -> InvalidPayload:
    return InvalidPayload("invalid_json", "JSON is nested too deeply", path)


T = TypeVar("T")


def decode_json(
    decoder: Callable[[bytes], T],
    data: bytes,
    *,
    invalid: str | Callable[[msgspec.ValidationError], InvalidPayload] = "body must be a JSON object",
    code: str = "invalid_body",
    path: str | None = None,
    item: bool = False,
    not_json: Callable[[Exception], InvalidPayload] | None = None,
) -> T:
    """``decoder(data)``, msgspec's errors refused as ``InvalidPayload`` (the one place that maps them):

    - JSON of the wrong shape (``msgspec.ValidationError``): ``code`` with the message ``invalid``
      at ``path``, or what ``invalid(exc)`` makes of it;
    - not JSON (``msgspec.DecodeError``, also a number out of range; or bad UTF-8): ``invalid_json``,
      with msgspec's reason, or what ``not_json(exc)`` makes of it;
    - nested past the recursion limit: ``invalid_json``, "JSON is nested too deeply".

    ``item=True`` is for one item of a batch at ``path``: the ``invalid_json`` messages start with
    the path (``[3]: ...``) and carry it."""
    try:
        return decoder(data)
    except msgspec.ValidationError as exc:
        if not str(exc).startswith(_OUT_OF_RANGE):
            raise (InvalidPayload(code, invalid, path) if isinstance(invalid, str) else invalid(exc)) from exc
        error: Exception = exc  # msgspec's ValidationError, but no shape is wrong: a number it cannot hold
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        error = exc
    except RecursionError as exc:
        if item:
            raise InvalidPayload("invalid_json", f"{path}: JSON is nested too deeply", path) from exc
        raise too_deep(path) from exc
    raise _not_json(error, data, path, item, not_json) from error


_OUT_OF_RANGE = "Number out of range"
"""How msgspec's error for a number no float holds (``1e400``) begins: a ``ValidationError`` though
the JSON has every shape it should, refused as JSON that cannot be read (``invalid_json``)."""


def _not_json(
    exc: Exception,
    data: bytes,
    path: str | None,
    item: bool,
    not_json: Callable[[Exception], InvalidPayload] | None,
) -> InvalidPayload:
    """:func:`decode_json`'s error for data it cannot read as JSON."""
    if not_json is not None:
        return not_json(exc)
    reason = _clearer(exc, data)
    if item:
        return InvalidPayload("invalid_json", f"{path}: {reason}", path)
    return json_error(reason)


def call_by_shape(calls: Collection[str], payload: Any) -> str:
    """The call a bare payload of a dialect with ``calls`` was posted to, from its shape: a
    ``batch`` key, else its ``type``, else ``bulk`` for an array, else the first call by name."""
    if isinstance(payload, dict):
        if "batch" in payload and "batch" in calls:
            return "batch"
        kind = payload.get("type")
        if isinstance(kind, str) and kind in calls:
            return kind
    if isinstance(payload, list) and "bulk" in calls:
        return "bulk"
    return sorted(calls)[0] if calls else "batch"


def assigned_message_id(meta: RequestMeta, index: int, client_time: Any) -> str:
    """The message id of item ``index`` of a request, when the client gave it none.

    From the request's key (``meta.key()``: the request itself) when the request names itself: the
    client sent an ``Idempotency-Key``, or the item carries the client's own time (``client_time`` not
    None), so two real events cannot share a body; then the same request sent again gets the same ids
    and is stored once. Otherwise from ``meta.request_id`` (unique per request): two byte-identical
    bodies without a time (a page viewed twice, TinyTrail's tracker) may be two real events and are
    both kept."""
    if client_time is not None or "idempotency-key" in meta.headers:
        key = meta.key()
        if key:
            return f"{key}-{index}"
    return f"{meta.request_id}-{index}"


def json_value(data: bytes) -> Any:
    """Any JSON value; not JSON, or nested past the recursion limit, is ``invalid_json``."""
    return decode_json(msgspec.json.decode, data)


def scrubbed(events: list[Event]) -> list[Event]:
    """``scrub_nul`` on every event; a value nested past the recursion limit is refused as JSON."""
    try:
        return [scrub_nul(event) for event in events]
    except RecursionError as exc:
        raise too_deep() from exc


def json_kind(value: Any) -> str:
    """A JSON value's kind for messages: ``an object``, ``an array``, ``a string``, ``null``, ..."""
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        value.__class__, "a number"
    )


def string_id(value: Any, field: str) -> str | None:
    """An id or name: a string, or a number sent where a string is meant (real SDKs do), as ``str()``
    prints it. Absent or empty is None."""
    if value is None or value == "":
        return None
    if value.__class__ is str:
        return value
    if value.__class__ is int or value.__class__ is float:
        return str(value)
    raise InvalidPayload("invalid_field_type", f"{field} must be a string, got {json_kind(value)}", field)


def obj(value: Any, path: str) -> dict | None:
    """A JSON object, or None when absent."""
    if value is None:
        return None
    if value.__class__ is dict:
        return value
    raise InvalidPayload("invalid_field_type", f"{path} must be an object, got {json_kind(value)}", path)


def in_utc_range(when: datetime) -> bool:
    """Whether ``when`` is a time in UTC years 1-9999: ``0001-01-01T00:00+01:00`` parses, but is year 0
    in UTC, which PostgreSQL stores and then cannot give back to Python."""
    try:
        when.astimezone(UTC)
    except OverflowError:
        return False
    return True


def iso_time(value: Any, path: str) -> datetime | None:
    """An ISO 8601 date-time (UTC when it names no offset), or None when absent or empty."""
    if value is None or value == "":
        return None
    if value.__class__ is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
            # an offset is under 24 hours: only a time in year 1 or 9999 can leave the range in UTC
            if 1 < parsed.year < 9999 or in_utc_range(parsed):
                return parsed
    raise InvalidPayload(
        "invalid_timestamp", f"{path} must be an ISO 8601 date-time, got {value!r}"[:300], path
    )
