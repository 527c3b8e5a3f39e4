"""wrk, driven with ``post.lua``: the same threads, connections and timeout for every HTTP phase."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).resolve().parent / "post.lua"


class WrkMissing(RuntimeError):
    pass


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(
            "wrk is not installed. Install it with:\n"
            "    apt-get update && apt-get install -y wrk      (Debian/Ubuntu)\n"
            "    brew install wrk                             (macOS)"
        )
    return path


def wrk_version() -> str:
    out = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True, timeout=10)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].split(" Copyright")[0] if text else "?"


@dataclass
class WrkSettings:
    threads: int = 1
    connections: int = 64
    timeout_s: int = 5

    def args(self) -> list[str]:
        return ["-t", str(self.threads), "-c", str(self.connections), "--timeout", f"{self.timeout_s}s"]


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def non_2xx(self) -> int:
        """Responses with status >= 400 (wrk counts those; this service sends no 3xx)."""
        return self.errors["status"]

    @property
    def socket_errors(self) -> int:
        return sum(v for k, v in self.errors.items() if k != "status")

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0


_LINE = re.compile(r"^WRKJSON (\{.*\})\s*$", re.MULTILINE)


def run_wrk(
    url: str,
    body_file: Path,
    authorization: str,
    duration_s: float,
    settings: WrkSettings,
    tag: str = "",
) -> WrkResult:
    """Load ``url`` for ``duration_s``; ``tag`` prefixes every sequence number (so two runs against
    the same server never send the same message id)."""
    cmd = [
        wrk_path(),
        *settings.args(),
        "-d",
        f"{max(1, round(duration_s))}s",
        "-s",
        str(LUA),
        url,
        "--",
        str(body_file),
        authorization,
        tag,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + settings.timeout_s + 30)
    match = _LINE.search(out.stdout)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed (status {out.returncode}):\n{out.stdout}\n{out.stderr}")
    data = json.loads(match.group(1))
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        errors=data["errors"],
        latency_us=data["latency_us"],
        raw=data,
    )
