"""Record what real Segment-dialect SDKs send, as golden fixtures under ``tests/golden/segment/``.

Not part of the test suite: the suite only reads the fixtures this writes (no network, no npm).

    . /tmp/venv/bin/activate
    python tests/capture/capture_segment.py                  # every SDK
    python tests/capture/capture_segment.py node             # only the SDKs named
    python tests/capture/capture_segment.py --out /tmp/cap   # somewhere else (to compare)

SDKs, each pointed at a stub on 127.0.0.1 that records method, path, headers and body:

- ``segment_python_*``: segment-analytics-python (``Client(key, host=..., sync_mode=True)``), one
  request a call; ``..._gzip_*`` the same with ``gzip=True``; ``segment_python_batch`` three calls
  flushed as one batch by the background consumer;
- ``rudder_python_*``: rudder-sdk-python (``Client(key, host=..., sync_mode=True)``, gzip by default);
- ``node_*``: npm ``@segment/analytics-node`` (``flushAt: 1``), installed into ``/tmp/sdknode``
  (outside the repo; ``TRACKGATE_SDKNODE_DIR`` overrides) with ``npm install`` when missing.

The stub answers ``200 {"success":true}`` and inflates gzip bodies, as the gateway's body reader
does: ``body_text`` is the JSON text the adapter sees, verbatim; ``headers`` are as sent (so a
gzip capture still shows ``Content-Encoding: gzip`` and the compressed ``Content-Length``).
``received_at`` is the stub's clock when the request arrived, so the clock-skew correction in the
expected events is computed from real, slightly skewed numbers.

Fixtures are written with ``"expected": null``; an existing fixture's ``"xfail"`` reason is kept (its
expected events must then be written by hand again: the test refuses an xfail without them). Fill in
the others with

    TRACKGATE_REGEN_GOLDEN=1 pytest tests/adapters/test_segment_golden.py

and review every expected event by hand against ``/work/shared/reference/segment.md`` before
committing: an expected value must be what is right, not what the adapter happens to do.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "golden" / "segment"
WRITE_KEY = "wk_golden_0123456789"
SOURCE_ID = "src_golden"
NODE_DIR = Path(os.environ.get("TRACKGATE_SDKNODE_DIR", "/tmp/sdknode"))


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def take(self) -> list[dict]:
        with self.lock:
            out, self.requests = self.requests, []
        return out


def make_handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            received_at = datetime.now(UTC)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
            with recorder.lock:
                recorder.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "body_text": body.decode("utf-8"),
                        "received_at": received_at.isoformat().replace("+00:00", "Z"),
                        "ip": self.client_address[0],
                    }
                )
            reply = b'{"success":true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler


# --- the calls each SDK makes -------------------------------------------------------------------

CONTEXT = {"ip": "203.0.113.50", "userAgent": "curl/8.5.0", "page": {"url": "https://example.com/pricing"}}


def python_calls(client, screen: bool = True) -> None:
    """The same calls through segment-analytics-python or rudder-sdk-python (same signatures)."""
    client.identify(
        "user-42", {"email": "ada@example.com", "name": "Ada Lovelace", "plan": "pro"}, anonymous_id="anon-7"
    )
    client.track(
        "user-42",
        "Order Completed",
        {"order_id": "o-1001", "revenue": 14.99, "currency": "EUR"},
        context=CONTEXT,
        integrations={"All": False, "Mixpanel": True},
    )
    client.page("user-42", "Docs", "Pricing", {"url": "https://example.com/pricing"})
    if screen:
        client.screen("user-42", "Onboarding", "Welcome", {"step": 1})
    client.group("user-42", "org-9", {"name": "Initech", "employees": 420})
    client.alias("anon-7", "user-42")


def capture_segment_python(base: str, recorder: Recorder) -> dict[str, dict]:
    from segment.analytics import Client

    out: dict[str, dict] = {}
    client = Client(WRITE_KEY, host=base, sync_mode=True)
    python_calls(client)
    out.update(_by_type("segment_python", recorder.take()))

    client = Client(WRITE_KEY, host=base, sync_mode=True, gzip=True)
    client.track("user-42", "Signed Up", {"plan": "pro"}, anonymous_id="anon-7")
    out.update(_by_type("segment_python_gzip", recorder.take()))

    # the background consumer: several calls, one /v1/batch
    client = Client(WRITE_KEY, host=base, upload_interval=2, upload_size=100)
    client.identify(42, {"email": "bob@example.com"})  # a number: the SDK stringifies it
    client.track(anonymous_id="anon-8", event="Viewed Item", properties={"sku": "A1"})
    client.page(anonymous_id="anon-8", name="Home")
    client.shutdown()
    requests = recorder.take()
    assert len(requests) == 1, f"expected one batch request, got {len(requests)}"
    out["segment_python_batch"] = requests[0]
    return out


def capture_rudder_python(base: str, recorder: Recorder) -> dict[str, dict]:
    from rudderstack.analytics import Client

    client = Client(WRITE_KEY, host=base, sync_mode=True)
    python_calls(client)
    return _by_type("rudder_python", recorder.take())


NODE_SCRIPT = r"""
const { Analytics } = require('@segment/analytics-node')
const analytics = new Analytics({ writeKey: process.argv[2], host: process.argv[3], flushAt: 1 })
const ctx = { ip: '203.0.113.50', userAgent: 'curl/8.5.0', page: { url: 'https://example.com/pricing' } }
const calls = [
  () => analytics.identify({ userId: 'user-42', anonymousId: 'anon-7',
                             traits: { email: 'ada@example.com', name: 'Ada Lovelace', plan: 'pro' } }),
  () => analytics.track({ userId: 'user-42', event: 'Order Completed',
                          properties: { order_id: 'o-1001', revenue: 14.99, currency: 'EUR' },
                          context: ctx, integrations: { All: false, Mixpanel: true } }),
  () => analytics.page({ userId: 'user-42', category: 'Docs', name: 'Pricing',
                         properties: { url: 'https://example.com/pricing' } }),
  () => analytics.screen({ userId: 'user-42', name: 'Welcome', properties: { step: 1 } }),
  () => analytics.group({ userId: 'user-42', groupId: 'org-9', traits: { name: 'Initech', employees: 420 } }),
  () => analytics.alias({ userId: 'user-42', previousId: 'anon-7' }),
]
;(async () => {
  for (const call of calls) {
    await new Promise((resolve, reject) => {
      analytics.once('http_request', () => setTimeout(resolve, 50))
      analytics.once('error', reject)
      call()
    })
  }
  await analytics.closeAndFlush()
})().catch((err) => { console.error(err); process.exit(1) })
"""


def capture_node(base: str, recorder: Recorder) -> dict[str, dict]:
    if not (NODE_DIR / "node_modules" / "@segment" / "analytics-node").exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        if not (NODE_DIR / "package.json").exists():
            subprocess.run(["npm", "init", "-y"], cwd=NODE_DIR, check=True, capture_output=True)
        subprocess.run(["npm", "install", "@segment/analytics-node"], cwd=NODE_DIR, check=True)
    script = NODE_DIR / "capture_segment.js"
    script.write_text(NODE_SCRIPT)
    subprocess.run(["node", str(script), WRITE_KEY, base], cwd=NODE_DIR, check=True, timeout=60)
    return _by_type("node", recorder.take())


def _by_type(prefix: str, requests: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for request in requests:
        batch = json.loads(request["body_text"])["batch"]
        name = f"{prefix}_{batch[0]['type']}"
        assert name not in out, f"two requests for {name}"
        out[name] = request
    return out


CAPTURES = {
    "segment_python": capture_segment_python,
    "rudder_python": capture_rudder_python,
    "node": capture_node,
}


def main(argv: list[str]) -> None:
    out_dir = OUT
    if "--out" in argv:
        i = argv.index("--out")
        out_dir = Path(argv[i + 1]).resolve()
        argv = argv[:i] + argv[i + 2 :]
    only = set(argv) or set(CAPTURES)
    unknown = only - set(CAPTURES)
    if unknown:
        raise SystemExit(f"unknown SDK(s): {', '.join(sorted(unknown))}; choose from {', '.join(CAPTURES)}")
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(recorder))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for sdk in CAPTURES:
            if sdk not in only:
                continue
            for case, request in CAPTURES[sdk](base, recorder).items():
                path = out_dir / f"{case}.json"
                previous = json.loads(path.read_text()) if path.exists() else {}
                fixture = {
                    "description": f"captured from {sdk}: {request['method']} {request['path']}",
                    "call": request["path"].rstrip("/").rsplit("/", 1)[-1],
                    "headers": request["headers"],
                    "body_text": request["body_text"],
                    "received_at": request["received_at"],
                    "request_id": f"req-{case}",
                    "source_id": SOURCE_ID,
                    "ip": request["ip"],
                }
                if "xfail" in previous:
                    fixture["xfail"] = previous["xfail"]
                    print(f"{case}: has an xfail; write its expected events by hand")
                fixture["write_key"] = WRITE_KEY
                fixture["expected"] = None
                path.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n")
                print("wrote", path)
    finally:
        server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
