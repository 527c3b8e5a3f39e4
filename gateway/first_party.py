"""First-party serving: every path the gateway serves is served under the operator's prefix too
(``TRACKGATE_FIRST_PARTY_PREFIX=/t``), so a site routes ``/t/...`` on its own domain to trackgate and no
path it shows names a vendor.

A prefixed request keeps its full ``path`` and gets the prefix appended to ``root_path``, as ASGI
describes a mounted application: Starlette's routing and ``IngestFront`` match the path below the
prefix (``starlette.routing.get_route_path``), and what builds a URL back to the gateway
(analytics.js's ``apiHost``) reads ``root_path``.
"""

from __future__ import annotations

from starlette.types import Scope


def under_prefix(scope: Scope, prefix: str | None) -> Scope:
    """``scope`` with ``prefix`` added to its ``root_path`` when its path is below the prefix
    (``/t/...``); otherwise ``scope`` unchanged. The bare prefix is not taken: ``POST /t`` stays
    Spectacle's pixel call."""
    if prefix is None:
        return scope
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    mounted = root_path + prefix
    if path.startswith(mounted + "/"):
        return {**scope, "root_path": mounted}
    return scope
