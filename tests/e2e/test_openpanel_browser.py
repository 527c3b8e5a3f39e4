"""``@openpanel/web`` (its script-tag build, served by trackgate as /op1.js) in a real headless Chromium,
with ``apiUrl`` at the gateway and with and without the first-party prefix: screen views on navigation,
a custom event, a ``data-track`` click and identify land in PostgreSQL once each; the source's allowed
origin admits the page's origin, and the same page on a second origin sees its requests refused and
nothing of it is stored.

Each page's URL (and the profile id) carries a marker; rows are counted by it."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import msgspec
import pytest

from tests.helpers import console_errors, live_gateway, stored
from trackgate.gateway import openpanel as gw
from trackgate.sources import add_source

VERSION = (Path(__file__).parents[2] / "gateway" / "static" / "openpanel" / "VERSION").read_text().strip()


def app_page(api: str, client_id: str, run: str) -> bytes:
    init = json.dumps(
        {
            "clientId": client_id,
            "apiUrl": api,
            "trackScreenViews": True,
            "trackOutgoingLinks": True,
            "trackAttributes": True,
        }
    )
    return f"""<!doctype html>
<html><head><title>Dashboard</title>
<script>
window.op = window.op || function(...args) {{ (window.op.q = window.op.q || []).push(args); }};
window.op("init", {init});
</script>
<script src="{api}/op1.js" defer async></script>
</head><body><h1>Dashboard (@openpanel/web {VERSION})</h1>
<p>apiUrl: <code>{api}</code></p>
<button id="cta" data-track="cta_clicked" data-plan-name="pro" data-run="{run}">Upgrade</button>
</body></html>""".encode()


def wait_rows(db, drain, where: str, params: tuple, n: int, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        drain()
        rows = stored(db, where, params)
        if len(rows) >= n or time.monotonic() > deadline:
            assert len(rows) == n, [(r["type"], r["name"]) for r in rows]
            return rows
        time.sleep(0.2)


def _wait_loaded(driver, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not driver.execute_script("return !!window.openpanel"):
        assert time.monotonic() < deadline, "op1.js did not start"
        time.sleep(0.1)


@pytest.mark.parametrize("prefix", ["", "/t"], ids=["root", "first-party"])
def test_openpanel_web_in_chromium(settings, chromium, pages, screenshot, db, drain, prefix):
    routes: dict[str, bytes] = {}
    allowed = pages(routes)
    other_routes: dict[str, bytes] = {}
    other = pages(other_routes)  # the same page on a second origin, not allowed
    created = gw.new_source(None, {"origins": [allowed]})
    add_source(
        settings.database_url, "openpanel", "web", created["key"], created["settings"], created["extra_keys"]
    )
    run = secrets.token_hex(6)
    mine = ("raw::text LIKE %s", (f"%{run}%",))
    served = msgspec.structs.replace(settings, first_party_prefix=prefix or None)
    with live_gateway(served) as gateway:
        api = gateway + prefix
        routes["/app"] = other_routes["/app"] = app_page(api, created["key"], run)

        chromium.get(f"{allowed}/app?run={run}")
        _wait_loaded(chromium)
        wait_rows(db, drain, *mine, 1)  # the first screen view
        chromium.execute_script(f"history.pushState({{}}, '', '/app/settings?run={run}')")
        chromium.execute_script(f"window.op('track', 'report_exported', {{format: 'csv', run: '{run}'}})")
        chromium.find_element("id", "cta").click()
        chromium.execute_script(
            f"window.op('identify', {{profileId: 'user-{run}', firstName: 'Ada', email: 'ada@example.com'}})"
        )
        rows = wait_rows(db, drain, *mine, 5)
        screenshot(chromium)
        assert not [e for e in console_errors(chromium) if "favicon" not in e]

        chromium.get(f"{other}/app?run=other-{run}")
        _wait_loaded(chromium)
        chromium.execute_script(f"window.op('track', 'report_exported', {{run: 'other-{run}'}})")
        deadline = time.monotonic() + 3
        refused: list[str] = []
        while time.monotonic() < deadline and len(refused) < 2:
            refused += [e for e in console_errors(chromium) if "/track" in e]
            time.sleep(0.2)
        drain()

    assert len(refused) == 2, refused  # the screen view and the event, each refused
    assert all(e.startswith(f"{api}/track ") and "status of 401" in e for e in refused), refused
    assert stored(db, "raw::text LIKE %s", (f"%other-{run}%",)) == []

    kinds = sorted((row["type"], row["name"] or "") for row in rows)
    assert (
        kinds
        == sorted(
            [
                ("screen", "screen_view"),
                ("screen", "screen_view"),
                ("track", "report_exported"),
                ("track", "cta_clicked"),
                ("identify", ""),
            ]
        )
        or kinds
    )
    views = [row for row in rows if row["name"] == "screen_view"]
    assert sorted(v["context"]["page"]["path"] for v in views) == ["/app", "/app/settings"]
    for row in rows:
        assert row["context"]["library"] == {"name": "web", "version": VERSION}
    by_name = {row["name"]: row for row in rows}
    assert by_name["report_exported"]["properties"]["format"] == "csv"
    assert by_name["cta_clicked"]["properties"]["planName"] == "pro"
    identify = next(row for row in rows if row["type"] == "identify")
    assert identify["user_id"] == f"user-{run}"
