"""``trackgate up`` as a user runs it, on the test servers: the gateway and both workers start, the
printed demo credentials work, an event is stored, and SIGTERM stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil

from tests.helpers import free_port


def test_up_serves_stores_and_stops_on_sigterm(database_url, redis_url, db, rdb, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKGATE_")}
    env |= {
        "TRACKGATE_DATABASE_URL": database_url,
        "TRACKGATE_REDIS_URL": redis_url,
        "TRACKGATE_LOG_LEVEL": "WARNING",
        "TRACKGATE_SECRET_KEY": "a-test-secret-key-that-is-long-enough",
    }
    data_dir = tmp_path / "data"
    log = tmp_path / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trackgate", "up", "--port", str(port), "--data-dir", str(data_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        printed = log.read_text()
        assert f"trackgate is up at {base}" in printed
        demo = json.loads((data_dir / "demo-sources.json").read_text())
        write_key = demo["segment"]["key"]
        assert f"write key: {write_key}" in printed  # the credentials printed are the ones stored
        admin = json.loads((data_dir / "admin-key.json").read_text())
        assert f"{base}/debugger  with the admin API key {admin['key']}" in printed
        debugger = httpx.post(f"{base}/debugger/token", headers={"X-API-KEY": admin["key"]}, timeout=5)
        assert debugger.status_code == 200, debugger.text
        assert f"curl -sS {base}/api/v1/websites -H 'X-API-KEY: {admin['key']}'" in printed
        websites = httpx.get(f"{base}/api/v1/websites", headers={"X-API-KEY": admin["key"]}, timeout=5)
        assert websites.status_code == 200, websites.text
        ids = [website["id"] for website in websites.json()["data"]]
        assert len(ids) == len(demo) and demo["tinytrail"]["key"] in ids  # every demo source is a website
        body = {"userId": "u1", "event": "Signed Up", "messageId": "up-1"}
        sent = httpx.post(f"{base}/v1/track", json=body, auth=(write_key, ""), timeout=5)
        assert sent.json() == {"success": True}
        deadline = time.monotonic() + 30
        while not db.execute("SELECT 1 FROM events WHERE message_id = 'up-1'").fetchone():
            assert time.monotonic() < deadline, "the persist worker did not store the event"
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the persist and the forward worker
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=40)
    assert returncode == 0, log.read_text()
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    assert "Traceback" not in log.read_text()
