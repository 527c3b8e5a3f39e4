"""The HTTP servers under test, each in its own subprocess with identical uvicorn settings, the
gateway's own (``trackgate.gateway.server.uvicorn_config``: uvloop, httptools with its header
deadline and cap, no access log, its connection cap): one process, bound to 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

UVICORN_SETTINGS = ["--log-level", "warning"]
"""Besides ``trackgate.gateway.server.uvicorn_options`` (uvloop, httptools, no access log, limits)."""


PORT = int(os.environ.get("BENCH_PORT", "0"))
"""The port every server under test binds (one runs at a time); 0: a free one picked per server."""


def free_port() -> int:
    if PORT:
        return PORT
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def uvicorn_command(app: str, port: int, *, factory: bool = False) -> list[str]:
    server = "trackgate.gateway.server"
    cmd = [sys.executable, "-m", server, app, "--host", HOST, "--port", str(port), *UVICORN_SETTINGS]
    if factory:
        cmd.append("--factory")
    return cmd


def _ready(url: str, method: str, headers: dict[str, str], body: bytes | None) -> bool:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def serve(
    app: str,
    *,
    factory: bool = False,
    env: dict[str, str] | None = None,
    ready_path: str = "/health",
    ready_method: str = "GET",
    ready_headers: dict[str, str] | None = None,
    ready_body: bytes | None = None,
    timeout: float = 30.0,
    port: int = 0,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``app`` under uvicorn until the block exits; yields (base URL, process).

    On exit the server gets SIGTERM and shuts down gracefully (the gateway's lifespan flushes what
    its publisher holds), so whatever it acknowledged or still had in flight is in Redis afterwards.
    ``port``: the port to listen on (0: a free one).
    """
    port = port or free_port()
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        uvicorn_command(app, port, factory=factory), cwd=REPO, env=full_env, start_new_session=True
    )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _ready(base + ready_path, ready_method, ready_headers or {}, ready_body):
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited with status {proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app} was not ready within {timeout:.0f}s")
            time.sleep(0.1)
        yield base, proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
