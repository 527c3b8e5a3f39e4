"""GET /health: TinyTrail's JSON shape for every load balancer (seeds/tinytrail-api.md, "Health")."""

from __future__ import annotations

import time

import msgspec
from starlette.testclient import TestClient

from trackgate.gateway.app import create_app
from trackgate.gateway.routes import VERSION


def test_health_ok_names_db_and_version(settings):
    with TestClient(create_app(settings)) as client:
        r = client.get("/health")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"status": "ok", "db": "connected", "redis": "connected", "version": VERSION}
    assert VERSION == "0.1.0"


def test_health_is_503_degraded_when_postgresql_is_down(settings):
    down = msgspec.structs.replace(settings, database_url="postgresql://127.0.0.1:1/trackgate")
    with TestClient(create_app(down)) as client:
        started = time.perf_counter()
        r = client.get("/health")
        assert time.perf_counter() - started < 3
    assert r.status_code == 503
    assert r.json() == {
        "status": "degraded",
        "db": "disconnected",
        "redis": "connected",
        "sources": "loading",
    }


def test_health_is_503_degraded_when_redis_is_down(settings):
    down = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.5)
    with TestClient(create_app(down)) as client:
        r = client.get("/health")
    assert r.status_code == 503
    assert r.json() == {"status": "degraded", "db": "connected", "redis": "disconnected"}


def test_health_is_503_with_a_hung_redis_within_its_timeout(settings, silent_redis):
    hung = msgspec.structs.replace(settings, redis_url=silent_redis, redis_timeout_seconds=5)
    with TestClient(create_app(hung)) as client:
        started = time.perf_counter()
        r = client.get("/health")
        elapsed = time.perf_counter() - started
    assert r.status_code == 503 and r.json()["redis"] == "disconnected"
    assert elapsed < 2.5, f"answered after {elapsed:.1f}s"


def test_health_checks_are_cached_for_a_second(settings, monkeypatch):
    from trackgate.gateway import routes

    calls = []
    real = routes._db_ok

    async def counted(runtime):
        calls.append(1)
        return await real(runtime)

    monkeypatch.setattr(routes, "_db_ok", counted)
    with TestClient(create_app(settings)) as client:
        assert [client.get("/health").status_code for _ in range(5)] == [200] * 5
        assert len(calls) == 1
        time.sleep(routes.HEALTH_CACHE_SECONDS + 0.1)
        assert client.get("/health").status_code == 200
        assert len(calls) == 2
