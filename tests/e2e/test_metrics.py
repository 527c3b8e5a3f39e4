"""``GET /metrics`` after a known load: the counters equal what was sent and what the worker did.

In one process (the app and a burst worker, no multiprocess directory), and in the deployment's shape:
``trackgate serve --workers 2`` and ``trackgate worker --burst`` as separate processes sharing one
``PROMETHEUS_MULTIPROC_DIR``, where a scrape must sum every process's counts.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import msgspec
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tests.helpers import free_port, stored
from trackgate.gateway.app import create_app
from trackgate.gateway.counting import FLUSH_SECONDS
from trackgate.schemas.jobs import PERSIST_QUEUE
from trackgate.sources import add_source

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "trackgate.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(text: str) -> Samples:
    """Every sample of a Prometheus text page by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def track(message_id: str, write_key: str) -> dict:
    return {
        "type": "track",
        "event": "Clicked",
        "userId": "u1",
        "messageId": message_id,
        "writeKey": write_key,
    }


def ca_event(event_id: str) -> dict:
    context = {"event_id": event_id, "event_timestamp": 1639044446636}
    return {"event_name": "search", "search_term": "t", "user": {"id": "u1"}, "context": context}


@pytest.fixture
def ca_key(settings) -> str:
    key = "ca_" + secrets.token_hex(8)
    add_source(settings.database_url, "commandersact", "shop", key)
    return key


def test_counters_equal_the_load_sent_and_what_the_worker_stored(settings, write_key, ca_key, db, drain):
    # every flush lingers (in a test process, how busy it is depends on the test runner's own work), and
    # long enough that the flusher, however late it runs, still finds its request waiting
    always = msgspec.structs.replace(settings, publish_linger_above_cpu_pct=0, publish_linger_ms=20)
    with TestClient(create_app(always)) as api:
        before = scrape(api.get("/metrics").text)
        for i in range(5):
            assert api.post("/v1/track", json=track(f"m{i}", write_key)).status_code == 200
        for _ in range(2):  # the same message again: accepted, then a duplicate for the worker
            assert api.post("/v1/track", json=track("m0", write_key)).status_code == 200
        bad_key = [api.post("/v1/track", json=track("x", "wrong-key")) for _ in range(3)]
        not_json = [
            api.post("/v1/track", content=b"{nope", headers={"content-type": "application/json"})
            for _ in range(2)
        ]
        # Commanders Act: 200 for a batch with one item it cannot accept, which goes to quarantine
        bad_item = {"event_name": "sign_up", "context": {}}
        r = api.post(
            f"/events/batch?token={ca_key}", json={"batch": [ca_event("c1"), bad_item, ca_event("c2")]}
        )
        assert r.status_code == 200 and r.json()["accepted"] == 2
        queued = scrape(api.get("/metrics").text)
        drain()
        page = api.get("/metrics").text
        after = scrape(page)

    sent = Counter((r.status_code, r.json()["code"]) for r in bad_key + not_json)
    assert sent == {(401, bad_key[0].json()["code"]): 3, (400, not_json[0].json()["code"]): 2}
    assert delta(before, after, "trackgate_requests_accepted_total", dialect="segment") == 7
    assert delta(before, after, "trackgate_requests_accepted_total", dialect="commandersact") == 1
    for (status, code), n in sent.items():
        labels = {"dialect": "segment", "status": str(status), "reason": code}
        assert delta(before, after, "trackgate_requests_refused_total", **labels) == n
    assert delta(before, after, "trackgate_events_accepted_total", dialect="segment") == 7
    assert delta(before, after, "trackgate_events_accepted_total", dialect="commandersact") == 2
    assert delta(before, after, "trackgate_request_duration_seconds_count", dialect="segment") == 12
    assert delta(before, after, "trackgate_request_bytes_total", dialect="segment") > 0
    # one request at a time: each flush (after its linger) carried one
    assert delta(before, after, "trackgate_publish_flushes_total") == 8
    assert delta(before, after, "trackgate_publish_flushed_requests_total") == 8
    assert delta(before, after, "trackgate_publish_lingered_flushes_total") == 8

    # what the worker did, once it ran
    assert value(queued, "trackgate_queue_depth", queue=PERSIST_QUEUE) == 8  # one job per 2xx
    assert value(queued, "trackgate_queue_oldest_job_age_seconds", queue=PERSIST_QUEUE) > 0
    assert value(after, "trackgate_queue_depth", queue=PERSIST_QUEUE) == 0
    assert value(after, "trackgate_queue_read_ok") == 1
    assert delta(before, after, "trackgate_events_stored_total", dialect="segment") == 5
    assert delta(before, after, "trackgate_events_duplicate_total", dialect="segment") == 2
    assert delta(before, after, "trackgate_events_stored_total", dialect="commandersact") == 2
    assert delta(before, after, "trackgate_events_quarantined_total", stage="gateway") == 1
    assert delta(before, after, "trackgate_store_lag_seconds_count") == 7
    assert delta(before, after, "trackgate_profile_updates_total", kind="profile") >= 1
    assert delta(before, after, "trackgate_profile_lag_seconds_count") >= 1  # outbox rows applied
    assert len(stored(db)) == 7

    # the dashboard kept in the repository asks only for what /metrics serves
    exposed = {family.name for family in text_string_to_metric_families(page)}
    dashboard = json.loads(DASHBOARD.read_text())
    asked = {
        re.sub(r"_(total|bucket)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"trackgate_\w+", target["expr"])
    }
    assert len(asked) >= 14 and asked <= exposed, asked - exposed


# --- the deployment's shape: separate processes, one multiprocess directory -------------------------


@pytest.fixture
def processes_env(settings, tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "TRACKGATE_DATABASE_URL": settings.database_url,
        "TRACKGATE_REDIS_URL": settings.redis_url,
        "TRACKGATE_SOURCE_REFRESH_SECONDS": "0.2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }


@pytest.fixture
def gateway(processes_env, write_key, tmp_path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackgate", "serve", "--workers", "2", "--port", str(port)],
        env=processes_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("gateway did not start: " + (tmp_path / "gateway.log").read_text())
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_a_scrape_sums_every_gateway_and_worker_process(gateway, processes_env, write_key, tmp_path):
    before = scrape(httpx.get(f"{gateway}/metrics").text)
    files = tmp_path / "metrics"

    def serving() -> set[str]:
        """The processes that observed a request's latency (their histogram file)."""
        return {path.stem.rsplit("_", 1)[1] for path in files.glob("histogram_*.db")}

    def send(i: int) -> int:
        # a connection each, so that both gateway processes take requests
        with httpx.Client() as client:
            return client.post(f"{gateway}/v1/track", json=track(f"p{i}", write_key)).status_code

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while sent < 60 or (len(serving()) < 2 and sent < 600):
            assert list(pool.map(send, range(sent, sent + 20))) == [200] * 20
            sent += 20
    assert len(serving()) == 2  # both gateway processes served some
    refused = httpx.post(f"{gateway}/v1/track", json=track("x", "wrong-key"))
    assert refused.status_code == 401

    worker = subprocess.run(
        [sys.executable, "-m", "trackgate", "worker", "--burst", "--queue", "persist"],
        env=processes_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    # each gateway process hands its counts over once a second: wait that long for the other's
    time.sleep(FLUSH_SECONDS + 0.5)
    after = scrape(httpx.get(f"{gateway}/metrics").text)

    # the scrape answered by one process counts what both served
    counted_by = {path.stem.rsplit("_", 1)[1] for path in files.glob("counter_*.db")}
    assert len(counted_by) == 4  # two gateway processes, the worker and its profile applier process
    assert delta(before, after, "trackgate_requests_accepted_total", dialect="segment") == sent
    labels = {"dialect": "segment", "status": "401", "reason": refused.json()["code"]}
    assert delta(before, after, "trackgate_requests_refused_total", **labels) == 1
    assert delta(before, after, "trackgate_events_stored_total", dialect="segment") == sent
    assert value(after, "trackgate_queue_depth", queue=PERSIST_QUEUE) == 0
    # both processes' flushes: together they carried every accepted request, eight at most at a time
    assert delta(before, after, "trackgate_publish_flushed_requests_total") == sent
    assert sent / 8 <= delta(before, after, "trackgate_publish_flushes_total") <= sent
    # whether a flush lingered depends on how busy its process was: some, all or none of them
    lingered = delta(before, after, "trackgate_publish_lingered_flushes_total")
    assert 0 <= lingered <= delta(before, after, "trackgate_publish_flushes_total")

    # RQ's four INFO lines a job are DEBUG now: the worker's log has none of them
    log = worker.stdout + worker.stderr
    assert "Job OK" not in log and "Successfully completed" not in log
    assert "batch_stored" in log


def test_metrics_off_leaves_the_route_out(settings):
    from msgspec.structs import replace

    with TestClient(create_app(replace(settings, metrics="off"))) as api:
        assert api.get("/metrics").status_code == 404


def test_worker_log_lines_per_job(settings, write_key, drain, caplog):
    """Measured: INFO lines a persist job logs (RQ's and ours)."""
    import logging

    with TestClient(create_app(settings)) as api:
        for i in range(5):
            assert api.post("/v1/track", json=track(f"l{i}", write_key)).status_code == 200
    with caplog.at_level(logging.INFO):
        from trackgate.workers.worker import build_worker

        build_worker(settings).work(burst=True, with_scheduler=False, logging_level="INFO")
    per_job = [
        r for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith(("rq", "trackgate"))
    ]
    jobs = [r for r in per_job if r.getMessage().startswith("batch_stored")]
    assert len(jobs) == 5
    assert not [
        r for r in per_job if "Job OK" in r.getMessage() or "Successfully completed" in r.getMessage()
    ]


def test_a_worker_serves_its_own_metrics_on_its_port(settings, write_key, tmp_path):
    """Workers that share no directory with a gateway (one container each): TRACKGATE_WORKER_METRICS_PORT."""
    with TestClient(create_app(settings)) as api:
        for i in range(3):
            assert api.post("/v1/track", json=track(f"w{i}", write_key)).status_code == 200
    port = free_port()
    env = {
        **os.environ,
        "TRACKGATE_DATABASE_URL": settings.database_url,
        "TRACKGATE_REDIS_URL": settings.redis_url,
        "TRACKGATE_WORKER_METRICS_PORT": str(port),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackgate", "worker", "--queue", "persist"], env=env, stdout=log, stderr=log
    )
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        stored = 0.0
        while stored < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.TransportError:
                continue
            stored = value(scrape(page), "trackgate_events_stored_total", dialect="segment")
        assert stored == 3, (tmp_path / "worker.log").read_text()
        # the profiles are applied by the worker's applier process, whose counts show on this port too
        applied = 0.0
        while applied < 1 and time.monotonic() < deadline:
            page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            applied = value(scrape(page), "trackgate_profile_lag_seconds_count")
            time.sleep(0.2)
        assert applied >= 1, (tmp_path / "worker.log").read_text()
        # ... and not by the worker itself, which it would do only with no live applier process
        children = psutil.Process(proc.pid).children()
        appliers = [c for c in children if any("spawn_main" in part for part in c.cmdline())]
        assert len(appliers) == 1 and appliers[0].is_running(), [c.cmdline() for c in children]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive  # the applier process ends with its worker


def test_a_taken_worker_metrics_port_is_one_line_that_says_what_to_do(settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            **os.environ,
            "TRACKGATE_DATABASE_URL": settings.database_url,
            "TRACKGATE_REDIS_URL": settings.redis_url,
            "TRACKGATE_WORKER_METRICS_PORT": str(taken.getsockname()[1]),
        }
        done = subprocess.run(
            [sys.executable, "-m", "trackgate", "worker", "--burst"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert "TRACKGATE_WORKER_METRICS_PORT" in done.stderr and "Traceback" not in done.stderr
