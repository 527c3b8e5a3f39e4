"""``trackgate destinations ...`` and ``trackgate replay ...`` against the real database and Redis."""

from __future__ import annotations

import json


def test_add_list_pause_resume_status_remove(cli, db, source_id):
    added = cli(
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
        ok=True,
    )
    created = json.loads(added.output)
    assert created["id"].startswith("dst_") and created["kind"] == "segment"
    listed = cli("destinations", "list", ok=True)
    assert "wk-abcdefghijklmnop" not in listed.output
    assert "write_key=…mnop (19 chars)" in listed.output and "rudder.example.com" in listed.output
    (row,) = json.loads(cli("destinations", "list", "--json", ok=True).output)
    assert row["sources"] == [source_id]
    assert row["filters"] == {
        "include_types": ["track"],
        "exclude_names": ["Debug *"],
        "consent": ["Analytics"],
    }
    assert "paused" in cli("destinations", "pause", "rudder", ok=True).output
    assert "(paused)" in cli("destinations", "list", ok=True).output
    cli("destinations", "resume", created["id"], ok=True)
    assert "(paused)" not in cli("destinations", "list", ok=True).output
    status = cli("destinations", "status", ok=True).output
    assert "rudder (segment," in status and "delivered 0 [0]  retrying 0 [0]  dead 0 [0]" in status
    assert cli("destinations", "remove", "rudder", ok=True).output.startswith("removed dst_")
    assert json.loads(cli("destinations", "list", "--json", ok=True).output) == []
    assert "no destination" in cli("destinations", "remove", "rudder").output


def test_add_refuses_what_cannot_work(cli, db, monkeypatch):
    missing = cli("destinations", "add", "segment", "--name", "s")
    assert missing.exit_code == 2 and "--credential write_key=..." in missing.output
    unknown = cli(
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
    )
    assert "takes no credential token" in unknown.output
    no_url = cli("destinations", "add", "webhook", "--name", "w", "--credential", "secret=x")
    assert "needs --url" in no_url.output
    bad_source = cli(
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
    )
    assert "no source 'nope'" in bad_source.output
    monkeypatch.delenv("TRACKGATE_SECRET_KEY")
    no_key = cli(
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
    assert "set TRACKGATE_SECRET_KEY" in no_key.output
    assert db.execute("SELECT count(*) FROM destinations").fetchone()[0] == 0


def test_the_kinds_offered_are_those_whose_adapter_is_registered(cli):
    from trackgate.adapters.registry import ADAPTERS
    from trackgate.workers.destinations import available_kinds

    kinds = available_kinds()
    assert {"segment", "webhook"} <= set(kinds) and set(kinds) <= set(ADAPTERS) | {"webhook"}
    assert f"{{{'|'.join(kinds)}}}" in "".join(cli("destinations", "add", "--help", ok=True).output.split())


def test_replay_file_from_the_command_line(cli, db, source_id, tmp_path, drain):
    path = tmp_path / "export.ndjson"
    path.write_text(
        "\n".join(json.dumps({"type": "track", "userId": "u", "event": f"E{i}"}) for i in range(12))
    )
    result = cli("replay", "file", str(path), "--source", "web", ok=True)
    assert "queued 12 event(s) from 12 line(s) in 1 job(s); 0 line(s) refused" in result.output
    assert "done in" in result.output  # the plain progress line (not a terminal here)
    drain()
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 12
    assert "imported already" in cli("replay", "file", str(path), "--source", "web", ok=True).output
    cli("replay", "file", str(path), "--source", "web", "--restart", ok=True)
    drain()
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 12


def test_replay_dead_letters_and_events_from_the_command_line(cli, db, source_id):
    cli(
        "destinations",
        "add",
        "webhook",
        "--name",
        "w",
        "--url",
        "https://h.example.com",
        "--credential",
        "secret=x",
        ok=True,
    )
    assert (
        "requeued 0 dead letter(s), 0 event(s)"
        in cli("replay", "dead-letters", "--since", "2h", ok=True).output
    )
    assert "no destination 'nope'" in cli("replay", "dead-letters", "--destination", "nope").output
    out = cli("replay", "events", "--source", "web", "--from", "7d", "--destination", "w", ok=True).output
    assert "queued 0 event(s) in 0 forward job(s)" in out
    assert (
        cli("replay", "events", "--source", "web", "--from", "yesterday", "--destination", "w").exit_code == 2
    )
