"""``/openapi.json`` describes every route of every dialect; ``/docs`` renders it with nothing fetched from
elsewhere; ``/metrics``, ``/openapi.json`` and ``/docs`` shadow no dialect's path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.routing import Match
from starlette.testclient import TestClient

from trackgate.gateway.app import create_app
from trackgate.gateway.ingest import RouteTable
from trackgate.gateway.openapi import _flatten
from trackgate.gateway.routes import DIALECTS, ingest_routes
from trackgate.schemas.settings import ServerSettings

OPERATOR = ("/metrics", "/openapi.json", "/docs", "/health")


@pytest.fixture(scope="module")
def api() -> Iterator[TestClient]:
    # the documents need no server: the app is built, its lifespan never started
    settings = ServerSettings(database_url="postgresql://unused", redis_url="redis://unused")
    yield TestClient(create_app(settings))


@pytest.fixture(scope="module")
def spec(api) -> dict[str, Any]:
    r = api.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()


def refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def test_every_accepting_path_is_a_documented_post(spec):
    table = ingest_routes()
    assert len(table) > 80
    for path in table:
        assert "post" in spec["paths"][path], path
        assert spec["paths"][path]["post"]["requestBody"]["required"] is True


def test_every_other_route_of_every_dialect_is_documented(spec):
    n = 0
    for dialect in DIALECTS:
        for path, methods, _ in _flatten(dialect.routes):
            openapi_path = re.sub(r"{(\w+)(?::[^}]*)?}", r"{\1}", path)
            for method in methods:
                operation = spec["paths"][openapi_path][method.lower()]
                assert dialect.name in operation["tags"]
                n += 1
    assert n > 80


def test_bodies_are_the_adapters_msgspec_types(spec):
    components = spec["components"]["schemas"]
    for ref in set(refs(spec["paths"])):
        assert ref.removeprefix("#/components/schemas/") in components, ref
    track = spec["paths"]["/v1/track"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    segment_message = components[track["$ref"].rsplit("/", 1)[-1]]
    assert {"messageId", "userId", "event", "properties"} <= set(segment_message["properties"])
    batch = spec["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "batch" in components[batch["$ref"].rsplit("/", 1)[-1]]["properties"]
    collect = spec["paths"]["/api/v1/collect"]["post"]["requestBody"]["content"]["application/json"]
    assert collect["schema"] == {"$ref": "#/components/schemas/Collect"}
    # a path two dialects share names both
    assert spec["paths"]["/event"]["post"]["tags"] == ["openpanel", "bucket"]
    # path parameters
    params = spec["paths"]["/{tracking_key}/event"]["post"]["parameters"]
    assert params == [{"name": "tracking_key", "in": "path", "required": True, "schema": {"type": "string"}}]
    for path in OPERATOR:
        assert spec["paths"][path]["get"]["tags"] == ["operator"]


def test_the_operator_paths_shadow_no_dialect_path():
    ingest = RouteTable(ingest_routes())
    for path in OPERATOR:
        assert ingest.match(path) is None, path
        for dialect in DIALECTS:
            for route in dialect.routes:
                scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
                assert route.matches(scope)[0] is Match.NONE, (path, dialect.name)


def test_docs_is_a_static_page_of_every_path(api, spec):
    r = api.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for path in spec["paths"]:
        assert f"<code>{path}</code>" in page, path
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from elsewhere
    assert 'id="schema-Collect"' in page and 'href="#schema-Collect"' in page


def test_the_tinytrail_api_is_documented(client):
    from trackgate.gateway.routes import API_ROUTES

    spec = client.get("/openapi.json").json()
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    for route in API_ROUTES:
        for method in route.methods - {"HEAD"}:  # type: ignore[attr-defined]
            assert (method, route.path) in documented  # type: ignore[attr-defined]
    accounts = spec["paths"]["/api/v1/accounts"]
    assert accounts["post"]["tags"] == ["operator"] and "admin" in accounts["post"]["summary"]
    assert spec["paths"]["/api/v1/reports/summary"]["get"]["summary"]
