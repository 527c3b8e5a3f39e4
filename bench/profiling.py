"""Optional sampling profiles (``--profile DIR``): py-spy attached for exactly the measured window.

Each phase writes ``DIR/<phase>.txt`` (py-spy's collapsed-stack "raw" format, loadable by speedscope
or flamegraph.pl) and ``DIR/<phase>.top.txt`` (the functions with the most samples, self and total).
Throughput measured while py-spy samples is a little lower; use a run without ``--profile`` for figures.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

RATE = 250


def py_spy() -> str | None:
    return shutil.which("py-spy")


def attach(
    pid: int, out: Path, *, duration_s: float | None = None, idle: bool = False, subprocesses: bool = False
) -> Callable[[], None]:
    """Start sampling ``pid`` (and its child processes, ``subprocesses``: a worker's profile applier);
    returns a function that stops sampling and writes the summary."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw", "--output", str(out)]
    cmd += ["--nonblocking"]
    if idle:
        cmd.append("--idle")
    if subprocesses:
        cmd.append("--subprocesses")
    if duration_s is not None:
        cmd += ["--duration", str(max(1, round(duration_s)))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # py-spy needs a moment to attach

    def stop() -> None:
        if duration_s is None and proc.poll() is None:
            proc.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        try:
            proc.wait(timeout=(duration_s or 0) + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if out.exists():
            out.with_suffix(".top.txt").write_text(summarize(out))

    return stop


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")
_SITE = re.compile(r".*/(site-packages|lib/python3\.\d+)/")


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = _SITE.sub("", m.group("file"))
    if "/work/" in file:
        file = file.split("/", 3)[-1] if file.startswith("/") else file
        file = re.sub(r"^.*?/(gateway|workers|adapters|schemas|bench)/", r"\1/", file)
    return f"{m.group('func')} ({file})"


def summarize(path: Path, top: int = 40) -> str:
    """Self and total sample shares per function, from py-spy's raw (collapsed) output."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        self_counts[frames[-1]] += n
        for name in set(frames):
            total_counts[name] += n
    if not samples:
        return "no samples\n"
    lines = [f"{samples} samples at {RATE} Hz", "", f"top {top} by self time:"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in self_counts.most_common(top)]
    lines += ["", f"top {top} by total time (including callees):"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in total_counts.most_common(top)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        print(f"== {arg}")
        print(summarize(Path(arg), top=int(__import__("os").environ.get("TOP", "40"))))
