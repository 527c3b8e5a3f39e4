"""Forwarding end to end: Segment in through the gateway, stored, fanned out, delivered (respx)."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
import respx

from tests.helpers import HOOK, T0, batch, ingest, next_scheduled, release_due, sent_ids
from trackgate.adapters.transports import verify_signature
from trackgate.schemas.destinations import FORWARD_QUEUE
from trackgate.workers import destinations as destination_store
from trackgate.workers.forward.delivery import KEY_RECHECK

SEGMENT = "https://rudder.example.com"


def deliveries(db) -> list[tuple]:
    return db.execute("SELECT status, attempts, last_status, n_events FROM deliveries ORDER BY id").fetchall()


def test_a_segment_source_fans_out_to_a_webhook_and_a_segment_endpoint(
    client, write_key, drain, drain_forward, add, clock, db
):
    add("webhook", "hook", HOOK, {"secret": "whsec"})
    add("segment", "rudder", SEGMENT, {"write_key": "rudder-wk"})
    ingest(client, write_key, drain, batch("m", 3))
    with respx.mock(assert_all_called=True) as mock:
        hook = mock.post(HOOK).respond(204)
        rudder = mock.post(f"{SEGMENT}/v1/batch").respond(200, text="ok")
        drain_forward()
    assert hook.call_count == 1 and rudder.call_count == 1
    request = hook.calls[0].request
    assert verify_signature("whsec", request.headers["trackgate-signature"], request.content, now=clock())
    body = json.loads(request.content)
    assert [e["message_id"] for e in body["events"]] == ["m-0", "m-1", "m-2"]
    assert body["events"][0]["type"] == "track" and body["events"][0]["dialect"] == "segment"
    seg = rudder.calls[0].request
    assert seg.headers["authorization"] == "Basic " + base64.b64encode(b"rudder-wk:").decode()
    sent = json.loads(seg.content)["batch"]
    assert [(m["messageId"], m["event"], m["properties"]["revenue"]) for m in sent] == [
        ("m-0", "Order Completed", 0),
        ("m-1", "Order Completed", 1),
        ("m-2", "Order Completed", 2),
    ]
    assert deliveries(db) == [("delivered", 1, 204, 3), ("delivered", 1, 200, 3)]
    (hook_status, rudder_status) = destination_store.status(client.app.state.runtime.settings.database_url)
    assert (hook_status["delivered"], hook_status["delivered_events"], hook_status["dead"]) == (1, 3, 0)


def test_only_newly_stored_events_are_forwarded(client, write_key, drain, drain_forward, add, clock, db):
    add("webhook", "hook", HOOK, {"secret": "s"})
    ingest(client, write_key, drain, batch("m", 2))
    ingest(client, write_key, drain, batch("m", 3))  # m-0 and m-1 again: stored once, forwarded once
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
    assert sorted(sent_ids(hook)) == ["m-0", "m-1", "m-2"]


def test_503_503_200_is_delivered_once(client, write_key, drain, add, clock, run_until, db):
    add("webhook", "hook", HOOK, {"secret": "s"})
    ingest(client, write_key, drain, batch("m", 2))
    with respx.mock() as mock:
        hook = mock.post(HOOK).mock(
            side_effect=[httpx.Response(503), httpx.Response(503), httpx.Response(200)]
        )
        run_until(3600)
    assert hook.call_count == 3
    assert sent_ids(hook) == ["m-0", "m-1"]
    assert deliveries(db) == [("delivered", 3, 200, 2)]
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0


def test_backoff_grows_with_jitter_between_attempts(
    client, write_key, drain, add, clock, drain_forward, quick_drain, scheduled
):
    add("webhook", "hook", HOOK, {"secret": "s"})
    ingest(client, write_key, drain, batch("m", 1))
    waits = []
    with respx.mock() as mock:
        mock.post(HOOK).respond(500)
        drain_forward()
        for _ in range(5):
            due = next_scheduled(scheduled)
            waits.append(due - clock.t)
            clock.t = due
            release_due(scheduled, clock.t)
            quick_drain()
    # 2 s, 4 s, 8 s, ... at 75% (the jitter is pinned to the middle of 50-100% in these tests), in
    # whole seconds
    assert waits == [2, 3, 6, 12, 24]


def test_429_waits_as_retry_after_tells(client, write_key, drain, add, clock, drain_forward, scheduled, db):
    add("webhook", "hook", HOOK, {"secret": "s"})
    ingest(client, write_key, drain, batch("m", 1))
    with respx.mock() as mock:
        hook = mock.post(HOOK).mock(
            side_effect=[httpx.Response(429, headers={"Retry-After": "120"}), httpx.Response(200)]
        )
        drain_forward()
        assert hook.call_count == 1
        assert next_scheduled(scheduled) == clock.t + 120
        (status, attempts, last_status, _) = deliveries(db)[0]
        assert (status, attempts, last_status) == ("retrying", 1, 429)
        clock.t += 119
        assert release_due(scheduled, clock.t) == 0
        drain_forward()
        assert hook.call_count == 1
        clock.t += 1
        assert release_due(scheduled, clock.t) == 1
        drain_forward()
    assert hook.call_count == 2
    assert deliveries(db)[0][:3] == ("delivered", 2, 200)


def test_a_400_is_dead_lettered_and_replayed_exactly_once_after_the_fix(
    client, write_key, drain, drain_forward, add, clock, db, fsettings
):
    from trackgate.workers import replay

    add("segment", "rudder", SEGMENT, {"write_key": "wk"})
    ingest(client, write_key, drain, batch("m", 2))
    with respx.mock() as mock:
        broken = mock.post(f"{SEGMENT}/v1/batch").respond(
            400, text="request neither has anonymousId nor userId"
        )
        drain_forward()
    assert broken.call_count == 1
    (dead,) = db.execute("SELECT status, http_status, response_body, n_events FROM dead_letters").fetchall()
    assert dead == ("dead", 400, "request neither has anonymousId nor userId", 2)
    assert deliveries(db)[0][0] == "dead"
    (row,) = destination_store.status(fsettings.database_url)
    assert (row["dead"], row["dead_events"], row["delivered"]) == (1, 2, 0)
    assert row["last_error"].startswith("HTTP 400")

    with respx.mock() as mock:
        fixed = mock.post(f"{SEGMENT}/v1/batch").respond(200, text="ok")
        assert replay.replay_dead_letters(fsettings, "rudder")["requeued"] == 1
        assert replay.replay_dead_letters(fsettings, "rudder")["requeued"] == 0  # claimed already
        drain_forward()
        assert replay.replay_dead_letters(fsettings)["requeued"] == 0
        drain_forward()
    assert fixed.call_count == 1
    assert sent_ids(fixed, "batch", "messageId") == ["m-0", "m-1"]
    assert fixed.calls[0].request.headers["authorization"].startswith("Basic ")
    assert db.execute("SELECT status FROM dead_letters").fetchall() == [("replayed",)]
    assert deliveries(db)[0][0] == "delivered"
    (row,) = destination_store.status(fsettings.database_url)
    assert (row["dead"], row["delivered"]) == (0, 1)


def test_a_dead_letter_replayed_while_still_broken_is_dead_again(
    client, write_key, drain, drain_forward, add, clock, db, fsettings
):
    from trackgate.workers import replay

    add("webhook", "hook", HOOK, {"secret": "s"})
    ingest(client, write_key, drain, batch("m", 1))
    with respx.mock() as mock:
        mock.post(HOOK).respond(422, json={"error": "schema"})
        drain_forward()
        replay.replay_dead_letters(fsettings)
        drain_forward()
    assert db.execute("SELECT status, attempts, http_status FROM dead_letters").fetchall() == [
        ("dead", 2, 422)
    ]


def test_a_slow_destination_does_not_hold_up_another(client, write_key, drain, drain_forward, add, clock, db):
    slow = add("webhook", "slow", "https://slow.example.com/h", {"secret": "s"})
    add("webhook", "fast", HOOK, {"secret": "s"})
    for n in range(5):
        ingest(client, write_key, None, batch(f"b{n}", 2))
    drain()

    waited = []

    def hang(request):
        time.sleep(0.3)  # the read timeout firing after a while
        waited.append(0.3)
        raise httpx.ReadTimeout("timed out", request=request)

    with respx.mock() as mock:
        slow_route = mock.post("https://slow.example.com/h").mock(side_effect=hang)
        fast_route = mock.post(HOOK).respond(200)
        drain_forward()
    assert fast_route.call_count == 5
    assert len(sent_ids(fast_route)) == 10
    # one timeout puts the slow one on hold: its other jobs wait for the retry time without calling
    # it, so the fast one waited for one timeout in all, not five
    assert slow_route.call_count == 1
    assert sum(waited) == 0.3
    states = db.execute(
        "SELECT status, count(*) FROM deliveries WHERE destination_id = %s GROUP BY status", (slow,)
    ).fetchall()
    assert states == [("retrying", 5)]


def test_a_destination_down_for_an_hour_gets_every_event_once_when_back(
    client, write_key, drain, add, clock, run_until, db
):
    add("webhook", "hook", HOOK, {"secret": "s"})
    add("segment", "rudder", SEGMENT, {"write_key": "wk"})
    for n in range(4):
        ingest(client, write_key, None, batch(f"b{n}", 3))
    drain()
    back_at = clock.t + 3600

    def hook_side_effect(request):
        if clock.t < back_at:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200)

    def rudder_side_effect(request):
        return httpx.Response(503 if clock.t < back_at else 200)

    with respx.mock() as mock:
        hook = mock.post(HOOK).mock(side_effect=hook_side_effect)
        rudder = mock.post(f"{SEGMENT}/v1/batch").mock(side_effect=rudder_side_effect)
        run_until(3 * 3600)
    expected = sorted(f"b{n}-{i}" for n in range(4) for i in range(3))
    assert sorted(sent_ids(hook)) == expected
    assert sorted(sent_ids(rudder, "batch", "messageId")) == expected
    # while down, the hold kept it to about one call per retry interval, not one per job
    assert hook.call_count < 25
    assert {row[0] for row in deliveries(db)} == {"delivered"}
    assert clock.t < back_at + 900 + 60  # retried within the backoff cap after it came back


def test_the_default_retry_horizon_is_a_day():
    from trackgate.schemas.settings import settings_from_env

    assert settings_from_env({}).forward_horizon_seconds == 86400
    assert settings_from_env({"TRACKGATE_FORWARD_HORIZON_SECONDS": "3600"}).forward_horizon_seconds == 3600


@pytest.mark.horizon(7200)
def test_retries_stop_at_the_horizon_and_dead_letter(
    client, write_key, drain, add, clock, run_until, db, monkeypatch
):
    add("webhook", "hook", HOOK, {"secret": "s"})
    ingest(client, write_key, drain, batch("m", 2))
    with respx.mock() as mock:
        hook = mock.post(HOOK).respond(503)
        run_until(4 * 3600)
    (dead,) = db.execute("SELECT status, http_status, error, n_events FROM dead_letters").fetchall()
    assert dead[0] == "dead" and dead[1] == 503 and dead[3] == 2
    assert dead[2].startswith("retry horizon reached (7200 s); last error: HTTP 503")
    assert deliveries(db)[0][0] == "dead"
    assert 10 < hook.call_count < 30
    assert clock.t - T0 <= 7200 + 900


def test_filters_and_consent_choose_the_events(client, write_key, drain, drain_forward, add, clock, db):
    add("webhook", "orders", HOOK, {"secret": "s"}, filters={"include_names": ["Order *"]})
    add("webhook", "ads", "https://ads.example.com/h", {"secret": "s"}, filters={"consent": ["Advertising"]})
    add(
        "webhook",
        "strict",
        "https://strict.example.com/h",
        {"secret": "s"},
        filters={"consent": ["Advertising"], "consent_required": True, "exclude_types": ["identify"]},
    )
    messages = [
        {"type": "track", "userId": "u", "event": "Order Completed", "messageId": "order"},
        {"type": "track", "userId": "u", "event": "Signed Up", "messageId": "signup"},
        {
            "type": "identify",
            "userId": "u",
            "messageId": "ident",
            "traits": {"email": "a@b.c"},
            "context": {"consent": {"categoryPreferences": {"Advertising": True}}},
        },
        {
            "type": "track",
            "userId": "u",
            "event": "Ad Clicked",
            "messageId": "ad-yes",
            "context": {"consent": {"categoryPreferences": {"Advertising": True, "Analytics": False}}},
        },
        {
            "type": "track",
            "userId": "u",
            "event": "Ad Clicked",
            "messageId": "ad-no",
            "context": {"consent": {"categoryPreferences": {"Advertising": False}}},
        },
    ]
    ingest(client, write_key, drain, {"batch": messages})
    with respx.mock() as mock:
        orders = mock.post(HOOK).respond(200)
        ads = mock.post("https://ads.example.com/h").respond(200)
        strict = mock.post("https://strict.example.com/h").respond(200)
        drain_forward()
    assert sent_ids(orders) == ["order", "ident"]  # name filters pass events without a name
    # no consent information passes unless it is required (as in Segment)
    assert sorted(sent_ids(ads)) == ["ad-yes", "ident", "order", "signup"]
    assert sent_ids(strict) == ["ad-yes"]


def test_a_destination_for_another_source_gets_nothing(
    client, write_key, drain, drain_forward, add, clock, db
):
    from trackgate.sources import add_source

    other, _ = add_source(db.info.dsn, "segment", "other", "other-key")
    add("webhook", "hook", HOOK, {"secret": "s"}, source_ids=[other.id])
    ingest(client, write_key, drain, batch("m", 2))
    assert db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0


def test_paused_destination_waits_and_resumes(
    client, write_key, drain, drain_forward, add, clock, db, fsettings, scheduled
):
    add("webhook", "hook", HOOK, {"secret": "s"})
    destination_store.set_paused(fsettings.database_url, "hook", True)
    ingest(client, write_key, drain, batch("m", 2))
    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
        assert hook.call_count == 0
        destination_store.set_paused(fsettings.database_url, "hook", False)
        clock.t = next_scheduled(scheduled)
        release_due(scheduled, clock.t)
        drain_forward()
    assert sent_ids(hook) == ["m-0", "m-1"]


def test_a_removed_destination_drops_its_queued_forwards(
    client, write_key, drain, drain_forward, add, clock, db, fsettings
):
    add("webhook", "hook", HOOK, {"secret": "s"})
    ingest(client, write_key, drain, batch("m", 2))
    destination_store.remove_destination(fsettings.database_url, "hook")
    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post(HOOK).respond(200)
        drain_forward()
    assert hook.call_count == 0
    ingest(client, write_key, drain, batch("n", 2))  # the cached destination is gone: nothing fails
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 4


def test_credentials_are_stored_encrypted(add, db, fsettings):
    add("segment", "rudder", SEGMENT, {"write_key": "very-secret-write-key"})
    (token,) = db.execute("SELECT credentials FROM destinations").fetchone()
    assert "very-secret" not in token
    listed = destination_store.list_destinations(fsettings.database_url, fsettings.secret_key)
    assert listed[0]["credentials"] == {"write_key": "…-key (21 chars)"}


def test_a_fan_out_that_cannot_reach_redis_leaves_storage_alone(
    client, write_key, drain, add, clock, db, monkeypatch
):
    # changed with the outbox (issue 11, item 3): the delivery row is written with the events and
    # stays unqueued for a sweep (it asserted before that no row was written for the job never queued)
    import redis

    from trackgate.workers.forward import resources

    add("webhook", "hook", HOOK, {"secret": "s"})
    dead_redis = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr(resources, "redis_connection", lambda settings: dead_redis)
    ingest(client, write_key, drain, batch("m", 2))
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 2  # stored, the job did not fail
    # the forward intent committed with the events, waiting for a sweep to queue its job
    assert db.execute("SELECT status, enqueued_at FROM deliveries").fetchall() == [("queued", None)]


KINDS = {
    "webhook": (HOOK, {"secret": "s"}),
    "segment": (SEGMENT, {"write_key": "wk"}),
    "openpanel": ("https://op.example.com", {"client_id": "2e3c0f4e-8d4e-4b3a-9d7e-1c2b3a4d5e6f"}),
    "bucket": ("https://reflag.example.com", {"secret_key": "sk_" + "x" * 30}),
    "commandersact": ("https://ca.example.com", {"site_id": "1", "source_key": "k"}),
    "spectacle": ("https://sp.example.com", {"workspace_id": "ws_1"}),
    "tinytrail": ("https://tt.example.com", {"website_id": "550e8400-e29b-41d4-a716-446655440000"}),
}


def test_one_segment_source_fans_out_to_every_kind(client, write_key, drain, drain_forward, add, clock, db):
    from trackgate.adapters.registry import ADAPTERS

    kinds = {k: v for k, v in KINDS.items() if k == "webhook" or k in ADAPTERS}
    for kind, (url, creds) in kinds.items():
        add(kind, kind, url, creds)
    track = {
        "type": "track",
        "userId": "u1",
        "event": "Order Completed",
        "messageId": "t1",
        "context": {"page": {"url": "https://shop.example.com/c", "path": "/c"}},
    }
    identify = {"type": "identify", "userId": "u1", "messageId": "i1", "traits": {"email": "a@example.com"}}
    ingest(client, write_key, drain, {"batch": [track, identify]})
    with respx.mock() as mock:
        routes = {
            "webhook": mock.post(HOOK).respond(200),
            "segment": mock.post(f"{SEGMENT}/v1/batch").respond(200, text="ok"),
            "openpanel": mock.post("https://op.example.com/track").respond(200, json={"deviceId": "d"}),
            "bucket": mock.post("https://reflag.example.com/bulk").respond(200, json={"success": True}),
            "commandersact": mock.post("https://ca.example.com/events/batch").respond(200),
            "spectacle": mock.post(url__regex=r"https://sp\.example\.com/tracking/(track|identify)").respond(
                200
            ),
            "tinytrail": mock.post("https://tt.example.com/api/v1/collect").respond(
                202, json={"status": "accepted"}
            ),
        }
        for kind in set(routes) - set(kinds):
            routes.pop(kind)
        drain_forward()
    per_event = {"openpanel", "spectacle", "tinytrail"}
    assert {k: r.call_count for k, r in routes.items()} == {k: 2 if k in per_event else 1 for k in routes}
    assert {row[0] for row in deliveries(db)} == {"delivered"}
    assert len(deliveries(db)) == len(kinds)


def test_a_reflag_reply_without_success_true_is_dead_lettered(
    client, write_key, drain, drain_forward, add, clock, db
):
    add("bucket", "reflag", *KINDS["bucket"])
    ingest(client, write_key, drain, batch("m", 1))
    with respx.mock() as mock:
        mock.post("https://reflag.example.com/bulk").respond(200, json={"success": False, "error": "invalid"})
        drain_forward()
    assert db.execute("SELECT http_status, response_body FROM dead_letters").fetchall() == [
        (200, '{"success":false,"error":"invalid"}')
    ]


def test_forwards_wait_while_the_credentials_cannot_be_decrypted(
    client, write_key, drain, add, clock, db, fsettings, scheduled, monkeypatch
):
    import msgspec

    from trackgate.workers.worker import build_worker

    add("webhook", "hook", HOOK, {"secret": "s"})
    ingest(client, write_key, drain, batch("m", 1))
    wrong = msgspec.structs.replace(fsettings, secret_key="another-key-entirely-0123456789")
    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post(HOOK).respond(200)
        build_worker(wrong, (FORWARD_QUEUE,)).work(burst=True, with_scheduler=False, logging_level="ERROR")
    assert hook.call_count == 0
    (status, attempts, last_status, _) = deliveries(db)[0]
    assert status == "retrying"
    assert "cannot be decrypted" in db.execute("SELECT last_error FROM deliveries").fetchone()[0]
    assert next_scheduled(scheduled) == clock.t + KEY_RECHECK == clock.t + 30
