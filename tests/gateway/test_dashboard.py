"""GET /dashboard (gateway/dashboard.py): the page and its assets come from the package, each asset named by
its digest (immutable when asked for by the current one), the page revalidated on every load, a
Content-Security-Policy that admits only this origin, and nothing fetched from elsewhere at run time.
What the page shows is tested in Chromium (tests/e2e/test_dashboard_browser.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trackgate.gateway.dashboard import ASSETS
from trackgate.gateway.scripts import IMMUTABLE, SHORT, packaged

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "gateway" / "static"


def asset_urls(html: str) -> dict[str, str]:
    """name -> version of every ``dashboard/<name>?v=<version>`` the page refers to."""
    return dict(re.findall(r'(?:src|href)="dashboard/([^"?]+)\?v=([0-9a-f]+)"', html))


def test_the_page_names_each_asset_by_its_digest_and_is_revalidated(client):
    r = client.get("/dashboard")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "default-src 'none'" in csp
    html = r.text
    assert "{{" not in html
    named = asset_urls(html)
    assert set(named) == set(ASSETS)
    for name, version in named.items():
        assert version == packaged(name).version
    again = client.get("/dashboard", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_each_asset_is_immutable_under_its_digest_and_revalidated_otherwise(client, name):
    version = packaged(name).version
    current = client.get(f"/dashboard/{name}?v={version}", headers={"Accept-Encoding": "br"})
    assert current.status_code == 200
    assert current.headers["content-type"] == ASSETS[name]
    assert current.headers["content-encoding"] == "br"
    assert current.content == (STATIC / name).read_bytes()
    assert current.headers["cache-control"] == IMMUTABLE
    for stale in (f"/dashboard/{name}", f"/dashboard/{name}?v=0123456789ab"):
        assert client.get(stale).headers["cache-control"] == SHORT


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/dashboard.html",
        "/dashboard/static/dashboard.js",
        "/dashboard/uplot/LICENSE",
        "/dashboard/x",
    ],
)
def test_nothing_else_is_served_below_it(client, path):
    assert client.get(path).status_code == 404


def test_no_asset_comes_from_another_origin_and_the_chart_library_keeps_its_license():
    for name in ("dashboard.html", "dashboard.js", "dashboard.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"""(?:src|href|url\(|fetch\()\s*=?\s*["']?(?:https?:)?//""", text), name
    license_text = (STATIC / "uplot" / "LICENSE").read_text()
    assert "MIT License" in license_text and "Leon Sorokin" in license_text
    pinned = json.loads((ROOT / "tests" / "e2e" / "browser" / "package.json").read_text())["dependencies"]
    assert (STATIC / "uplot" / "VERSION").read_text().strip() == pinned["uplot"]  # update.sh's copy
