"""The workers' RQ job class: a job's data is inflated only when it is first read, and by ISA-L.

RQ's ``Job.restore`` inflates the ``data`` field of every job it reads with zlib. The worker reads
jobs it never runs from that data: the reliable worker's group take (``workers/reliable.py``) fetches
the jobs queued behind a dequeued one and puts back those that would take the group over its size
(read from the job's description, :func:`trackgate.schemas.jobs.described_size`), and the keeper's
recovery reads only a job's state. :class:`PackedJob` keeps the stored bytes until ``data`` (its
function, arguments) is asked for.

The data is the same zlib stream (or plain JSON) either way: ``isal_zlib`` (ISA-L, python-isal) reads
any zlib stream ~2.4x as fast as the standard library (a 3,125-event job: 1.3-1.6 µs an event
against 3.0-3.8; ``bench/README.md``), so a job written by any gateway is read by any worker.

Its timestamps (``created_at``, ``enqueued_at``, ...) are read by :func:`parse_stamp`, not by RQ's
``utcparse`` (``datetime.strptime``, ~8 µs each): the same value from RQ's own format, ~20x faster.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, cast

from isal import isal_zlib
from rq.job import Job
from rq.utils import str_to_date

_NOT_ZLIB = cast(type[Exception], isal_zlib.error)
"""What isal_zlib raises for data that is not a zlib stream (python-isal's stub types it as a value)."""


def inflate(stored: bytes) -> bytes:
    """A job's stored data as its serializer reads it: inflated, or as is when it is not zlib
    (``TRACKGATE_JOB_COMPRESS_LEVEL=0``), as RQ's ``Job.restore`` does."""
    try:
        return isal_zlib.decompress(stored)
    except _NOT_ZLIB:
        return stored


_STAMPS = ("created_at", "enqueued_at", "started_at", "ended_at", "last_heartbeat")
"""The job hash's timestamps, as RQ's ``Job.restore`` reads them (an empty one counts as unset)."""
_RQ_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII)
_STAMP_KEYS = frozenset(_STAMPS) | frozenset(name.encode() for name in _STAMPS)


def parse_stamp(value: bytes | str) -> datetime:
    """A timestamp of a job's hash as RQ's ``str_to_date`` reads it: RQ's own format
    (``%Y-%m-%dT%H:%M:%S.%fZ``, ``utcformat``) by ``datetime.fromisoformat``, anything else by RQ."""
    text = value.decode() if isinstance(value, bytes) else value
    if _RQ_STAMP.fullmatch(text):
        try:
            return datetime.fromisoformat(text[:26]).replace(tzinfo=UTC)
        except ValueError:  # a day or an hour out of range: RQ's own error
            pass
    return str_to_date(value)


class PackedJob(Job):
    """RQ's Job, its data inflated when ``data``, ``func_name``, ``args`` or ``kwargs`` is first read
    rather than when the job is fetched. Everything else of the hash is read as RQ reads it."""

    _packed: bytes | None = None
    """The data field as stored, until it is inflated."""

    def restore(self, raw_data: Any) -> Any:
        stored = raw_data.get(b"data", raw_data.get("data")) if isinstance(raw_data, dict) else None
        if stored is None:  # no data: RQ's own error (NoSuchJobError)
            return super().restore(raw_data)
        others = {}
        stamps = []
        for key, value in raw_data.items():
            if key in _STAMP_KEYS:
                if value:
                    stamps.append((key.decode() if isinstance(key, bytes) else key, value))
            elif key not in (b"data", "data"):
                others[key] = value
        others[b"data"] = b""  # RQ restores the rest (b"" is not zlib: taken as is, then replaced)
        restored = super().restore(others)
        self._packed = stored
        # RQ's restore set them to None (created_at: now); the stored values, read as RQ reads them
        for name, value in stamps:
            setattr(self, name, parse_stamp(value))
        return restored

    @property
    def inflated(self) -> bool:
        """Whether the stored data has been inflated (or there was none to inflate)."""
        return self._packed is None

    @property  # type: ignore[override]
    def data(self) -> bytes:
        if self._packed is not None:
            stored, self._packed = self._packed, None
            Job.data.fset(self, inflate(stored))  # type: ignore[attr-defined]
        return Job.data.fget(self)  # type: ignore[attr-defined]

    @data.setter
    def data(self, value: bytes) -> None:
        self._packed = None
        Job.data.fset(self, value)  # type: ignore[attr-defined]
