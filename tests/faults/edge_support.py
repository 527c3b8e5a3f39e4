"""Real processes for the edge fault tests: the gateway under its own uvicorn configuration
(``python -m trackgate.gateway.server``, as ``trackgate serve`` runs it), and a Redis server of the
test's own that it can freeze (SIGSTOP) and thaw."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import redis

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def gateway_process(settings, **env: object) -> Iterator[tuple[str, subprocess.Popen]]:
    """The gateway in a subprocess on ``settings``' database and Redis, ``env`` as TRACKGATE_* values."""
    port = free_port()
    full_env = {
        **os.environ,
        "TRACKGATE_DATABASE_URL": settings.database_url,
        "TRACKGATE_REDIS_URL": settings.redis_url,
        "TRACKGATE_SOURCE_REFRESH_SECONDS": "0.2",
        "TRACKGATE_LOG_LEVEL": "WARNING",
        **{f"TRACKGATE_{k.upper()}": str(v) for k, v in env.items()},
    }
    cmd = [sys.executable, "-m", "trackgate.gateway.server", "trackgate.gateway.asgi:app_from_env"]
    cmd += ["--factory", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start (exit {proc.poll()})")
            time.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RedisServer:
    """A redis-server of the test's own (no persistence) that it may freeze and thaw."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.thaw()
        self.proc.terminate()
        self.proc.wait(timeout=10)


def open_socket(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or ``limit`` seconds pass); and when it closed."""
    started = time.monotonic()
    sock.settimeout(0.2)
    data = b""
    while time.monotonic() - started < limit:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def read_response(sock: socket.socket, timeout: float = 5) -> bytes:
    """One whole response (head and its Content-Length body) from a kept-alive connection."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
