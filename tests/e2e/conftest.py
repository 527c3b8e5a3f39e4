"""Fixtures for the browser tests: headless Chromium (Debian's chromium + chromedriver), pages served from
a tiny local HTTP server (each call a new origin), and a screenshot of each test page kept in
``build/screenshots/`` (``TRACKGATE_SCREENSHOTS`` to put them elsewhere)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from trackgate.gateway.tinytrail import BROWSER_UA

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
HAVE_CHROMIUM = bool(shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER))
SCREENSHOTS = Path(
    os.environ.get("TRACKGATE_SCREENSHOTS", Path(__file__).parents[2] / "build" / "screenshots")
)

Pages = Callable[[Mapping[str, bytes]], str]
"""``pages({"/path": html, ...})`` serves those paths (anything else 404) and returns the origin,
``http://localhost:<port>``; each call is a new server, so a new origin."""


@pytest.fixture
def chromium() -> Iterator[Any]:
    if not HAVE_CHROMIUM:
        pytest.skip(f"needs Chromium and chromedriver: {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="trackgate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1024,768",
        f"--user-data-dir={profile}",
        f"--user-agent={BROWSER_UA}",  # headless Chromium's own agent says HeadlessChrome: a bot
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def pages() -> Iterator[Pages]:
    servers: list[ThreadingHTTPServer] = []

    def serve(routes: Mapping[str, bytes]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = routes.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                body = body if body is not None else b"not found"
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://localhost:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Any], Path]:
    """``screenshot(driver)``: the page as it is now, kept as ``<test name>.png``."""

    def take(driver: Any) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name) + ".png")
        driver.save_screenshot(str(path))
        return path

    return take
