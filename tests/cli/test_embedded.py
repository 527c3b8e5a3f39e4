"""The embedded Redis of ``trackgate up``: its socket in the data directory, a leftover server on the same
directory stopped before a new one starts, and no server outliving a killed parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import redis

from trackgate.embedded import EmbeddedRedis


def _wait_gone(pid: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_socket_in_the_data_directory_and_a_leftover_is_stopped(tmp_path):
    first = EmbeddedRedis(tmp_path / "redis")
    url = first.start()
    assert url == f"unix://{tmp_path / 'redis' / 'redis.sock'}"
    old_pid = first.pid
    assert old_pid is not None
    redis.Redis.from_url(url).set("kept", "1")
    second = EmbeddedRedis(tmp_path / "redis")
    try:
        assert second.start() == url  # the same socket: the first server was stopped, saving its data
        assert _wait_gone(old_pid, 1)
        assert redis.Redis.from_url(url).get("kept") == b"1"
    finally:
        second.stop()
        first.stop()


def test_the_server_does_not_outlive_a_killed_parent(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from trackgate.embedded import EmbeddedRedis
        server = EmbeddedRedis(Path({str(tmp_path / "redis")!r}))
        server.start()
        print(server.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert psutil.pid_exists(pid)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    assert _wait_gone(pid, 3), "redis-server outlived its killed parent"
