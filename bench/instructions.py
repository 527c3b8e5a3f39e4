"""The accept path's cost in instructions: a figure that a shared machine's neighbours do not move.

``python -m bench.instructions`` runs :mod:`bench.inprocess` (the real app, a real Redis, group commit,
the durable ack) under ``valgrind --tool=callgrind`` twice per body, once with few requests and once with
more, and prints the difference of the two totals per request (``/v1/track`` from 64 tasks, and from 2,
whose flushes hold one or two requests: a flush's fixed cost shows whole, as at (f)'s half load) and
per event (``/v1/batch`` of ``--batch`` events): start-up, migrations and warm-up are in both runs and
cancel out. Wall-clock ratios on a 2-core VM swing by ±20% from one run to the next (README,
Benchmark); the same commit gives the same count within ~1% as long as its flushes group alike (run
beside other load, Redis answers slower, flushes group differently, and a batch figure once came out
23% lower), so two commits a few percent apart can be told apart here on an otherwise idle machine.

To compare two commits, run it from each tree (the old one on ``PYTHONPATH``, as ``bench/README.md``
says for the full bench). Needs valgrind (``apt-get install valgrind``); about three minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOTAL = re.compile(r"^(?:==\d+== )?Collected : (\d+)", re.MULTILINE)
"""callgrind's summary line on stderr: the instructions it counted."""


def callgrind_total(args: list[str], out_dir: Path) -> int:
    """Instructions ``python -m bench.inprocess <args>`` executes under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    cmd = [
        valgrind, "--tool=callgrind", f"--callgrind-out-file={out_dir / 'callgrind.out'}",
        sys.executable, "-m", "bench.inprocess", "--rounds", "1", "--redis-timeout", "60", *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise SystemExit(f"bench.inprocess failed under callgrind:\n{done.stdout}{done.stderr[-2000:]}")
    found = TOTAL.search(done.stderr)
    if found is None:
        raise SystemExit(f"no instruction total in callgrind's output:\n{done.stderr[-2000:]}")
    return int(found[1])


def per_request(common: list[str], few: int, more: int, out_dir: Path) -> float:
    """Instructions a request: the two runs' difference over the difference of their requests (each
    run answers ``requests`` twice: its warm-up round and its measured round)."""
    low = callgrind_total([*common, "--requests", str(few)], out_dir)
    high = callgrind_total([*common, "--requests", str(more)], out_dir)
    return (high - low) / (2 * (more - few))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--batch", type=int, default=100, help="events a /v1/batch request (100)")
    args = parser.parse_args()
    servers = ["--postgres", args.postgres, "--redis", args.redis]
    common = [*servers, "--concurrency", "64"]
    print("instructions (callgrind; the difference of two runs of bench.inprocess)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        track = per_request(common, 640, 2560, Path(tmp))
        print(f"  /v1/track              {track / 1000:8.1f}k a request", flush=True)
        # two requests at a time: a flush holds one or two, its fixed cost shows whole ((f)'s concern)
        few = [*servers, "--concurrency", "2"]
        track_few = per_request(few, 320, 1280, Path(tmp))
        print(f"  /v1/track, 2 at a time {track_few / 1000:8.1f}k a request (small flushes)", flush=True)
        batch = per_request([*common, "--batch", str(args.batch)], 64, 256, Path(tmp)) / args.batch
        print(f"  /v1/batch x{args.batch:<4}         {batch / 1000:8.1f}k an event", flush=True)


if __name__ == "__main__":
    main()
