"""The shared accept path's extension points, exercised with the Segment adapter: pattern paths,
shared paths, the authenticate/prepare/respond hooks, errors raised by hooks, and extra source keys."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
from starlette.testclient import TestClient

import trackgate.gateway.app
from tests.helpers import id_of, stored
from trackgate.adapters import segment
from trackgate.gateway.auth import SourceCache
from trackgate.gateway.errors import RateLimited
from trackgate.gateway.ingest import Auth, AuthContext, IngestRoute, PrepareContext, Reply, SharedRoute
from trackgate.sources import add_source, set_key

TRACK = {"userId": "u1", "event": "Hooked", "messageId": "m-1"}


def _path_key(ctx: AuthContext) -> Auth[None]:
    """Credentials in the path, the way Bucket's tracking API sends them."""
    return Auth(ctx.runtime.sources.authenticate("segment", ctx.incoming.params["key"]), None)


async def _prepare(ctx: PrepareContext[None]) -> dict:
    incoming = ctx.incoming
    if incoming.headers.get("x-slow-down"):
        raise RateLimited("too many requests from this IP", retry_after=7)
    return {"peer": incoming.client_ip, "query": dict(incoming.query)}


def _respond(accepted) -> Reply:
    body = {"n": len(accepted.events), "source": accepted.source.id, "hints": accepted.meta.hints}
    return Reply(201, msgspec.json.encode(body), headers=((b"x-accepted", b"yes"),))


def _route(**hooks) -> IngestRoute:
    return IngestRoute(adapter=segment, call="track", cap=32_000, ok_status=200, ok_body=b"{}", **hooks)


@pytest.fixture
def hooked(settings, write_key, monkeypatch):
    """The real app with extra test routes beside the dialects' own."""
    plain, pathkey = _route(), _route(authenticate=_path_key, prepare=_prepare, respond=_respond)
    answering = _route(prepare=_prepare, respond=_respond)
    extra = {
        "/t/{key}/track": pathkey,
        "/shared/track": SharedRoute(choose=lambda h, q: answering if "x-pick" in h else plain),
    }
    real = trackgate.gateway.app.ingest_routes
    monkeypatch.setattr(trackgate.gateway.app, "ingest_routes", lambda: {**real(), **extra})
    with TestClient(trackgate.gateway.app.create_app(settings)) as client:
        yield client


def test_pattern_path_authenticates_from_its_parameter_and_the_hooks_shape_the_answer(
    hooked, write_key, source_id, drain, db
):
    r = hooked.post(f"/t/{write_key}/track?site=9", json=TRACK)
    assert r.status_code == 201, r.text
    assert r.headers["x-accepted"] == "yes"
    body = r.json()
    assert body["n"] == 1 and body["source"] == source_id
    assert body["hints"] == {"peer": "testclient", "query": {"site": "9"}}
    drain()
    (event,) = stored(db)
    assert event["name"] == "Hooked" and event["source_id"] == source_id


def test_pattern_path_with_a_wrong_key_is_refused_and_stores_nothing(hooked, write_key, drain, db):
    r = hooked.post("/t/not-a-key/track", json=TRACK)
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    drain()
    assert stored(db) == []


def test_a_hook_error_carries_its_headers_in_the_dialect_shape(hooked, write_key, drain, db):
    r = hooked.post(f"/t/{write_key}/track", json=TRACK, headers={"X-Slow-Down": "1"})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"
    assert r.json() == {"code": "rate_limited", "message": "too many requests from this IP"}
    drain()
    assert stored(db) == []


def test_shared_path_chooses_a_route_per_request(hooked, write_key, drain, db):
    # without the header: the plain route, whose key comes from Basic auth
    r = hooked.post("/shared/track", json=TRACK, auth=(write_key, ""))
    assert (r.status_code, r.content) == (200, b"{}")
    # with it: the route with a respond hook
    r = hooked.post(
        "/shared/track", json={**TRACK, "messageId": "m-2"}, headers={"X-Pick": "1"}, auth=(write_key, "")
    )
    assert r.status_code == 201 and r.json()["n"] == 1
    drain()
    assert [e["message_id"] for e in stored(db)] == ["m-1", "m-2"]


def test_exact_paths_win_over_patterns(hooked, write_key):
    # /v1/track is Segment's exact path; "/t/{key}/track" does not shadow it, nor the reverse
    r = hooked.post("/v1/track", json=TRACK, auth=(write_key, ""))
    assert r.status_code == 200 and r.json() == {"success": True}


def test_a_hook_that_finds_no_credentials_at_all_is_a_401(settings, write_key, monkeypatch, drain, db):
    route = _route(authenticate=lambda ctx: None)
    monkeypatch.setattr(trackgate.gateway.app, "ingest_routes", lambda: {"/none/track": route})
    with TestClient(trackgate.gateway.app.create_app(settings)) as client:
        r = client.post("/none/track", json=TRACK)
    assert r.status_code == 401 and r.json()["code"] == "missing_credentials"
    drain()
    assert stored(db) == []


def test_extra_keys_are_loaded_per_kind_and_follow_the_source(settings, db):
    source, key = add_source(
        settings.database_url, "segment", "two-keys", "primary-1", extra_keys={"secret": "secret-1"}
    )
    cache = SourceCache(settings.database_url, refresh_seconds=60)

    async def load():
        await cache.load()
        await cache.close()

    asyncio.run(load())
    assert id_of(cache.by_key("segment", "primary-1")) == source.id
    assert id_of(cache.by_extra_key("segment", "secret", "secret-1")) == source.id
    assert cache.by_extra_key("segment", "secret", "primary-1") is None  # kinds do not mix
    assert cache.by_extra_key("segment", "other", "secret-1") is None
    assert cache.by_extra_key("openpanel", "secret", "secret-1") is None  # nor dialects

    set_key(settings.database_url, source.id, "secret-2", kind="secret")
    db.execute("UPDATE sources SET enabled = false WHERE id = %s", (source.id,))
    asyncio.run(load())
    assert cache.by_extra_key("segment", "secret", "secret-2") is None  # disabled
    db.execute("UPDATE sources SET enabled = true WHERE id = %s", (source.id,))
    asyncio.run(load())
    assert cache.by_extra_key("segment", "secret", "secret-1") is None  # rotated
    assert id_of(cache.by_extra_key("segment", "secret", "secret-2")) == source.id


def test_sources_add_json_lists_every_credential_once(cli, settings, database_url, db):
    result = cli("sources", "add", "segment", "--domain", "shop.example", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["name"] == "shop.example"  # the domain names the source when --name is not given
    result = cli("sources", "add", "segment")
    assert result.exit_code != 0 and "--name is required" in result.output


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [
        ("", "127.0.0.1"),  # no proxy trusted: the peer
        ("127.0.0.0/8", "10.1.2.3"),  # the address our proxy saw (the right-most hop not ours)
        ("127.0.0.0/8, 10.0.0.0/8", "198.51.100.7"),  # through two of our proxies
        ("10.0.0.0/8", "127.0.0.1"),  # the peer is not a trusted proxy
    ],
)
def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    settings, write_key, drain, db, trusted, expected
):
    import httpx
    import msgspec

    from tests.helpers import live_gateway

    # the client wrote "6.6.6.6" itself; the proxies appended what they saw
    with live_gateway(msgspec.structs.replace(settings, trusted_proxies=trusted)) as base:
        r = httpx.post(
            base + "/v1/track",
            json=TRACK,
            auth=(write_key, ""),
            headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.1.2.3"},
        )
        assert r.status_code == 200
    drain()
    (event,) = stored(db)
    assert event["context"]["ip"] == expected


def test_a_key_digest_is_remembered_only_for_a_key_that_matched_and_never_outlives_its_source():
    from trackgate.gateway.errors import Unauthorized
    from trackgate.schemas.request import Source

    web = Source(id="src_web", dialect="segment", name="web")
    cache = SourceCache("postgresql://unused", refresh_seconds=60)
    cache.replace({("segment", "wk-good"): web})
    for _ in range(2):
        assert cache.authenticate("segment", "wk-good") is web
    for wrong in ("wk-bad-1", "wk-bad-2"):
        with pytest.raises(Unauthorized):
            cache.authenticate("segment", wrong)
    assert list(cache._digests) == ["wk-good"]  # a guessed key costs an HMAC and is not kept
    cache.replace({("segment", "wk-other"): web})  # the key was rotated away
    with pytest.raises(Unauthorized):
        cache.authenticate("segment", "wk-good")
