"""``CpuShare``: busy from a share of one core, with hysteresis, reading the clocks once a window."""

from __future__ import annotations

import threading
import time

import pytest

from trackgate.gateway.cpu_share import BAND, CpuShare


class Clocks:
    """A wall clock and a CPU clock moved by hand; counts the CPU clock's readings."""

    def __init__(self) -> None:
        self.now = 100.0  # and steps of 1/8 s: exact in binary, as the window
        self.used = 5.0
        self.cpu_reads = 0

    def wall(self) -> float:
        return self.now

    def cpu(self) -> float:
        self.cpu_reads += 1
        return self.used

    def run(self, seconds: float, share: float) -> None:
        self.now += seconds
        self.used += seconds * share


def meter(clocks: Clocks, above: float = 0.7) -> CpuShare:
    return CpuShare(above, window=0.125, wall=clocks.wall, cpu=clocks.cpu)


def test_it_starts_idle_and_turns_busy_at_the_threshold():
    clocks = Clocks()
    share = meter(clocks)
    assert share.busy() is False
    clocks.run(0.125, 0.69)
    assert share.busy() is False
    clocks.run(0.125, 0.71)
    assert share.busy() is True
    assert share.share == pytest.approx(0.71)


def test_once_busy_it_stays_busy_until_the_share_falls_below_the_band():
    clocks = Clocks()
    share = meter(clocks)
    clocks.run(0.125, 0.9)
    assert share.busy() is True
    clocks.run(0.125, 0.7 * (1 - BAND) + 0.01)  # below the threshold, inside the band
    assert share.busy() is True
    clocks.run(0.125, 0.7 * (1 - BAND) - 0.01)
    assert share.busy() is False
    clocks.run(0.125, 0.69)  # idle again: the threshold itself applies
    assert share.busy() is False


def test_within_a_window_it_answers_without_reading_the_cpu_clock():
    clocks = Clocks()
    share = meter(clocks)
    reads = clocks.cpu_reads  # the constructor's
    clocks.run(0.0625, 1.0)
    for _ in range(1000):
        assert share.busy() is False  # half a window: not measured yet
    assert clocks.cpu_reads == reads
    clocks.run(0.0625, 1.0)
    assert share.busy() is True
    assert clocks.cpu_reads == reads + 1


def test_a_long_quiet_spell_counts_as_one_window():
    clocks = Clocks()
    share = meter(clocks)
    clocks.run(0.125, 1.0)
    assert share.busy() is True
    clocks.run(30.0, 0.01)  # no flush asked for 30 s
    assert share.busy() is False
    assert share.share == pytest.approx(0.01)


def test_a_low_threshold_still_turns_idle_again():
    clocks = Clocks()
    share = meter(clocks, above=0.15)
    clocks.run(0.125, 0.5)
    assert share.busy() is True
    clocks.run(0.125, 0.15 * (1 - BAND) + 0.01)
    assert share.busy() is True
    clocks.run(0.125, 0.0)
    assert share.busy() is False


def test_zero_is_always_busy():
    clocks = Clocks()
    share = meter(clocks, above=0)
    assert share.busy() is True
    clocks.run(0.125, 0.0)
    assert share.busy() is True


def test_a_negative_threshold_or_an_empty_window_is_refused():
    with pytest.raises(ValueError, match="above must be a share of 0 or more"):
        CpuShare(-0.1)
    with pytest.raises(ValueError, match="window must be more than 0 seconds"):
        CpuShare(0.8, window=0)


def test_the_real_clocks_see_this_thread_spin_and_rest():
    share = CpuShare(0.3, window=0.2)
    spin_until = time.monotonic() + 0.4
    while time.monotonic() < spin_until:
        pass
    assert share.busy() is True, share.share
    time.sleep(0.4)
    assert share.busy() is False, share.share


def test_another_threads_cpu_does_not_count():
    """What queues requests is the event loop's thread being busy; a thread beside it (scripts warming at
    start-up, ``/metrics`` rendering) is not the loop."""
    share = CpuShare(0.3, window=0.2)

    def spin() -> None:
        spin_until = time.monotonic() + 0.4
        while time.monotonic() < spin_until:
            pass

    other = threading.Thread(target=spin)
    other.start()
    other.join()
    assert share.busy() is False, share.share
