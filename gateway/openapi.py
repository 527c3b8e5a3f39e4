"""``GET /openapi.json``: every route of every dialect, read from the dialects' registry.

Built once per app from ``routes.DIALECTS``: each dialect's accepting POST paths (``Dialect.ingest``
and ``shared``, their call and success status) and its other routes (``Dialect.routes``: GET endpoints,
preflights), plus the gateway's own (health, metrics, these docs). Request bodies are the msgspec types
each adapter reads a call's body as (``adapter.BODIES``), as JSON Schema from
``msgspec.json.schema_components``; a call without one takes a JSON object checked field by field.
A seventh dialect shows up here with no change to this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from trackgate.gateway.dialect import Dialect
from trackgate.gateway.ingest import IngestRoute

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")

_REFUSED = {
    "4XX": {
        "description": "Refused, nothing stored: the dialect's own error shape and status (400 with the"
        " field path, 401/403 credentials, 408, 413 size, 415, 429 with Retry-After)."
    },
    "503": {"description": "Redis did not take the events: nothing stored; retry after Retry-After."},
}


def _path_params(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(path)
    ]


def _openapi_path(path: str) -> str:
    """Starlette's ``{name:converter}`` as OpenAPI's ``{name}``."""
    return _PARAM.sub(r"{\1}", path)


def _summary(endpoint: Any) -> str:
    doc = (getattr(endpoint, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _flatten(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, list[str], Any]]:
    """(path, methods, endpoint) of every Route, Mounts opened."""
    for route in routes:
        if isinstance(route, Mount):
            app = route.app
            while not hasattr(app, "routes") and hasattr(app, "app"):  # through middleware (CORS)
                app = app.app
            yield from _flatten(getattr(app, "routes", []), prefix + route.path)
        elif isinstance(route, Route):
            methods = sorted((route.methods or {"GET"}) - {"HEAD"})
            yield prefix + route.path, methods, route.endpoint


class _Spec:
    def __init__(self, dialects: Sequence[Dialect]) -> None:
        self.paths: dict[str, dict[str, Any]] = {}
        types = list(dict.fromkeys(kind for dialect in dialects for kind in dialect.adapter.BODIES.values()))
        refs, self.components = msgspec.json.schema_components(types, ref_template=REF)
        self.refs: dict[type, dict[str, Any]] = dict(zip(types, refs, strict=True))

    def body(self, dialect: Dialect, call: str) -> dict[str, Any]:
        kind = dialect.adapter.BODIES.get(call)
        return self.refs[kind] if kind is not None else {"type": "object"}

    def add(self, path: str, method: str, operation: dict[str, Any], tag: str) -> None:
        item = self.paths.setdefault(_openapi_path(path), {})
        found = item.get(method)
        if found is not None:  # a path two dialects share: one operation, both tags
            if tag not in found["tags"]:
                found["tags"].append(tag)
            return
        params = _path_params(path)
        if params:
            operation["parameters"] = params
        item[method] = {"tags": [tag], **operation}


def _ingest_operation(spec: _Spec, dialect: Dialect, path: str, route: IngestRoute[Any]) -> dict[str, Any]:
    return {
        "summary": f"{dialect.name}: {route.call}",
        "operationId": f"{dialect.name}_{route.call}_{path}",
        "requestBody": {
            "required": True,
            "description": f"At most {route.cap} bytes (gzip accepted, capped the same once inflated).",
            "content": {"application/json": {"schema": spec.body(dialect, route.call)}},
        },
        "responses": {
            str(route.ok_status): {"description": "Accepted: the events are in Redis."},
            **_REFUSED,
        },
    }


def build(dialects: Sequence[Dialect], operator: Sequence[BaseRoute], version: str) -> dict[str, Any]:
    """The OpenAPI document of the gateway serving ``dialects`` and the ``operator`` routes."""
    spec = _Spec(dialects)
    shared: dict[str, list[str]] = {}
    for dialect in dialects:
        for path, route in dialect.ingest.items():
            spec.add(path, "post", _ingest_operation(spec, dialect, path, route), dialect.name)
        for path, route in dialect.shared.items():
            shared.setdefault(path, []).append(dialect.name)
            operation = _ingest_operation(spec, dialect, path, route)
            found = spec.paths.get(path, {}).get("post")
            if found is not None:  # the body is either dialect's; the request's headers choose
                schema = found["requestBody"]["content"]["application/json"]["schema"]
                alternatives = schema.get("anyOf", [schema])
                body = spec.body(dialect, route.call)
                if body not in alternatives:
                    found["requestBody"]["content"]["application/json"]["schema"] = {
                        "anyOf": [*alternatives, body]
                    }
            spec.add(path, "post", operation, dialect.name)
        for path, methods, endpoint in _flatten(dialect.routes):
            for method in methods:
                operation = {
                    "summary": _summary(endpoint) or f"{dialect.name}: {method} {path}",
                    "operationId": f"{dialect.name}_{method.lower()}_{path}",
                    "responses": {"200": {"description": "OK"}, **_REFUSED},
                }
                if method == "OPTIONS":
                    operation["summary"] = "CORS preflight"
                    operation["responses"] = {"204": {"description": "The CORS headers the path allows."}}
                spec.add(path, method.lower(), operation, dialect.name)
    for path, names in shared.items():
        spec.paths[path]["post"]["description"] = (
            f"Shared by {' and '.join(names)}: the request's headers and query say whose it is."
        )
    for path, methods, endpoint in _flatten(operator):
        for method in methods:
            operation = {
                "summary": _summary(endpoint) or f"{method} {path}",
                "operationId": f"operator_{method.lower()}_{path}",
            }
            operation["responses"] = {"200": {"description": "OK"}}
            spec.add(path, method.lower(), operation, "operator")
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "trackgate",
            "version": version,
            "description": "A multi-dialect tracking gateway: each vendor's SDK, pointed at this base URL,"
            " sends its own payloads to its own paths (and under its prefix, e.g. /segment/v1/track).",
        },
        "tags": [{"name": d.name} for d in dialects] + [{"name": "operator"}],
        "paths": dict(sorted(spec.paths.items())),
        "components": {"schemas": spec.components},
    }


async def openapi_endpoint(request: Request) -> Response:
    """GET /openapi.json: this document (OpenAPI 3.1)."""
    return Response(request.app.state.openapi_json, media_type="application/json")
