"""Record what the real Bucket/Reflag SDKs send, as golden fixtures under ``tests/golden/bucket/``.

Not part of the test suite: the suite only reads the fixtures this writes (no network, no npm).

    . /tmp/venv/bin/activate
    npm ci --prefix tests/e2e/bucket
    python tests/capture/capture_bucket.py            # both SDKs
    python tests/capture/capture_bucket.py --out /tmp/cap

The SDKs are driven by ``tests/e2e/bucket/send.mjs`` (the same driver as the end-to-end tests) against a
stub on 127.0.0.1 that answers as Reflag does (``{"success":true}``; ``GET /features`` an empty flag list
at version 0) and records every POST:

- ``tracking_sdk_*``: ``@bucketco/tracking-sdk`` 2.4.0, one request per call (``/{key}/user`` ...);
- ``node_sdk_bulk``: ``@reflag/node-sdk`` 1.7.1, one ``/bulk`` of user, company, event and a flag check.

Fixtures are written with ``"expected": null``; fill them in with

    TRACKGATE_REGEN_GOLDEN=1 pytest tests/adapters/test_bucket_golden.py

and review every expected event by hand against the rules in ``adapters/bucket.py`` before committing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "golden" / "bucket"
DRIVER_DIR = HERE.parent / "e2e" / "bucket"
TRACKING_KEY = "trCqx4DGo1lk3Lcct5NHLjWy"
SECRET_KEY = "sec_golden_0123456789abcdefghij"
SOURCE_ID = "src_golden"

TRACKING_CALLS = [
    {
        "call": "user",
        "userId": 1234567890,
        "attributes": {"name": "Rasmus Makwarth", "custom_property": True},
    },
    {
        "call": "company",
        "companyId": 101112231415,
        "userId": 1234567890,
        "attributes": {"name": "Acme Corp", "monthly_spend": 99, "activated": True},
    },
    {
        "call": "track",
        "event": "Sent message",
        "userId": 1234567890,
        "companyId": "my_company_id",
        "attributes": {"position": "popover", "version": 3},
        "context": {"active": False},
    },
    {
        "call": "feedback",
        "featureId": "my_feature_id",
        "userId": 1234567890,
        "companyId": 101112231415,
        "score": 4,
        "comment": "It's pretty nice, but I expect slightly more to be fully satisfied",
    },
]
NODE_CALLS = [
    {"call": "user", "userId": "u-42", "attributes": {"name": "Ada", "email": "ada@example.com"}},
    {
        "call": "company",
        "companyId": "acme",
        "userId": "u-42",
        "attributes": {"name": "Acme", "plan": "enterprise"},
        "context": {"active": False},
    },
    {
        "call": "track",
        "userId": "u-42",
        "event": "Huddle started",
        "companyId": "acme",
        "attributes": {"n": 3},
    },
    {"call": "flag", "key": "huddle", "user": {"id": "u-42"}, "company": {"id": "acme"}},
]


def make_handler(recorded: list[dict]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path.split("?")[0].endswith("/features"):
                self._reply(b'{"success":true,"features":[],"flagStateVersion":0}')
            else:
                self._reply(b'{"success":true,"features":{}}')

        def do_POST(self) -> None:  # noqa: N802
            received_at = datetime.now(UTC)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            recorded.append(
                {
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body_text": body.decode("utf-8"),
                    "received_at": received_at.isoformat().replace("+00:00", "Z"),
                    "ip": self.client_address[0],
                }
            )
            reply = b'{"success":true}'
            if self.path.endswith("/feedback"):
                reply = b'{"success":true,"feedbackId":"fb-golden"}'
            self._reply(reply)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler


def run_driver(sdk: str, base: str, key: str, calls: list[dict]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"}
    subprocess.run(
        ["node", "send.mjs", sdk, base, key, "--calls", json.dumps(calls)],
        cwd=DRIVER_DIR,
        check=True,
        timeout=120,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str]) -> None:
    out_dir = Path(argv[argv.index("--out") + 1]).resolve() if "--out" in argv else OUT
    recorded: list[dict] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(recorded))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    cases: dict[str, dict] = {}
    try:
        run_driver("tracking", base, TRACKING_KEY, TRACKING_CALLS)
        for request in recorded:
            cases[f"tracking_sdk_{request['path'].rsplit('/', 1)[-1]}"] = request
        recorded.clear()
        run_driver("node", base, SECRET_KEY, NODE_CALLS)
        (bulk,) = recorded
        cases["node_sdk_bulk"] = bulk
    finally:
        server.shutdown()
    out_dir.mkdir(parents=True, exist_ok=True)
    for case, request in cases.items():
        sdk = "@reflag/node-sdk 1.7.1" if case.startswith("node") else "@bucketco/tracking-sdk 2.4.0"
        fixture = {
            "description": f"captured from {sdk}: POST {request['path']}",
            "path": request["path"],
            "headers": request["headers"],
            "body_text": request["body_text"],
            "received_at": request["received_at"],
            "request_id": f"req-{case}",
            "source_id": SOURCE_ID,
            "ip": request["ip"],
            "key": TRACKING_KEY if case.startswith("tracking") else SECRET_KEY,
            "expected": None,
        }
        path = out_dir / f"{case}.json"
        path.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1:])
