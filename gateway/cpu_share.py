"""Whether this gateway process is busy: the share of one core its threads used lately.

The publisher asks it before each flush (``gateway/publisher.py``): a flush lingers for others to share
it only while the process is busy, because only then does the CPU a shared flush saves matter. With
CPU to spare the wait is mostly cost: at 4,200 requests/s on a 2-core VM (the gateway at 43–69% of a
core, bench (f)) the linger saved 0–20% of the CPU a request (105–146 µs with it, 120–168 without)
and added ~1 ms to the median and 1–1.5 ms to the p99. Near a full core it pays: at 7,500/s on a
noisier VM (77–91% of a core without it) it saved 8–23% of the CPU a request and took the p99 from
14–46 ms to ~4.4 ms.

The share is the process's CPU time (``time.process_time``: all its threads, user and system) over the
wall time since the last reading, taken when asked and at most every ``window`` seconds, so a busy
flusher reads the clocks twice a window, not twice a flush. It turns busy at ``above`` (a share of one
core) and idle again below ``above - HYSTERESIS``: the linger lowers the CPU it is measured by, and a
single threshold would switch it on and off every window.
"""

from __future__ import annotations

import time
from collections.abc import Callable

HYSTERESIS = 0.2
"""How far below ``above`` the share must fall before a busy process counts as idle again."""
WINDOW = 0.25
"""Seconds, at least, between two readings of the clocks."""


class CpuShare:
    """``busy()``: whether the share of one core this process used over the last window is high."""

    __slots__ = ("above", "below", "window", "_wall", "_cpu", "_at", "_used", "_busy", "share")

    def __init__(
        self,
        above: float,
        *,
        window: float = WINDOW,
        wall: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.process_time,
    ):
        if above < 0:
            raise ValueError(f"above must be a share of 0 or more, not {above}")
        self.above = above
        self.below = max(0.0, above - HYSTERESIS)
        self.window = window
        self._wall = wall
        self._cpu = cpu
        self._at = wall()
        self._used = cpu()
        self._busy = above == 0
        self.share = 0.0
        """The share of one core measured over the last window (0 until a window has passed)."""

    def busy(self) -> bool:
        now = self._wall()
        elapsed = now - self._at
        if elapsed >= self.window:
            used = self._cpu()
            self.share = share = (used - self._used) / elapsed
            self._at, self._used = now, used
            self._busy = share >= (self.below if self._busy else self.above)
        return self._busy
