"""Whether this gateway process is busy: the share of one core its event loop's thread used lately.

When ``TRACKGATE_PUBLISH_LINGER_ABOVE_CPU_PCT`` is set (it is 0, off, by default), the publisher asks it
before each flush (``gateway/publisher.py``): a flush lingers for others to share it only while the
process is busy, because only then does the CPU a shared flush saves matter. With CPU to spare the wait
is mostly cost: at 4,200 requests/s on a 2-core VM (the gateway at 43–69% of a
core, bench (f)) the linger saved 0–20% of the CPU a request (105–146 µs with it, 120–168 without)
and added ~1 ms to the median and 1–1.5 ms to the p99. Near a full core it pays: at 7,500/s on a
noisier VM (77–91% of a core without it) it saved 8–23% of the CPU a request and took the p99 from
14–46 ms to ~4.4 ms.

The share is the CPU time of the thread that asks (``time.thread_time``, user and system: the
publisher asks from the event loop's thread, whose saturation queues every request; a thread warming
scripts at start-up or rendering ``/metrics`` does not count) over the wall time since the last
reading. It is taken when asked, at most once every ``window`` seconds: a busy flusher reads the wall
clock on each flush and the CPU clock once a window. It turns busy at ``above`` (a share of one core)
and idle again below ``above * (1 - BAND)``: the linger lowers the CPU it is measured by (by up to ~20%),
and a single threshold would switch it on and off every window.

The threshold is a share of one core, as the event loop can use no more. Under a CPU limit below it (a
container's ``500m``, say) the loop never reaches it and the linger stays off: set
``TRACKGATE_PUBLISH_LINGER_ABOVE_CPU_PCT`` below the limit there. What it does not see is a neighbour
taking the CPU: the loop's own CPU time does not grow then, but its requests wait, and that is where
the linger's saving kept the tail down (on a noisy VM, at 4,200/s: p99 9.5–12.0 ms always lingering,
9.4–17.7 with the threshold at 80%, 11.8–23.7 without a linger). Hence off by default.
"""

from __future__ import annotations

import time
from collections.abc import Callable

BAND = 0.25
"""How far below ``above``, as a part of it, the share must fall before a busy process counts as idle
again (80% of a core: below 60%)."""
WINDOW = 0.25
"""Seconds, at least, between two readings of the clocks."""


class CpuShare:
    """``busy()``: whether the share of one core the calling thread used over the last window is high.
    Asked from one thread only (the event loop's)."""

    __slots__ = ("above", "below", "window", "_wall", "_cpu", "_at", "_used", "_busy", "share")

    def __init__(
        self,
        above: float,
        *,
        window: float = WINDOW,
        wall: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.thread_time,
    ):
        if above < 0:
            raise ValueError(f"above must be a share of 0 or more, not {above}")
        if window <= 0:
            raise ValueError(f"window must be more than 0 seconds, not {window}")
        self.above = above
        self.below = above * (1 - BAND)
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
