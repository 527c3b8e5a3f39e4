"""``trackgate destinations ...`` and ``trackgate replay ...`` against the real database and Redis."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import SECRET_KEY
from trackgate.cli import main


@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.setenv("TRACKGATE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TRACKGATE_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("TRACKGATE_SECRET_KEY", SECRET_KEY)

    def invoke(*args: str, ok: bool = True):
        result = CliRunner().invoke(main, list(args))
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def test_add_list_pause_resume_status_remove(run, db, source_id):
    added = run(
        "destinations",
        "add",
        "segment",
        "--name",
        "rudder",
        "--url",
        "https://rudder.example.com",
        "--credential",
        "write_key=wk-abcdefghijklmnop",
        "--source",
        "web",
        "--include-type",
        "track",
        "--exclude-name",
        "Debug *",
        "--consent",
        "Analytics",
        "--json",
    )
    created = json.loads(added.output)
    assert created["id"].startswith("dst_") and created["kind"] == "segment"
    listed = run("destinations", "list")
    assert "wk-abcdefghijklmnop" not in listed.output
    assert "write_key=…mnop (19 chars)" in listed.output and "rudder.example.com" in listed.output
    (row,) = json.loads(run("destinations", "list", "--json").output)
    assert row["sources"] == [source_id]
    assert row["filters"] == {
        "include_types": ["track"],
        "exclude_names": ["Debug *"],
        "consent": ["Analytics"],
    }
    assert "paused" in run("destinations", "pause", "rudder").output
    assert "(paused)" in run("destinations", "list").output
    run("destinations", "resume", created["id"])
    assert "(paused)" not in run("destinations", "list").output
    status = run("destinations", "status").output
    assert "rudder (segment," in status and "delivered 0 [0]  retrying 0 [0]  dead 0 [0]" in status
    assert run("destinations", "remove", "rudder").output.startswith("removed dst_")
    assert json.loads(run("destinations", "list", "--json").output) == []
    assert "no destination" in run("destinations", "remove", "rudder", ok=False).output


def test_add_refuses_what_cannot_work(run, db, monkeypatch):
    missing = run("destinations", "add", "segment", "--name", "s", ok=False)
    assert missing.exit_code == 2 and "--credential write_key=..." in missing.output
    unknown = run(
        "destinations",
        "add",
        "webhook",
        "--name",
        "w",
        "--url",
        "https://h.example.com",
        "--credential",
        "secret=x",
        "--credential",
        "token=y",
        ok=False,
    )
    assert "takes no credential token" in unknown.output
    no_url = run("destinations", "add", "webhook", "--name", "w", "--credential", "secret=x", ok=False)
    assert "needs --url" in no_url.output
    bad_source = run(
        "destinations",
        "add",
        "webhook",
        "--name",
        "w",
        "--url",
        "https://h.example.com",
        "--credential",
        "secret=x",
        "--source",
        "nope",
        ok=False,
    )
    assert "no source 'nope'" in bad_source.output
    monkeypatch.delenv("TRACKGATE_SECRET_KEY")
    no_key = run(
        "destinations",
        "add",
        "webhook",
        "--name",
        "w",
        "--url",
        "https://h.example.com",
        "--credential",
        "secret=x",
        ok=False,
    )
    assert "set TRACKGATE_SECRET_KEY" in no_key.output
    assert db.execute("SELECT count(*) FROM destinations").fetchone()[0] == 0


def test_the_kinds_offered_are_those_whose_adapter_is_registered(run):
    from trackgate.adapters.registry import ADAPTERS
    from trackgate.workers.destinations import available_kinds

    kinds = available_kinds()
    assert {"segment", "webhook"} <= set(kinds) and set(kinds) <= set(ADAPTERS) | {"webhook"}
    assert f"{{{'|'.join(kinds)}}}" in "".join(run("destinations", "add", "--help").output.split())


def test_replay_file_from_the_command_line(run, db, source_id, tmp_path, drain):
    path = tmp_path / "export.ndjson"
    path.write_text(
        "\n".join(json.dumps({"type": "track", "userId": "u", "event": f"E{i}"}) for i in range(12))
    )
    result = run("replay", "file", str(path), "--source", "web")
    assert "queued 12 event(s) from 12 line(s) in 1 job(s); 0 line(s) refused" in result.output
    assert "done in" in result.output  # the plain progress line (not a terminal here)
    drain()
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 12
    assert "imported already" in run("replay", "file", str(path), "--source", "web").output
    run("replay", "file", str(path), "--source", "web", "--restart")
    drain()
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 12


def test_replay_dead_letters_and_events_from_the_command_line(run, db, source_id):
    run(
        "destinations",
        "add",
        "webhook",
        "--name",
        "w",
        "--url",
        "https://h.example.com",
        "--credential",
        "secret=x",
    )
    assert "requeued 0 dead letter(s), 0 event(s)" in run("replay", "dead-letters", "--since", "2h").output
    assert "no destination 'nope'" in run("replay", "dead-letters", "--destination", "nope", ok=False).output
    out = run("replay", "events", "--source", "web", "--from", "7d", "--destination", "w").output
    assert "queued 0 event(s) in 0 forward job(s)" in out
    assert (
        run(
            "replay", "events", "--source", "web", "--from", "yesterday", "--destination", "w", ok=False
        ).exit_code
        == 2
    )
