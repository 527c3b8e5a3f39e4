"""Slow and hostile clients against a real gateway process (issue 11 item 8), over real sockets.

Before: a connection that never finished its headers stayed open for ever (200 of 200 slow-loris
connections open after 12 s), a 16 MB header was read whole, a body sent a byte at a time held its
request for as long as the client liked, and connections had no cap.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.faults.edge_support import gateway_process, open_socket, read_response, read_until_closed
from trackgate.sources import add_source

KEY = "wk_edge_limits"
AUTH = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
TRACK = json.dumps({"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m-1"}).encode()


@pytest.fixture(scope="module")
def gateway(database_url, redis_url) -> Iterator[str]:
    from trackgate.schemas.settings import Settings

    settings = Settings(database_url=database_url, redis_url=redis_url)
    add_source(database_url, "segment", "edge-limits", KEY)
    with gateway_process(
        settings,
        http_header_timeout_seconds=1,
        http_body_timeout_seconds=1,
        http_max_header_bytes=16384,
        http_max_connections=300,
    ) as (base, _):
        yield base


def test_a_connection_that_sends_nothing_is_answered_408_and_closed(gateway):
    with open_socket(gateway) as sock:
        data, took = read_until_closed(sock, limit=5)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert took < 2.5


def test_a_header_sent_a_byte_at_a_time_is_cut_off_at_the_deadline(gateway):
    with open_socket(gateway) as sock:
        sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 5:
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            sock.settimeout(0.01)
            try:
                reply = sock.recv(65536)
            except TimeoutError:
                continue
            assert reply.startswith(b"HTTP/1.1 408 ") or reply == b"", reply
            closed = True
            break
        assert closed and time.monotonic() - started < 2.5


def test_200_slow_loris_connections_are_all_closed_within_the_timeout(gateway):
    socks = [open_socket(gateway) for _ in range(200)]
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        time.sleep(2.5)
        still_open = 0
        for sock in socks:
            data, _ = read_until_closed(sock, limit=0.5)
            if not data.startswith(b"HTTP/1.1 408 "):
                still_open += 1
        assert still_open == 0
    finally:
        for sock in socks:
            sock.close()
    assert httpx.get(gateway + "/health").status_code == 200


def test_a_16_mb_header_is_refused_431_without_being_read(gateway):
    sock = open_socket(gateway)
    sent = 0
    try:
        sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nX-Big: ")
        block = b"a" * 65536
        try:
            while sent < 16 * 1024 * 1024:
                sock.sendall(block)
                sent += len(block)
        except OSError:  # the server closed the connection: it stopped reading
            pass
        data, _ = read_until_closed(sock, limit=3)
    finally:
        sock.close()
    assert sent < 16 * 1024 * 1024 or data.startswith(b"HTTP/1.1 431 ")
    assert data == b"" or data.startswith(b"HTTP/1.1 431 "), data[:100]
    # a header under the cap still works
    r = httpx.post(gateway + "/v1/track", content=TRACK, headers={"Authorization": AUTH, "X-Pad": "p" * 8000})
    assert r.status_code == 200, r.text


def test_a_body_that_stalls_is_answered_408_in_the_dialects_shape(gateway):
    with open_socket(gateway) as sock:
        request_head = (
            "POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: {AUTH}\r\nContent-Length: {len(TRACK)}\r\n\r\n"
        )
        sock.sendall(request_head.encode() + TRACK[:10])
        started = time.monotonic()
        data, _ = read_until_closed(sock, limit=5)
        took = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 "), data
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {
        "code": "request_timeout",
        "message": "the request body did not arrive within 1 s",
    }
    assert took < 2.5


def test_kept_alive_connections_still_work_and_get_the_header_deadline_again(gateway):
    with open_socket(gateway) as sock:
        for _ in range(3):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.6)  # under the keep-alive timeout; over half the header deadline
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # a next request that never ends its head
        data, took = read_until_closed(sock, limit=5)
    assert data.startswith(b"HTTP/1.1 408 ") and took < 2.5


def refused_count(base: str, status: int, reason: str) -> float:
    """``trackgate_requests_refused_total`` for a refusal of the server's own (dialect ``http``)."""
    wanted = f'trackgate_requests_refused_total{{dialect="http",reason="{reason}",status="{status}"}}'
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_servers_own_refusals_are_counted_in_metrics(gateway):
    timeouts = refused_count(gateway, 408, "header_timeout")
    with open_socket(gateway) as sock:
        data, _ = read_until_closed(sock, limit=5)
    assert data.startswith(b"HTTP/1.1 408 ")
    too_large = refused_count(gateway, 431, "headers_too_large")
    with open_socket(gateway) as sock:
        with contextlib.suppress(OSError):  # the server may close before it has read it all
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000)
        data, _ = read_until_closed(sock, limit=3)
    assert data == b"" or data.startswith(b"HTTP/1.1 431 "), data[:100]
    assert refused_count(gateway, 408, "header_timeout") >= timeouts + 1
    assert refused_count(gateway, 431, "headers_too_large") >= too_large + 1


def test_over_the_connection_cap_uvicorn_answers_503(database_url, redis_url):
    from trackgate.schemas.settings import Settings

    settings = Settings(database_url=database_url, redis_url=redis_url)
    with gateway_process(settings, http_max_connections=20, http_header_timeout_seconds=30) as (base, _):
        held: list[socket.socket] = []
        try:
            for _ in range(20):
                sock = open_socket(base)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # unfinished: holds its slot
                held.append(sock)
            time.sleep(0.3)
            r = httpx.get(base + "/health")
            assert r.status_code == 503
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        assert httpx.get(base + "/health").status_code == 200
        assert refused_count(base, 503, "concurrency_limit") >= 1
