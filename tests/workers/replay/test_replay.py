"""Replays: archive files into the pipeline, stored events to a destination. Real PostgreSQL + Redis."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import respx

from tests.helpers import queued_jobs, stored
from trackgate.workers import replay
from trackgate.workers.forward import outbox
from trackgate.workers.replay import files as archive

HOOK = "https://hooks.example.com/backfill"


def archive_lines(n: int) -> list[dict]:
    """Raw Segment payloads as SDKs posted them: batches, single messages, some without messageId."""
    lines = []
    for i in range(n):
        if i % 3 == 0:
            lines.append(
                {
                    "batch": [
                        {
                            "type": "track",
                            "userId": f"u{i}",
                            "event": "Order Completed",
                            "messageId": f"m{i}-a",
                            "timestamp": "2024-05-01T10:00:00Z",
                        },
                        {
                            "type": "identify",
                            "userId": f"u{i}",
                            "traits": {"email": f"u{i}@example.com"},
                            "timestamp": "2024-05-01T10:00:01Z",
                        },
                    ],
                    "sentAt": "2024-05-01T10:00:02Z",
                }
            )
        elif i % 3 == 1:
            lines.append(
                {"type": "page", "anonymousId": f"a{i}", "name": "Home", "timestamp": "2024-05-01T11:00:00Z"}
            )
        else:
            lines.append({"type": "track", "userId": f"u{i}", "event": "Signed Up", "messageId": f"m{i}"})
    return lines


def write(path, lines, *, gz=False, bad: dict[int, str] | None = None):
    text = []
    for index, line in enumerate(lines, start=1):
        text.append((bad or {}).get(index, json.dumps(line)))
    data = ("\n".join(text) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def count(db) -> int:
    return db.execute("SELECT count(*) FROM events").fetchone()[0]


@pytest.mark.parametrize("gz", [False, True])
def test_replay_file_imports_an_archive_once(tmp_path, settings, source_id, drain, db, gz):
    path = write(tmp_path / ("archive.ndjson.gz" if gz else "archive.ndjson"), archive_lines(30), gz=gz)
    out = io.StringIO()
    counts = replay.replay_file(settings, path, "web", batch_events=7, out=out)
    assert counts == {"events": 40, "lines": 30, "refused": 0, "quarantined": 0, "jobs": 6}
    assert queued_jobs_total(db, settings) == 6
    drain()
    rows = stored(db)
    assert len(rows) == 40
    assert {r["source_id"] for r in rows} == {source_id}
    assert {r["type"] for r in rows} == {"track", "identify", "page"}
    # a historical batch keeps its own times (arrival taken from its sentAt)
    order = next(r for r in rows if r["message_id"] == "m0-a")
    assert order["timestamp"] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert "done in" in out.getvalue() and "events=40" in out.getvalue()  # plain lines off a terminal

    # the same file again: the checkpoint says it is done
    again = replay.replay_file(settings, path, "web", out=io.StringIO())
    assert again["already"] == 1
    # and even ignoring the checkpoint, derived message ids make it store nothing new
    replay.replay_file(settings, path, "web", restart=True, out=io.StringIO())
    drain()
    assert count(db) == 40


def queued_jobs_total(db, settings) -> int:
    import redis

    return queued_jobs(redis.Redis.from_url(settings.redis_url))


def test_replay_file_refuses_bad_lines_and_keeps_going(tmp_path, settings, source_id, drain, db):
    lines = archive_lines(6)
    path = write(
        tmp_path / "a.ndjson", lines, bad={2: "{not json", 3: json.dumps({"type": "track", "userId": "u"})}
    )
    counts = replay.replay_file(settings, path, source_id, out=io.StringIO())
    assert (counts["lines"], counts["refused"]) == (6, 2)  # invalid JSON; a track without its event
    drain()
    assert count(db) == 6  # lines 1 and 4 are batches of two
    kept = db.execute("SELECT source_id, code, reason, raw FROM quarantine ORDER BY reason").fetchall()
    assert [(r[0], r[1], r[2].split(":")[0], r[3]) for r in kept] == [
        (source_id, "invalid_json", "line 2", "{not json"),
        (
            source_id,
            kept[1][1],
            "line 3",
            json.dumps({"type": "track", "userId": "u"}, separators=(",", ":")),
        ),
    ]
    assert kept[1][1] != "invalid_json"
    # the same file again (--restart): the refused lines are not quarantined twice
    replay.replay_file(settings, path, source_id, restart=True, out=io.StringIO())
    drain()
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 2


def test_replay_file_command_prints_a_summary_and_fails_on_refused_lines(tmp_path, cli, source_id, db):
    path = write(tmp_path / "a.ndjson", archive_lines(3), bad={2: "{not json"})
    refused = cli("replay", "file", str(path), "--source", source_id)
    assert refused.exit_code == 1
    assert "from 3 line(s) in 1 job(s); 1 line(s) refused, 1 item(s) to the quarantine" in refused.output
    assert "1 line(s) refused: see `trackgate quarantine list`" in refused.output
    allowed = cli("replay", "file", str(path), "--source", source_id, "--restart", "--allow-refused")
    assert allowed.exit_code == 0, allowed.output
    assert "{" not in allowed.output  # a sentence, not a dict


def test_replay_file_resumes_after_an_interruption(tmp_path, settings, source_id, drain, db, monkeypatch):
    path = write(tmp_path / "a.ndjson", archive_lines(20))
    real = archive._decode_line
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(archive, "_decode_line", flaky)
    with pytest.raises(KeyboardInterrupt):
        replay.replay_file(settings, path, "web", batch_events=4, out=io.StringIO())
    (position,) = db.execute("SELECT position FROM replay_checkpoints").fetchone()
    assert 0 < position < 12
    monkeypatch.setattr(archive, "_decode_line", real)
    calls["n"] = 0

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(archive, "_decode_line", counted)
    counts = replay.replay_file(settings, path, "web", batch_events=4, out=io.StringIO())
    assert calls["n"] == 20 - position  # only the lines after the checkpoint
    assert counts["lines"] == 20
    drain()
    assert count(db) == 27  # 7 batch lines of 2 events, 13 single ones: all, once


def test_replay_file_takes_a_json_array_and_envelopes(tmp_path, settings, source_id, drain, db):
    doc = [
        {
            "call": "track",
            "body": {"userId": "u1", "event": "A"},
            "received_at": "2024-01-02T03:04:05Z",
            "headers": {"User-Agent": "curl/8"},
            "ip": "203.0.113.5",
        },
        {"type": "identify", "userId": "u2"},
    ]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc, indent=2))
    assert replay.replay_file(settings, path, "web", out=io.StringIO())["events"] == 2
    drain()
    rows = {r["type"]: r for r in stored(db)}
    assert rows["track"]["received_at"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert rows["track"]["context"]["ip"] == "203.0.113.5"


def test_replay_file_progress_bar_on_a_terminal(tmp_path, settings, source_id):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    path = write(tmp_path / "a.ndjson", archive_lines(9))
    out = Tty()
    replay.replay_file(settings, path, "web", out=out)
    text = out.getvalue()
    assert "replay a.ndjson  [" in text and "/1341" in text and "events=12" in text and "/s)" in text


def test_replay_events_backfills_a_new_destination(
    client, write_key, drain, drain_forward, add, clock, db, fsettings
):
    body = {
        "batch": [{"type": "track", "userId": "u", "event": f"E{i}", "messageId": f"m{i}"} for i in range(25)]
    }
    assert client.post("/v1/batch", json=body, auth=(write_key, "")).status_code == 200
    drain()
    add("webhook", "late", HOOK, {"secret": "s"}, filters={"exclude_names": ["E1*"]})
    now = datetime.now(UTC)
    counts = replay.replay_events(
        fsettings,
        "web",
        now - timedelta(days=1),
        now + timedelta(minutes=1),
        "late",
        chunk=10,
        out=io.StringIO(),
    )
    # E1, E10..E19 excluded; read 10 at a time, and the second ten are all excluded
    assert counts == {"events": 14, "jobs": 2, "skipped": 11}
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
    sent = [e["message_id"] for call in hook.calls for e in json.loads(call.request.content)["events"]]
    assert sorted(sent) == sorted(f"m{i}" for i in range(25) if not str(i).startswith("1"))
    assert len(sent) == 14
    # the stored event goes out as it was stored
    first = json.loads(hook.calls[0].request.content)["events"][0]
    assert first["source_id"] and first["raw"] and first["dialect"] == "segment"
    again = replay.replay_events(
        fsettings, "web", now - timedelta(days=1), now + timedelta(minutes=1), "late", out=io.StringIO()
    )
    assert again["events"] == 0  # done already (checkpoint)


def test_replay_events_resumes_after_the_last_sent_event_even_when_events_arrive_meanwhile(
    client, write_key, drain, drain_forward, add, clock, db, fsettings, monkeypatch
):
    body = {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": f"m{i}"} for i in range(6)]}
    assert client.post("/v1/batch", json=body, auth=(write_key, "")).status_code == 200
    drain()
    add("webhook", "late", HOOK, {"secret": "s"})
    now = datetime.now(UTC)
    window = (now - timedelta(days=1), now + timedelta(minutes=1))
    real = outbox.enqueue_deliveries
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped after the first chunk was sent and checkpointed
        return real(*args, **kwargs)

    monkeypatch.setattr(outbox, "enqueue_deliveries", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replay.replay_events(fsettings, "web", *window, "late", chunk=3, out=io.StringIO())
    monkeypatch.setattr(outbox, "enqueue_deliveries", real)
    # an event whose client time is the earliest of all arrives before the run resumes
    early = (now - timedelta(hours=2)).isoformat()
    late = {"type": "track", "userId": "u", "event": "E", "messageId": "late", "timestamp": early}
    assert client.post("/v1/track", json=late, auth=(write_key, "")).status_code == 200
    drain()
    replay.replay_events(fsettings, "web", *window, "late", chunk=3, out=io.StringIO())
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
    sent = [e["message_id"] for call in hook.calls for e in json.loads(call.request.content)["events"]]
    # each once: the six by the replay (an OFFSET would have re-sent m2: the late event, sorted first,
    # shifts the rows), the late one by the ordinary fan-out (the destination existed when it came)
    assert sorted(sent) == ["late"] + [f"m{i}" for i in range(6)]
