"""Record what the real OpenPanel SDKs send, as golden fixtures under ``tests/golden/openpanel/``.

Not part of the test suite: the suite only reads the fixtures this writes (no network, no npm).

    . /tmp/venv/bin/activate
    npm ci --prefix tests/e2e/openpanel
    python tests/capture/capture_openpanel.py

SDKs, each pointed at a stub on 127.0.0.1 that records path, headers and body and answers
``200 {"deviceId": "stub-device", "sessionId": "stub-session"}`` as the real server does:

- ``npm_*``: npm ``@openpanel/sdk`` 1.3.1 through ``tests/e2e/openpanel/send.mjs`` (its default calls);
- ``pypi_*``: PyPI ``openpanel`` 0.0.1 (its only release).

Fixtures are written with ``"expected": null``; fill them in with

    TRACKGATE_REGEN_GOLDEN=1 pytest tests/adapters/test_openpanel_golden.py

and review every expected event by hand against ``/work/shared/reference/vendors.md`` §1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "golden" / "openpanel"
NODE_DIR = HERE.parent / "e2e" / "openpanel"
CLIENT_ID = "5f0b3a2e-8c1d-4e6f-9a7b-1c2d3e4f5a6b"
CLIENT_SECRET = "sec_golden0123456789"
SOURCE_ID = "src_golden"
KEEP_HEADERS = ("content-type", "openpanel-client-id", "openpanel-client-secret", "openpanel-sdk-name",
                "openpanel-sdk-version", "user-agent")  # fmt: skip


class Stub(BaseHTTPRequestHandler):
    recorded: list[dict] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.lock:
            self.recorded.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items() if k.lower() in KEEP_HEADERS},
                    "body_text": body.decode(),
                    "received_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                }
            )
        answer = b'{"deviceId":"stub-device","sessionId":"stub-session"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


def capture_npm(base: str) -> list[dict]:
    Stub.recorded = []
    subprocess.run(["node", "send.mjs", base, CLIENT_ID, CLIENT_SECRET], cwd=NODE_DIR, check=True,
                   capture_output=True)  # fmt: skip
    return list(Stub.recorded)


def capture_pypi(base: str) -> list[dict]:
    from openpanel import OpenPanel

    Stub.recorded = []
    op = OpenPanel(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_url=base)
    op.track("app_opened", {"screen": "home"})
    op.identify(
        "user-7", {"firstName": "Grace", "email": "grace@example.com", "properties": {"plan": "team"}}
    )
    op.track("checkout", {"items": 2})
    op.increment("user-7", "visits")
    op.decrement("user-7", "credits", 3)
    op.alias("user-7", "anon-abc")
    deadline = time.monotonic() + 20
    while len(Stub.recorded) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    op._cleanup()
    return list(Stub.recorded)


def write(prefix: str, sdk: str, requests: list[dict]) -> None:
    for i, req in enumerate(requests):
        body = json.loads(req["body_text"])
        name = f"{prefix}_{i:02d}_{body['type']}"
        fixture = {
            "description": f"captured from {sdk} against a stub (tests/capture/capture_openpanel.py)",
            "call": "track",
            "headers": req["headers"],
            "body_text": req["body_text"],
            "received_at": req["received_at"],
            "request_id": f"req-{name}",
            "source_id": SOURCE_ID,
            "ip": "198.51.100.23",
            "hints": {"ip": "198.51.100.23", "device_id": "dev-golden", "session_id": "sess-golden"},
            "client_id": CLIENT_ID,
            "expected": None,
        }
        (OUT / f"{name}.json").write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    which = sys.argv[1:] or ["npm", "pypi"]
    if "npm" in which:
        write("npm", "npm @openpanel/sdk 1.3.1", capture_npm(base))
    if "pypi" in which:
        write("pypi", "PyPI openpanel 0.0.1", capture_pypi(base))
    server.shutdown()


if __name__ == "__main__":
    main()
