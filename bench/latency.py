"""A constant-rate HTTP load generator (wrk2's model, in Python) for phases (f) and (g).

Request ``i`` is due at ``t0 + i / rate``; each of ``connections`` keep-alive connections takes the
next due request, waits for its time, sends it and reads the answer. A request's latency counts from
the time it was *due*, not from when a connection was free to send it: when the server falls behind,
the queueing shows in the figures (no coordinated omission). Timers on the event loop fire up to
~1 ms late; that adds alike to both servers compared at the same rate.

Every ``__SEQ__`` of the body is replaced by ``<tag>x<i>``, so each request has its own message id;
``on_ok(i, t)`` is told when request ``i`` was answered 2xx (phase (g) tracks those ids in PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.payloads import SEQ


@dataclass
class RateResult:
    rate: float
    duration_s: float
    sent: int
    ok: int
    errors: int
    latencies_ms: list[float] = field(repr=False, default_factory=list)

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> dict[str, float]:
        return {
            "rate": self.rate,
            "achieved_per_s": round(self.ok / self.duration_s, 1) if self.duration_s else 0.0,
            "p50_ms": round(self.percentile(50), 2),
            "p90_ms": round(self.percentile(90), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
            "errors": self.errors,
        }


def _request(host: str, path: str, body: bytes, authorization: str) -> tuple[bytes, bytes]:
    """The request's head (without Content-Length's value) and the body template."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: {authorization}\r\nContent-Length: "
    ).encode()
    return head, body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _run(
    url: str,
    body: bytes,
    authorization: str,
    rate: float,
    duration_s: float,
    connections: int,
    tag: str,
    on_ok: Callable[[int, float], None] | None,
) -> RateResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head, template = _request(f"{host}:{port}", parts.path, body, authorization)
    pieces = template.split(SEQ.encode())
    total = int(rate * duration_s)
    result = RateResult(rate=rate, duration_s=duration_s, sent=0, ok=0, errors=0)
    next_index = 0
    t0 = time.perf_counter() + 0.2

    async def connection() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while next_index < total:
                i = next_index
                next_index += 1
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                payload = f"{tag}x{i}".encode().join(pieces)
                writer.write(head + str(len(payload)).encode() + b"\r\n\r\n" + payload)
                result.sent += 1
                try:
                    status = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                done = time.perf_counter()
                if 200 <= status < 300:
                    result.ok += 1
                    result.latencies_ms.append((done - due) * 1000)
                    if on_ok is not None:
                        on_ok(i, time.time())
                else:
                    result.errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    # from the first request's due time: the 0.2 s the connections take to open is not the rate's
    result.duration_s = time.perf_counter() - t0
    return result


def run_rate(
    url: str,
    body: bytes,
    authorization: str,
    *,
    rate: float,
    duration_s: float,
    connections: int = 32,
    tag: str = "r",
    on_ok: Callable[[int, float], None] | None = None,
) -> RateResult:
    """Send ``rate`` requests a second for ``duration_s`` seconds; latencies from each request's due time."""
    import uvloop  # the gateway's own event loop (a dependency)

    return uvloop.run(_run(url, body, authorization, rate, duration_s, connections, tag, on_ok))
