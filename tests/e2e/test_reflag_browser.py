"""``@reflag/browser-sdk`` and its predecessor ``@bucketco/browser-sdk`` (their UMD builds, served by the
page's own site) in a real headless Chromium with ``apiBaseUrl`` at the gateway, with and without the
first-party prefix: user, company, track and feedback land in PostgreSQL once each; the flag fetch (and
Reflag's live channel) the SDK makes at start get answers it accepts (no flag on, nothing pushed), and
the SDK logs no error or warning.

Needs the npm packages: ``npm ci --prefix tests/e2e/browser``. Rows are counted by a marker in the ids."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest

from tests.helpers import console_errors, live_gateway, stored
from trackgate.gateway import bucket as gw
from trackgate.sources import add_source

MODULES = Path(__file__).resolve().parent / "browser" / "node_modules"


class Sdk(NamedTuple):
    package: str
    umd: str
    client: str  # the UMD global's client class
    flag: str  # its getFlag / getFeature
    flags: str
    feedback_key: str  # which feedback field names the flag


SDKS = {
    "reflag": Sdk(
        "@reflag/browser-sdk",
        "reflag-browser-sdk.umd.js",
        "ReflagBrowserSDK.ReflagClient",
        "getFlag",
        "getFlags",
        "flagKey",
    ),
    "bucketco": Sdk(
        "@bucketco/browser-sdk",
        "bucket-browser-sdk.umd.js",
        "BucketBrowserSDK.BucketClient",
        "getFeature",
        "getFeatures",
        "featureKey",
    ),
}


def app_page(sdk: Sdk, api: str, key: str, run: str) -> bytes:
    options = json.dumps(
        {
            "publishableKey": key,
            "apiBaseUrl": api,
            "user": {"id": f"user-{run}", "name": "Ada", "email": "ada@example.com"},
            "company": {"id": f"co-{run}", "name": "Acme", "plan": "pro"},
        }
    )
    version = json.loads((MODULES / sdk.package / "package.json").read_text())["version"]
    return f"""<!doctype html>
<html><head><title>{sdk.package}</title><script src="/{sdk.umd}"></script></head>
<body><h1>{sdk.package} {version}</h1><p>apiBaseUrl: <code>{api}</code></p>
<p id="status">initializing...</p>
<script>
window.reflagLog = [];
const record = (level) => (...args) => window.reflagLog.push([level, args.map(String).join(" ")]);
const options = {options};
options.logger = Object.fromEntries(["debug", "info", "warn", "error"].map((l) => [l, record(l)]));
window.reflag = new {sdk.client}(options);
window.reflag.initialize().then(() => {{
  const huddle = window.reflag.{sdk.flag}("huddle");
  document.getElementById("status").textContent =
    "initialized; flags: " + JSON.stringify(window.reflag.{sdk.flags}())
    + "; huddle enabled: " + huddle.isEnabled;
  window.reflagReady = true;
}});
</script></body></html>""".encode()


def wait_rows(db, drain, run: str, n: int, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        drain()
        rows = stored(db, "raw::text LIKE %s", (f"%{run}%",))
        if len(rows) >= n or time.monotonic() > deadline:
            assert len(rows) == n, [(r["type"], r["name"]) for r in rows]
            return rows
        time.sleep(0.2)


@pytest.mark.parametrize("prefix", ["", "/t"], ids=["root", "first-party"])
@pytest.mark.parametrize("name", list(SDKS))
def test_reflag_browser_sdk_in_chromium(settings, chromium, pages, screenshot, db, drain, name, prefix):
    sdk = SDKS[name]
    dist = MODULES / sdk.package / "dist"
    if not dist.is_dir():
        pytest.skip(f"needs {sdk.package}: npm ci --prefix tests/e2e/browser")
    created = gw.new_source(None, {})
    add_source(
        settings.database_url, "bucket", "web", created["key"], created["settings"], created["extra_keys"]
    )
    run = secrets.token_hex(6)
    served = msgspec.structs.replace(settings, first_party_prefix=prefix or None)
    with live_gateway(served) as gateway:
        api = gateway + prefix
        origin = pages(
            {
                "/app": app_page(sdk, api, created["key"], run),
                f"/{sdk.umd}": (dist / sdk.umd).read_bytes(),
            }
        )
        chromium.get(f"{origin}/app")
        deadline = time.monotonic() + 15
        while not chromium.execute_script("return window.reflagReady === true"):
            assert time.monotonic() < deadline, chromium.execute_script("return window.reflagLog")
            time.sleep(0.1)
        status = chromium.find_element("id", "status").text
        chromium.execute_script(
            f"""
            window.reflag.track("export", {{format: "csv", run: "{run}"}});
            window.reflag.feedback({{{sdk.feedback_key}: "export", score: 5, comment: "great {run}"}});
            """
        )
        rows = wait_rows(db, drain, run, 5)
        time.sleep(0.5)
        rows = wait_rows(db, drain, run, 5)  # and nothing more
        screenshot(chromium)
        log = chromium.execute_script("return window.reflagLog")
        errors = console_errors(chromium)

    assert "huddle enabled: false" in status and "flags: {}" in status, status
    assert [entry for entry in log if entry[0] in ("warn", "error")] == [], log
    if name == "reflag":  # its live channel (automatic feedback) was answered 204 and closed quietly
        assert ["debug", "[SSE] event source connection closed [object Event]"] in log, log
    assert [e for e in errors if "favicon" not in e] == [], errors
    kinds = sorted((row["type"], row["name"] or "") for row in rows)
    # the SDK reports the isEnabled check of "huddle" as a feature-flag-event
    assert kinds == [
        ("feedback", ""),
        ("group", ""),
        ("identify", ""),
        ("track", "export"),
        ("track", "feature-flag-event"),
    ], kinds
    by_type = {row["type"]: row for row in rows if row["name"] != "feature-flag-event"}
    assert by_type["identify"]["user_id"] == f"user-{run}"
    assert by_type["identify"]["traits"]["email"] == "ada@example.com"
    assert by_type["group"]["group_id"] == f"co-{run}"
    assert by_type["group"]["user_id"] == f"user-{run}"
    assert by_type["track"]["properties"] == {"format": "csv", "run": run}
    assert by_type["track"]["user_id"] == f"user-{run}"
    assert by_type["feedback"]["properties"]["score"] == 5
