"""Deadlines for many concurrent requests, kept by one coarse timer instead of one timer each.

``asyncio.timeout`` schedules a timer per use: under uvloop a ``call_at`` and its cancel cost ~5 µs
(a libuv timer started and closed), ~6 µs with the context manager's bookkeeping, a tenth of what the
whole accept path may cost. A request body's deadline almost never fires (the body comes with the
head), so :class:`Deadlines` keeps the watched blocks in a set and one timer, running only while
something is watched, cancels those past their deadline every ``resolution`` seconds. A deadline
fires between ``seconds`` and ``seconds + resolution`` after it was set.

A block that overstays ends as under ``asyncio.timeout``: its task is cancelled, and the
``CancelledError`` leaving the block becomes ``TimeoutError`` (a cancellation from elsewhere is not
swallowed: the task's cancel count is compared as ``asyncio.timeout`` does).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol


class Watched(Protocol):
    """What a :class:`Deadlines` watches: when it is due (the loop's clock), and what then."""

    due: float

    def fire(self) -> None: ...


class Deadlines:
    """``with deadlines.within(seconds): ...`` inside a task; or any :class:`Watched` (``add``, ``discard``:
    uvicorn's protocol watches a request's head so). One per application or server (its loop's)."""

    def __init__(self, resolution: float) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self.resolution = resolution
        self._watched: set[Watched] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_timeout(cls, timeout: float) -> Deadlines:
        """Deadlines of ``timeout`` seconds, fired at most a quarter of it (and at most 1 s) late."""
        return cls(min(1.0, timeout / 4))

    def within(self, seconds: float) -> Deadline:
        return Deadline(self, seconds)

    def add(self, watched: Watched, loop: asyncio.AbstractEventLoop) -> None:
        """Call ``watched.fire()`` once it is due (unless discarded before); adding it again moves it."""
        if loop is not self._loop:  # another loop (tests run an app in one after another): start afresh
            self._loop, self._watched, self._timer = loop, set(), None
        self._watched.add(watched)
        if self._timer is None:
            self._timer = loop.call_later(self.resolution, self._sweep, loop)

    def discard(self, watched: Watched) -> None:
        self._watched.discard(watched)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return
        now = loop.time()
        for watched in [w for w in self._watched if w.due <= now]:
            self._watched.discard(watched)
            watched.fire()
        self._timer = loop.call_later(self.resolution, self._sweep, loop) if self._watched else None


class Deadline:
    """One watched block (a sync context manager: entering and leaving it awaits nothing)."""

    __slots__ = ("_owner", "_seconds", "_task", "cancelling", "due", "fired", "loop")

    def __init__(self, owner: Deadlines, seconds: float) -> None:
        self._owner = owner
        self._seconds = seconds
        self.fired = False

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is kept inside a task")
        self._task = task
        self.loop = task.get_loop()
        self.cancelling = task.cancelling()
        self.due = self.loop.time() + self._seconds
        self._owner.add(self, self.loop)
        return self

    def fire(self) -> None:
        self.fired = True
        self._task.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._owner.discard(self)
        if self.fired and self._task.uncancel() <= self.cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
