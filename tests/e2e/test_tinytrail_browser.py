"""The TinyTrail tracker in a real headless Chromium: a page on localhost loads /js/tracker.js from a live
gateway (another origin, so every POST is preflighted), and what it sends lands in PostgreSQL; the same
through the first-party prefix (/t/js/tracker.js, which then sends to /t/api/v1/collect).

Needs Debian's chromium and its driver: ``apt-get update && apt-get install -y chromium chromium-driver``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec
import pytest

from tests.helpers import live_gateway, stored
from trackgate.gateway.tinytrail import BROWSER_UA, new_source
from trackgate.sources import add_source

CHROMIUM = "/usr/bin/chromium"

WEBSITE = "3f1c2a9e-7b4d-4c1e-9a8f-2d6b5e4c3a10"
GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "tinytrail"


def page(gateway: str, outbound: str) -> bytes:
    """``gateway`` is where the tracker is served from: the gateway, or its first-party prefix."""
    filler = "".join(f"<p>Paragraph {i}</p>" for i in range(400))  # a page to scroll through
    return f"""<!doctype html>
<html><head><title>Pricing</title>
<script defer data-id="{WEBSITE}" src="{gateway}/js/tracker.js"></script>
</head><body>
<a id="out" href="{outbound}">Elsewhere</a>
{filler}
</body></html>""".encode()


@pytest.fixture(params=["", "/t"], ids=["root", "first-party"])
def site(settings, request) -> Iterator[tuple[str, str]]:
    """The gateway (127.0.0.1, or its first-party prefix /t) and a page server (reached as localhost;
    outbound link to 127.0.0.1)."""
    created = new_source(WEBSITE, {"domain": "localhost"})
    add_source(settings.database_url, "tinytrail", "localhost", created["key"], created["settings"])
    prefix = request.param
    served = msgspec.structs.replace(settings, first_party_prefix=prefix or None)
    with live_gateway(served) as base:
        gateway = base + prefix
        holder: dict[str, str] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = (
                    page(gateway, holder["outbound"]) if self.path.startswith("/pricing") else b"<p>away</p>"
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = server.server_address[1]
        holder["outbound"] = f"http://127.0.0.1:{port}/elsewhere"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield gateway, f"http://localhost:{port}"
        finally:
            server.shutdown()
            server.server_close()


def wait_for(db, drain, names: set[str], timeout: float = 15) -> list[dict]:
    """Drain until an event of each name is stored (page_view counts as "page_view")."""
    deadline = time.monotonic() + timeout
    while True:
        drain()
        rows = stored(db, "dialect = 'tinytrail'")
        seen = {row["name"] or "page_view" for row in rows}
        if names <= seen or time.monotonic() > deadline:
            assert names <= seen, f"missing {names - seen}; stored {sorted(seen)}"
            return rows
        time.sleep(0.2)


def test_tracker_in_chromium_delivers_into_postgresql(site, chromium, screenshot, db, drain):
    gateway, origin = site
    browser = chromium
    url = f"{origin}/pricing?utm_source=newsletter&utm_medium=email"
    browser.get(url)
    wait_for(db, drain, {"page_view"})
    screenshot(browser)

    browser.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")
    browser.execute_script("window.analytics.track('signup_complete', {plan: 'pro', seats: 3})")
    wait_for(db, drain, {"scroll_25", "scroll_50", "scroll_75", "signup_complete"})

    browser.find_element("id", "out").click()  # navigates away: keepalive carries the beacon
    rows = wait_for(db, drain, {"outbound_link", "close_tab"})

    by_name = {row["name"] or "page_view": row for row in rows}
    view = by_name["page_view"]
    assert view["type"] == "page"
    assert view["context"]["page"] == {
        "url": url,
        "path": "/pricing",
        "search": "?utm_source=newsletter&utm_medium=email",
    }
    assert view["context"]["campaign"] == {"source": "newsletter", "medium": "email"}
    assert view["context"]["user_agent"] == BROWSER_UA
    assert view["context"]["screen"]["width"] > 0 and view["context"]["screen"]["height"] > 0
    assert view["raw"]["website_id"] == WEBSITE
    assert view["raw"]["utm_source"] == "newsletter"

    custom = by_name["signup_complete"]
    assert custom["type"] == "track"
    assert custom["properties"] == {"plan": "pro", "seats": 3, "name": "signup_complete"}
    assert custom["raw"]["event_type"] == "custom"

    outbound = by_name["outbound_link"]
    assert outbound["type"] == "track"
    assert outbound["properties"]["href"].endswith("/elsewhere")
    assert outbound["properties"]["text"] == "Elsewhere"

    for name in ("scroll_25", "scroll_50", "scroll_75", "close_tab"):
        assert by_name[name]["type"] == "track"
        assert by_name[name]["context"]["page"]["path"] == "/pricing"
    # each once: page_view, three depths, custom, outbound, close_tab
    assert sorted(row["name"] or "page_view" for row in rows) == sorted(
        ["page_view", "scroll_25", "scroll_50", "scroll_75", "signup_complete", "outbound_link", "close_tab"]
    )
    for row in rows:  # the adapter's flags, and the workers' enrichment beside them
        assert row["enrichment"]["is_bot"] is False and row["enrichment"]["is_excluded"] is False
        assert row["enrichment"]["browser"] == "Chrome" and row["enrichment"]["device_type"] == "desktop"
    if os.environ.get("TRACKGATE_CAPTURE_GOLDEN") == "1":
        capture(db, origin)


def capture(db, origin: str) -> None:
    """Each body the tracker sent, verbatim, as a golden fixture (``expected`` is then filled by
    ``TRACKGATE_REGEN_GOLDEN=1 pytest tests/adapters/test_tinytrail.py``)."""
    rows = db.execute("SELECT coalesce(name, 'page_view'), raw::text FROM events WHERE dialect = 'tinytrail'")
    for name, raw in rows.fetchall():
        fixture = {
            "description": f"tracker.js in Chromium {_chromium_version()}: {name}",
            "headers": {"Content-Type": "application/json", "User-Agent": BROWSER_UA, "Origin": origin},
            "received_at": "2026-05-04T10:00:00.250Z",
            "source_id": "src_golden",
            "ip": "127.0.0.1",
            "hints": {"is_bot": False, "is_excluded": False},
            "request_id": f"req-tracker_{name}",
            "body_text": raw,
        }
        (GOLDEN / f"tracker_{name}.json").write_text(json.dumps(fixture, indent=2) + "\n")


def _chromium_version() -> str:
    import subprocess

    out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, check=False).stdout
    return out.split()[1] if len(out.split()) > 1 else "?"
