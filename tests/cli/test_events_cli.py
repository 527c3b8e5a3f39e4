"""``trackgate events list`` (filters, --full, --json), ``events show`` and ``events tail`` (the live
feed in a terminal) against the real test servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from trackgate.schemas import debug_feed
from trackgate.sources import add_source


@pytest.fixture
def run(cli):
    """The one ``cli`` fixture, asserting success unless told ``ok=False``."""

    def invoke(*args: str, ok: bool = True):
        return cli(*args, ok=ok)

    return invoke


@pytest.fixture
def other_key(settings) -> str:
    add_source(settings.database_url, "segment", "app", "wk_other_source_key")
    return "wk_other_source_key"


def send(client, key: str, **body) -> None:
    assert client.post("/v1/track", json=body, auth=(key, "")).status_code == 200


@pytest.fixture
def events(other_key, client, write_key, drain):
    send(client, write_key, userId="u1", event="Signed Up", messageId="m1", properties={"plan": "pro"})
    send(client, write_key, anonymousId="a2", event="Signed Out", messageId="m2")
    send(client, write_key, userId="u3", event="Order Completed", messageId="m3")
    send(client, other_key, userId="u1", event="Signed Up", messageId="m4")
    assert (
        client.post("/v1/page", json={"userId": "u1", "name": "Home"}, auth=(write_key, "")).status_code
        == 200
    )
    drain()


def listed(run, *args: str) -> list[dict]:
    return [json.loads(line) for line in run("events", "list", "--json", *args).output.splitlines()]


def test_list_filters(run, events):
    assert len(listed(run)) == 5
    assert {e["message_id"] for e in listed(run, "--source", "web")} == {
        "m1",
        "m2",
        "m3",
        listed(run, "--type", "page")[0]["message_id"],
    }
    assert [e["message_id"] for e in listed(run, "--source", "app")] == ["m4"]
    assert {e["message_id"] for e in listed(run, "--type", "track", "--name", "Signed*")} == {
        "m1",
        "m2",
        "m4",
    }
    assert {e["message_id"] for e in listed(run, "--name", "Signed_Up")} == set()  # _ is no wildcard
    assert {e["message_id"] for e in listed(run, "--user", "u1", "--type", "track")} == {"m1", "m4"}
    assert [e["message_id"] for e in listed(run, "--user", "a2")] == ["m2"]  # an anonymous id too
    assert len(listed(run, "--since", "10m")) == 5
    assert listed(run, "--until", "10m") == []
    assert listed(run, "--since", "2999-01-01") == []
    assert len(listed(run, "--limit", "2")) == 2
    bad = run("events", "list", "--source", "nope", ok=False)
    assert bad.exit_code == 1 and bad.output.strip().splitlines() == [
        "Error: no source 'nope' (give its id or name: `trackgate sources list`)"
    ]


def test_list_full_and_show(run, events):
    (summary,) = listed(run, "--name", "Order Completed")
    assert "enrichment" not in summary and summary["user_id"] == "u3"
    (full,) = listed(run, "--name", "Order Completed", "--full")
    assert full["enrichment"]["visitor_id"] and full["raw"]["messageId"] == "m3"
    assert "visitor_id" not in full and "is_bot" not in full  # its columns, shown as the enrichment
    assert (full["type"], full["properties"], full["received_at"][:4]) == (
        "track",
        {},
        summary["received_at"][:4],
    )
    text = run("events", "list", "--name", "Order*").output
    assert "Order Completed" in text and "u3" in text and full["id"] in text
    shown = json.loads(run("events", "show", full["id"]).output)
    assert shown == full
    missing = run("events", "show", "0190b7a4-0000-7000-8000-000000000000", ok=False)
    assert missing.exit_code == 1 and "no event '0190b7a4-" in missing.output
    not_an_id = run("events", "show", "nope", ok=False)
    assert not_an_id.output.strip().splitlines() == [
        "Error: 'nope' is not an event id (a UUID, as `trackgate events list` shows)"
    ]


def test_tail_prints_the_feed_while_it_runs(settings, client, write_key, drain, rdb, source_id):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKGATE_")}
    env |= {"TRACKGATE_DATABASE_URL": settings.database_url, "TRACKGATE_REDIS_URL": settings.redis_url}
    command = [sys.executable, "-m", "trackgate", "events", "tail", "--max-events", "2"]
    as_json = subprocess.Popen(
        [*command, "--json", "--user", "u1"], env=env, stdout=subprocess.PIPE, text=True
    )
    colored = subprocess.Popen([*command, "--source", "web"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not rdb.exists(debug_feed.WATCHERS):
            assert time.monotonic() < deadline, "tail did not start watching"
            time.sleep(0.1)
        time.sleep(0.5)  # both are reading
        from trackgate.workers.debug_feed import WATCH

        WATCH.forget()
        send(client, write_key, userId="u2", event="Skipped By The User Filter", messageId="t0")
        send(client, write_key, userId="u1", event="Signed Up", messageId="t1")
        send(client, write_key, userId="u1", event="Signed Up", messageId="t1")  # a duplicate
        drain()
        out_json, _ = as_json.communicate(timeout=20)
        out_colored, _ = colored.communicate(timeout=20)
    finally:
        for proc in (as_json, colored):
            if proc.poll() is None:
                proc.kill()
    lines = [json.loads(line) for line in out_json.splitlines()]
    assert [(line["kind"], line["user_id"], line["event"]["message_id"]) for line in lines] == [
        ("stored", "u1", "t1"),
        ("duplicate", "u1", "t1"),
    ]
    first, second = out_colored.splitlines()
    assert (
        "STORED" in first and source_id in first and "Skipped By The User Filter" in first and "u2" in first
    )
    assert "STORED" in second and "Signed Up" in second
    assert as_json.returncode == 0 and colored.returncode == 0
