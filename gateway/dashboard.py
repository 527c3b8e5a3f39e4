"""``GET /dashboard``: TinyTrail's reports as a page (static HTML, CSS and plain JS from ``static/``, the
chart drawn by the vendored uPlot in ``static/uplot/``). The page holds no data of its own: it asks for an
API key once, keeps it in the browser's ``localStorage`` and calls ``/api/v1/websites`` and
``/api/v1/reports/*`` with ``X-API-KEY``, like any other client of the API.

**Caching.** The page names each asset with its content digest (``dashboard/dashboard.js?v=<digest>``),
so an asset asked for by its current digest is cached for a year (``immutable``) and the page itself is
revalidated on every load (``no-cache`` with its ETag: a 304 when unchanged). A new version of the
package is seen at once, never half old and half new. Bodies are compressed once (gzip, br) by
``scripts.packaged``, as the vendors' scripts are.

**Headers.** The page carries a Content-Security-Policy that allows only this origin's scripts, styles and
API (no inline script, no third party), so whatever a report row holds cannot run as code; the page
writes every API value with ``textContent``."""

from __future__ import annotations

from functools import lru_cache

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from trackgate.gateway.scripts import IMMUTABLE, SHORT, Script, packaged, script_response

PATH = "/dashboard"
ASSETS = {
    "dashboard.js": "application/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "uplot/uPlot.iife.min.js": "application/javascript; charset=utf-8",
    "uplot/uPlot.min.css": "text/css; charset=utf-8",
}
"""What ``/dashboard/<name>`` serves (from ``static/``), with its media type; nothing else is served."""
_PAGE = "dashboard.html"
REVALIDATE = "no-cache"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def asset_url(name: str) -> str:
    """The URL the page uses for an asset, relative to ``/dashboard``: names the asset's current digest."""
    return f"dashboard/{name}?v={packaged(name).version}"


@lru_cache(maxsize=1)
def page_script() -> Script:
    """The page with each ``{{asset}}`` placeholder replaced by the asset's versioned URL (built once)."""
    html = packaged(_PAGE).bodies["identity"].decode()
    for name in ASSETS:
        html = html.replace("{{" + name + "}}", asset_url(name))
    if "{{" in html:
        raise RuntimeError(f"static/{_PAGE} names an asset that is not in dashboard.ASSETS")
    return Script.of(html.encode())


def _with_headers(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


async def page(request: Request) -> Response:
    """GET /dashboard: the page (revalidated on every load)."""
    return _with_headers(
        script_response(request, page_script(), REVALIDATE, media_type="text/html; charset=utf-8")
    )


async def asset(request: Request) -> Response:
    """GET /dashboard/<asset>: immutable when asked for by its current digest, else revalidated hourly."""
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        return PlainTextResponse("not found", status_code=404)
    script = packaged(name)
    cache = IMMUTABLE if request.query_params.get("v") == script.version else SHORT
    return _with_headers(script_response(request, script, cache, media_type=media_type))


ROUTES: list[BaseRoute] = [
    Route(PATH, page, methods=["GET"]),
    Route(PATH + "/{name:path}", asset, methods=["GET"]),
]
