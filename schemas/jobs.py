"""The contract between the gateway (producer) and the workers (consumers) of RQ jobs.

Jobs are referenced by dotted path, so the gateway never imports worker code. Payloads are JSON,
written and read by msgspec (never pickle): :class:`MsgspecJSONSerializer` is the RQ serializer
both sides must use.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import msgspec

from trackgate.schemas.destinations import FORWARD_FUNC, ForwardJob
from trackgate.schemas.event import Event

PERSIST_QUEUE = "trackgate-persist"
"""RQ queue that carries batches of canonical events to be stored."""
PERSIST_FUNC = "trackgate.workers.jobs.persist_batch"
"""Dotted path of the job that stores a batch."""


class RefusedItem(msgspec.Struct, kw_only=True):
    """An item a dialect answered 2xx to but could not accept: the worker puts it in ``quarantine``.

    ``key`` is assigned once by the publisher, so a retried job does not quarantine it twice."""

    key: str
    source_id: str
    dialect: str = ""
    version: str = ""
    index: int
    code: str
    reason: str
    message_id: str | None = None
    raw: str
    request_id: str | None = None
    received_at: datetime | None = None


class PersistBatch(msgspec.Struct, kw_only=True):
    """One group-committed batch: the events of one or more requests of one gateway process, and the
    items those requests were answered 2xx for but could not be accepted (kept in quarantine)."""

    batch_id: str
    events: list[Event]
    refused: list[RefusedItem] = []


_decode_persist = msgspec.json.Decoder(PersistBatch).decode

_DESCRIBED_SIZE = re.compile(r"^persist_batch \S+ n_events=(\d+)(?: n_refused=(\d+))?")


def described_size(description: str | None) -> int | None:
    """A persist job's events and refused items as its description states them (the publisher writes
    ``persist_batch <id> n_events=N n_refused=M``, the file replay ``... n_events=N (replay file)``),
    or None when it states no size. The worker weighs jobs by it without inflating and decoding them."""
    found = _DESCRIBED_SIZE.match(description or "")
    if found is None:
        return None
    return int(found[1]) + int(found[2] or 0)


def persist_batch_from_arg(arg: Any) -> PersistBatch:
    """Turn the job's argument (as the serializer loaded it) into a typed batch."""
    if isinstance(arg, PersistBatch):
        return arg
    if isinstance(arg, bytes | str):
        return _decode_persist(arg)
    return msgspec.convert(arg, PersistBatch)


class MsgspecJSONSerializer:
    """RQ serializer: job data as JSON via msgspec (fast, and safe to load, unlike pickle).

    RQ serializes ``(func_name, instance, args, kwargs)``; each arg that is a PersistBatch is written
    as a JSON object and read back as a plain dict, which the job turns back into a typed batch.
    """

    _encode = msgspec.json.Encoder().encode

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return MsgspecJSONSerializer._encode(obj)

    @staticmethod
    def loads(data: bytes | str) -> Any:
        # A persist or forward job decodes straight into typed structs (half the work of generic +
        # convert), chosen by the function name it starts with: a forward job tried as a persist job
        # was decoded twice before it failed (its events), then generically a third time. Anything
        # else RQ stores with this serializer (meta, results, other jobs) decodes generically.
        head = data[:_HEAD]
        head = head.encode() if isinstance(head, str) else head
        for prefix, decode in _TYPED_JOBS:
            if head.startswith(prefix):
                try:
                    return decode(data)
                except msgspec.ValidationError:
                    break  # not the shape this function's jobs have: read it as any JSON
        value = msgspec.json.decode(data)
        # RQ unpacks (func_name, instance, args, kwargs) as a tuple
        return tuple(value) if isinstance(value, list) else value


_TYPED_JOBS = (
    (
        msgspec.json.encode([PERSIST_FUNC])[:-1] + b",",
        msgspec.json.Decoder(tuple[str, None, tuple[PersistBatch], dict]).decode,
    ),
    (
        msgspec.json.encode([FORWARD_FUNC])[:-1] + b",",
        msgspec.json.Decoder(tuple[str, None, tuple[ForwardJob], dict]).decode,
    ),
)
"""The start of a job's data as ``dumps`` writes it (``["<func>",``), and the typed decoder of that job."""
_HEAD = max(len(prefix) for prefix, _ in _TYPED_JOBS)


DELETE_FUNC = "trackgate.workers.deletes.delete_data"
"""Dotted path of the job that deletes a deleted website's or account's stored data (the TinyTrail API's
deletes): queued on ``PERSIST_QUEUE``, behind the batches already queued for those sources."""


class DeleteData(msgspec.Struct, kw_only=True):
    """What a TinyTrail API delete left for the workers: the data of sources that no longer exist
    (events, dedupe and quarantine rows, aggregates) and, for an account, its workspace's profiles."""

    source_ids: list[str]
    workspace: str | None = None
    """Set when an account was deleted: its profiles and groups go too."""
    reason: str = ""
    """``website <id>`` or ``account <id>``, for the logs."""
