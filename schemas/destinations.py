"""Destinations: where stored events are forwarded, which of them, and the forward job's contract.

Shared by the gateway's CLI (which manages destinations) and the workers (which forward), so it holds
only data, the pure event filter and the credentials cipher; the SQL lives in ``workers/destinations.py``
and the fan-out and sending in ``workers/forward/``.

Credentials are stored as a Fernet token (AES-128-CBC + HMAC-SHA256, from ``cryptography``) whose key
comes from ``TRACKGATE_SECRET_KEY``: the workers must read them back to authenticate, so a digest (as
for source keys) cannot work, and a database dump or backup alone does not reveal them. The CLI never
prints them back, only their last four characters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import msgspec

from trackgate.schemas.event import Event

if TYPE_CHECKING:  # imported where used: the gateway loads this module (transports) but never encrypts
    from cryptography.fernet import Fernet, MultiFernet

FORWARD_QUEUE = "trackgate-forward"
"""RQ queue of forward jobs: its own queue (and worker), so a slow destination never delays persisting."""
FORWARD_FUNC = "trackgate.workers.jobs.forward_batch"
"""Dotted path of the forward job (a thin entry point in ``workers/jobs.py``)."""


class Filters(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Which events a destination takes. Empty lists mean "no restriction".

    Name patterns are shell-style (``Order *``) and apply to events that have a name (track, page,
    screen); identify, group and alias carry none and pass the name filters.
    """

    include_types: list[str] = []
    exclude_types: list[str] = []
    include_names: list[str] = []
    exclude_names: list[str] = []
    consent: list[str] = []
    """Consent categories that must all be granted (Segment ``context.consent.categoryPreferences``,
    Commanders Act ``consent_categories``)."""
    consent_required: bool = False
    """Drop events that carry no consent information at all (by default they pass, as in Segment)."""


class Destination(msgspec.Struct, kw_only=True):
    id: str
    name: str
    kind: str
    base_url: str
    credentials: dict[str, str] = {}
    """In clear: only ever built in a worker, or in the CLI right before encrypting."""
    source_ids: list[str] = []
    filters: Filters = msgspec.field(default_factory=Filters)
    paused: bool = False

    def takes_source(self, source_id: str) -> bool:
        return not self.source_ids or source_id in self.source_ids


class Part(msgspec.Struct, array_like=True):
    """One request's worth of encoded items, and the route (path) they go to."""

    route: str
    items: list[dict[str, Any]]


class ForwardJob(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The argument of a forward job. A first run carries canonical ``events``; the worker encodes
    them into ``parts`` (one request each) and a retry carries the parts, with ``done`` of them sent."""

    delivery_id: int
    destination_id: str
    events: list[Event] | None = None
    parts: list[Part] | None = None
    done: int = 0
    n_dead: int = 0
    attempts: int = 0
    first_at: float = 0.0
    """Unix time of the first attempt: retries stop at ``first_at`` + the retry horizon."""
    dead_letter_id: int | None = None
    """Set when this job re-sends a dead letter (``trackgate replay dead-letters``)."""


def forward_job_from_arg(arg: Any) -> ForwardJob:
    if isinstance(arg, ForwardJob):
        return arg
    if isinstance(arg, bytes | str):
        return msgspec.json.decode(arg, type=ForwardJob)
    return msgspec.convert(arg, ForwardJob)


# --- filters -------------------------------------------------------------------------------------


def consent_of(event: Event) -> set[str] | None:
    """The consent categories the event grants, or None when it says nothing about consent.

    Read from Segment's ``context.consent.categoryPreferences`` ({category: bool}) and from Commanders
    Act's ``consent_categories`` (a list, or a comma-separated string, of ids) wherever a dialect keeps
    it: ``context.consent_categories``, ``traits.consent_categories`` or ``properties.user``.
    """
    found: set[str] | None = None
    consent = event.context.extra.get("consent")
    if isinstance(consent, dict):
        prefs = consent.get("categoryPreferences")
        if isinstance(prefs, dict):
            found = {str(k) for k, granted in prefs.items() if granted is True}
    for holder in (
        event.context.extra,
        event.traits,
        event.properties.get("user") if isinstance(event.properties.get("user"), dict) else None,
    ):
        if isinstance(holder, dict) and "consent_categories" in holder:
            found = (found or set()) | _categories(holder["consent_categories"])
    return found


def _categories(value: Any) -> set[str]:
    if isinstance(value, list):
        return {str(v).strip() for v in value if v is not None and not isinstance(v, dict | list)}
    if isinstance(value, str):
        return {part.strip() for part in value.split(",") if part.strip()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {str(value)}
    return set()


def accepts(filters: Filters, event: Event) -> bool:
    if filters.include_types and event.type not in filters.include_types:
        return False
    if event.type in filters.exclude_types:
        return False
    if event.name is not None:
        if filters.include_names and not any(fnmatchcase(event.name, p) for p in filters.include_names):
            return False
        if any(fnmatchcase(event.name, p) for p in filters.exclude_names):
            return False
    if filters.consent or filters.consent_required:
        granted = consent_of(event)
        if granted is None:
            return not filters.consent_required
        if not set(filters.consent) <= granted:
            return False
    return True


# --- credentials -----------------------------------------------------------------------------------


class SecretKeyMissing(Exception):
    pass


def secret_keys(secret_key: str | None) -> list[str]:
    """The keys of ``TRACKGATE_SECRET_KEY``: comma-separated, the first encrypts, all decrypt
    (``MultiFernet``), so a key is rotated by putting the new one first (``trackgate secret-key rotate``)."""
    if not secret_key or not secret_key.strip(","):
        raise SecretKeyMissing(
            "set TRACKGATE_SECRET_KEY (e.g. the output of `python -c 'from cryptography.fernet import"
            " Fernet; print(Fernet.generate_key().decode())'`), or run `trackgate up`, which generates"
            " one: destination credentials are encrypted with it"
        )
    return [key.strip() for key in secret_key.split(",") if key.strip()]


def is_fernet_key(key: str) -> bool:
    """32 bytes, URL-safe base64: what ``Fernet.generate_key()`` makes."""
    try:
        return len(base64.urlsafe_b64decode(key.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def _one_fernet(key: str) -> Fernet:
    from cryptography.fernet import Fernet

    if is_fernet_key(key):
        return Fernet(key.encode())
    # any other string (accepted before rotation existed): a key derived from it
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def fernet(secret_key: str | None) -> MultiFernet:
    from cryptography.fernet import MultiFernet

    return MultiFernet([_one_fernet(key) for key in secret_keys(secret_key)])


def rotate_credentials(secret_key: str | None, token: str) -> str:
    """``token`` re-encrypted under the first key of ``secret_key`` (decrypted with any of them)."""
    from cryptography.fernet import InvalidToken

    try:
        return fernet(secret_key).rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretKeyMissing(
            "destination credentials cannot be decrypted with any key of TRACKGATE_SECRET_KEY: keep the"
            " key they were stored with in the list (new,old)"
        ) from exc


def encrypt_credentials(secret_key: str | None, credentials: dict[str, str]) -> str | None:
    if not credentials:
        return None
    return fernet(secret_key).encrypt(msgspec.json.encode(credentials)).decode()


def decrypt_credentials(secret_key: str | None, token: str | None) -> dict[str, str]:
    if not token:
        return {}
    from cryptography.fernet import InvalidToken

    try:
        return msgspec.json.decode(fernet(secret_key).decrypt(token.encode()), type=dict[str, str])
    except InvalidToken as exc:
        raise SecretKeyMissing(
            "destination credentials cannot be decrypted: TRACKGATE_SECRET_KEY holds none of the keys they"
            " were stored with"
        ) from exc


def mask(value: str) -> str:
    """A secret as the CLI shows it: its length and last four characters at most."""
    if len(value) <= 8:
        return "*" * len(value)
    return f"…{value[-4:]} ({len(value)} chars)"
