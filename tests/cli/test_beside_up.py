"""The CLI beside a running ``trackgate up`` (issue 13): ``up`` runs with its embedded servers in a
temporary directory, and every command, run from a second process with no ``TRACKGATE_*`` variable,
finds it by its data directory. A source added works on the next request and a disabled one is
refused on the next request; a destination can be tried against a local capture server. ``up`` killed
with SIGKILL leaves no Redis or worker behind, a new ``up`` on the same directory starts, and Ctrl-C
stops it within seconds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil

from tests.helpers import free_port

STOP_SECONDS = 2.0


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRACKGATE_")}


def start_up(directory: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = directory / f"up-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trackgate", "up", "--port", str(port)],
            cwd=directory,
            env=_clean_env() | {"TRACKGATE_LOG_LEVEL": "WARNING"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to a terminal's foreground group: `up` alone here
        )
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, log
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def cli(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A command as a user types it in another shell, in the same directory, with no TRACKGATE_*."""
    return subprocess.run(
        [sys.executable, "-m", "trackgate", *args],
        cwd=directory,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextmanager
def capture_server() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP server that answers 200 and keeps what it was sent."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"captured":true}')

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_every_command_finds_a_running_up(tmp_path):
    port = free_port()
    proc, log = start_up(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    children: list[psutil.Process] = []
    try:
        data_dir = tmp_path / ".trackgate"
        assert (data_dir / "redis" / "redis.sock").exists()  # the socket lives in the data directory
        assert (data_dir / "secret-key").stat().st_mode & 0o777 == 0o600
        assert (data_dir / "up.json").stat().st_mode & 0o777 == 0o600

        # events list: an event sent to the demo source shows up
        demo = json.loads((data_dir / "demo-sources.json").read_text())
        body = {"userId": "u1", "event": "Beside Up", "messageId": "beside-up-1"}
        sent = httpx.post(f"{base}/v1/track", json=body, auth=(demo["segment"]["key"], ""), timeout=5)
        assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 30
        while True:
            listed = cli(tmp_path, "events", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            if "beside-up-1" in listed.stdout:
                break
            assert time.monotonic() < deadline, "the event never appeared in `events list`"
            time.sleep(0.3)

        # the management API under `up`: a user made with up's admin key gets a key, shown again later
        # (the gateway encrypts it with the secret key `up` generated)
        admin = {"X-API-KEY": json.loads((data_dir / "admin-key.json").read_text())["key"]}
        account = httpx.post(f"{base}/api/v1/accounts", json={"name": "Acme"}, headers=admin, timeout=5)
        assert account.status_code == 201, account.text
        user = httpx.post(
            f"{base}/api/v1/users",
            json={"account_id": account.json()["data"]["id"], "role": "user"},
            headers=admin,
            timeout=5,
        )
        assert user.status_code == 201, user.text
        created = user.json()["data"]
        shown = httpx.get(f"{base}/api/v1/users/{created['id']}/api-key", headers=admin, timeout=5)
        assert shown.status_code == 200, shown.text
        assert shown.json()["data"]["apiKey"] == created["apiKey"]
        websites = httpx.get(f"{base}/api/v1/websites", headers={"X-API-KEY": created["apiKey"]}, timeout=5)
        assert (websites.status_code, websites.json()["data"]) == (200, [])

        # events tail: it sees an event sent after it started
        tail = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trackgate",
                "events",
                "tail",
                "--json",
                "--max-events",
                "1",
                "--name",
                "Tailed*",
            ],
            cwd=tmp_path,
            env=_clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(3)  # it starts watching; workers and the gateway look at most once a second
            body = {"userId": "u1", "event": "Tailed Event", "messageId": "beside-up-tail"}
            sent = httpx.post(f"{base}/v1/track", json=body, auth=(demo["segment"]["key"], ""), timeout=5)
            assert sent.status_code == 200, sent.text
            out, err = tail.communicate(timeout=30)
        finally:
            tail.kill()
        assert tail.returncode == 0, err
        (line,) = [json.loads(text) for text in out.splitlines()]
        assert (line["kind"], line["name"], line["event"]["message_id"]) == (
            "stored",
            "Tailed Event",
            "beside-up-tail",
        )

        # destinations add + test against a local capture server
        with capture_server() as (capture_url, received):
            added = cli(
                tmp_path, "destinations", "add", "webhook", "--name", "capture",
                "--url", f"{capture_url}/hook", "--credential", "secret=capture-secret",
            )  # fmt: skip
            assert added.returncode == 0, added.stderr  # the generated secret key encrypts it
            tried = cli(tmp_path, "destinations", "test", "capture")
            assert tried.returncode == 0, tried.stdout + tried.stderr
            assert "HTTP 200" in tried.stdout and '{"captured":true}' in tried.stdout
            assert len(received) == 1 and received[0]["path"] == "/hook"
            sent_events = json.loads(received[0]["body"])["events"]
            assert [e["name"] for e in sent_events] == ["trackgate test"]
            assert received[0]["headers"]["trackgate-signature"].startswith("t=")

        # sources add, then at once a request with its key: 200
        added = cli(tmp_path, "sources", "add", "segment", "--name", "fresh", "--json")
        assert added.returncode == 0, added.stderr
        key = json.loads(added.stdout)["write_key"]
        track = {"userId": "u2", "event": "Right Away"}
        assert httpx.post(f"{base}/v1/track", json=track, auth=(key, ""), timeout=5).status_code == 200

        # sources disable, then at once a request with that key: 401
        disabled = cli(tmp_path, "sources", "disable", "fresh")
        assert disabled.returncode == 0, disabled.stderr
        assert "did not confirm" not in disabled.stderr
        assert httpx.post(f"{base}/v1/track", json=track, auth=(key, ""), timeout=5).status_code == 401

        # rotate-key: the old key fails at once, the new one works at once
        cli(tmp_path, "sources", "enable", "fresh")
        rotated = cli(tmp_path, "sources", "rotate-key", "fresh")
        assert rotated.returncode == 0, rotated.stderr
        new_key = rotated.stdout.strip().rsplit(": ", 1)[1]
        assert httpx.post(f"{base}/v1/track", json=track, auth=(key, ""), timeout=5).status_code == 401
        assert httpx.post(f"{base}/v1/track", json=track, auth=(new_key, ""), timeout=5).status_code == 200

        # SIGKILL: the embedded Redis and the workers die with `up`
        redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any(child.pid == redis_pid for child in children)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 5
        while not all(_gone(child.pid) for child in children):
            assert time.monotonic() < deadline, [c.cmdline() for c in children if not _gone(c.pid)]
            time.sleep(0.1)
        gone = cli(tmp_path, "sources", "list")  # a killed `up`'s file is not believed
        assert gone.returncode == 2 and "TRACKGATE_DATABASE_URL" in gone.stderr, gone.stderr

        # a new `up` on the same data directory starts (PostgreSQL's leftover is reused) ...
        proc, log = start_up(tmp_path, port)
        assert "fresh" in cli(tmp_path, "sources", "list").stdout
        # ... and stops within seconds of Ctrl-C, saying what it waits for
        time.sleep(1)  # the workers are up and idle
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
        took = time.monotonic() - started
        printed = log.read_text()
        assert "stopping Redis" in printed and printed.rstrip().endswith("stopped")
        assert took < STOP_SECONDS * 1.5, f"Ctrl-C took {took:.1f} s"
        assert "Traceback" not in printed
        assert not (data_dir / "up.json").exists()
        # ... and starts again at once on the same port (the stopped one's TIME-WAIT sockets do not count)
        proc, log = start_up(tmp_path, port)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for child in children:  # what a failed assertion above may have left
            if not _gone(child.pid):
                child.kill()
        # PostgreSQL, left running by the SIGKILL above if the second `up` never started: fast shutdown
        postmaster = tmp_path / ".trackgate" / "postgres" / "postmaster.pid"
        if postmaster.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(postmaster.read_text().split()[0]), signal.SIGINT)
