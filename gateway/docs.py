"""``GET /docs``: the OpenAPI document (``gateway/openapi.py``) as one static HTML page.

Rendered here, once per app, from the same document ``/openapi.json`` serves: no script, no style sheet
or font from elsewhere, so it works offline and behind any content policy. Operations are grouped by
dialect; each request body links to its schema, listed at the end with each field's description.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem 2rem;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;margin-top:2.2rem}
.op{margin:.3rem 0;padding:.25rem .5rem;border-left:4px solid #999;background:#f7f7f7}
.m{display:inline-block;min-width:5.5rem;font:600 13px monospace;text-transform:uppercase}
.post{border-color:#2a7}.get{border-color:#27c}.options{border-color:#bbb}
code{font-size:13px}.s{color:#555}details{margin:.2rem 0 .2rem 5.5rem}
table{border-collapse:collapse;margin:.4rem 0 1rem}td,th{border:1px solid #ddd;padding:.2rem .5rem;
text-align:left;vertical-align:top}pre{background:#f3f3f3;padding:.5rem;overflow:auto}
"""


def _anchor(ref: str) -> str:
    return "schema-" + ref.rsplit("/", 1)[-1]


def _schema_link(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#{escape(_anchor(schema["$ref"]))}">{escape(name)}</a>'
    if "anyOf" in schema:
        return " or ".join(_schema_link(s) for s in schema["anyOf"])
    return f"<code>{escape(json.dumps(schema))}</code>"


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    parts = [
        f'<div class="op {escape(method)}"><span class="m">{escape(method)}</span>'
        f'<code>{escape(path)}</code> <span class="s">{escape(op.get("summary", ""))}</span>'
    ]
    details = []
    if op.get("description"):
        details.append(f"<p>{escape(op['description'])}</p>")
    body = op.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        details.append(f"<p>Body: {_schema_link(schema)}. {escape(body.get('description', ''))}</p>")
    responses = op.get("responses", {})
    if responses:
        rows = "".join(
            f"<tr><td>{escape(code)}</td><td>{escape(r.get('description', ''))}</td></tr>"
            for code, r in responses.items()
        )
        details.append(f"<table><tr><th>status</th><th>meaning</th></tr>{rows}</table>")
    if details:
        parts.append("<details><summary>details</summary>" + "".join(details) + "</details>")
    parts.append("</div>")
    return "".join(parts)


def _component(name: str, schema: dict[str, Any]) -> str:
    out = [f'<h3 id="{escape("schema-" + name)}">{escape(name)}</h3>']
    if schema.get("description"):
        out.append(f"<p>{escape(schema['description'])}</p>")
    properties = schema.get("properties", {})
    if properties:
        rows = "".join(
            f"<tr><td><code>{escape(field)}</code></td><td>{escape(prop.get('description', ''))}</td>"
            f"<td><code>{escape(json.dumps({k: v for k, v in prop.items() if k != 'description'}))}"
            "</code></td></tr>"
            for field, prop in properties.items()
        )
        out.append(f"<table><tr><th>field</th><th>meaning</th><th>schema</th></tr>{rows}</table>")
    else:
        out.append(f"<pre>{escape(json.dumps(schema, indent=2))}</pre>")
    return "".join(out)


def render(spec: dict[str, Any]) -> str:
    """The page for ``spec``."""
    info = spec["info"]
    by_tag: dict[str, list[str]] = {tag["name"]: [] for tag in spec.get("tags", [])}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for tag in op.get("tags", ["other"])[:1]:  # shared paths under their first dialect
                by_tag.setdefault(tag, []).append(_operation(path, method, op))
    sections = [
        f'<h2 id="{escape(tag)}">{escape(tag)}</h2>' + "".join(ops) for tag, ops in by_tag.items() if ops
    ]
    index = " · ".join(f'<a href="#{escape(tag)}">{escape(tag)}</a>' for tag, ops in by_tag.items() if ops)
    schemas = "".join(_component(n, s) for n, s in spec.get("components", {}).get("schemas", {}).items())
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(info['title'])} API</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])} {escape(info['version'])}</h1><p>{escape(info.get('description', ''))}"
        ' The machine-readable document: <a href="/openapi.json">/openapi.json</a>.</p>'
        f'<p>{index} · <a href="#schemas">schemas</a></p>'
        + "".join(sections)
        + f'<h2 id="schemas">schemas</h2>{schemas}</body></html>'
    )


async def docs_endpoint(request: Request) -> Response:
    """GET /docs: the API, readable (a static page, nothing loaded from elsewhere)."""
    return HTMLResponse(request.app.state.docs_html)
