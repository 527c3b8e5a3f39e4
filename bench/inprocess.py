"""The accept path in process: ``POST /v1/track`` through the gateway's ASGI app, no HTTP server, no wrk.

``python -m bench.inprocess --redis redis://127.0.0.1:6379/11`` creates a database next to
``--postgres`` with one Segment source, builds the app with ``create_app`` (its lifespan run as uvicorn
runs it: a real Redis client, the real publisher, group commit, the durable ack), then calls it with a
prepared scope, ``receive`` and ``send`` from ``--concurrency`` tasks, each sending the next request once
its answer is complete (as wrk's connections do), under uvloop. It prints the CPU µs per request of each
round (the process's CPU time ÷ requests: what other processes on a shared machine do moves it less
than wall time) and the best, and checks that every request was answered 200. ``--batch N`` posts
``/v1/batch`` bodies of N events instead (``bench.instructions`` counts both under callgrind).

It uses only ``create_app`` and the settings, so the same file measures an older commit: run it with
that tree first on ``PYTHONPATH`` (``bench/README.md``, "Comparing two commits"), alternating old and new.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import redis
import uvloop

from bench import payloads
from bench.run import Database
from trackgate.gateway.app import create_app
from trackgate.schemas.jobs import PERSIST_QUEUE
from trackgate.schemas.settings import ServerSettings, tune_gc


def _receiver(message: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def receive() -> dict[str, Any]:
        return message

    return receive


async def _lifespan(app: Any) -> tuple[asyncio.Task, asyncio.Queue]:
    inbox: asyncio.Queue = asyncio.Queue()
    started = asyncio.get_running_loop().create_future()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: dict) -> None:
        if message["type"] == "lifespan.startup.complete" and not started.done():
            started.set_result(None)
        elif message["type"].endswith("failed"):
            raise RuntimeError(message)

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send))
    await started
    return task, inbox


async def measure(args: argparse.Namespace, db: Database) -> list[float]:
    settings = ServerSettings(
        database_url=db.url,
        redis_url=args.redis,
        log_level="WARNING",
        redis_timeout_seconds=args.redis_timeout,
    )
    app = create_app(settings)
    tune_gc()
    task, inbox = await _lifespan(app)
    authorization = "Basic " + base64.b64encode(f"{db.write_key}:".encode()).decode()
    path = "/v1/batch" if args.batch else "/v1/track"
    template = (payloads.batch_body(args.batch) if args.batch else payloads.track_body()).decode()
    statuses: dict[int, int] = {}
    counter = [0]

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    def request(tid: int) -> Awaitable[None]:
        counter[0] += 1
        body = template.replace(payloads.SEQ, f"p{tid}x{counter[0]}").encode()
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "client": ("127.0.0.1", 40000 + tid % 20000), "server": ("127.0.0.1", 8000),
            "headers": [
                (b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                (b"authorization", authorization.encode()), (b"content-length", str(len(body)).encode()),
            ],
        }  # fmt: skip
        return app(scope, _receiver({"type": "http.request", "body": body, "more_body": False}), send)

    async def connection(tid: int, n: int) -> None:
        for _ in range(n):
            await request(tid)

    async def timed(tid: int, due: float, latencies: list[float]) -> None:
        await request(tid)
        latencies.append(time.perf_counter() - due)

    async def constant_rate(n: int) -> list[float]:
        """``n`` requests at ``args.rate`` a second; each one's latency from when it was due."""
        latencies: list[float] = []
        tasks = []
        started = time.perf_counter()
        for i in range(n):
            due = started + i / args.rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(timed(i, due, latencies)))
        await asyncio.gather(*tasks)
        return sorted(latencies)

    per_round = args.requests // args.concurrency
    results = []
    with redis.Redis.from_url(args.redis) as r:
        for i in range(args.rounds + 1):  # the first round warms up
            r.delete(f"rq:queue:{PERSIST_QUEUE}")
            gc.collect()
            if args.rate:
                latencies = await constant_rate(args.requests)
                p50, p99 = (latencies[int(len(latencies) * q)] * 1e3 for q in (0.5, 0.99))
                jobs = r.llen(f"rq:queue:{PERSIST_QUEUE}")
                if i:
                    print(
                        f"  at {args.rate:g}/s: p50 {p50:.2f} ms  p99 {p99:.2f} ms"
                        f"  ({args.requests / max(jobs, 1):.1f} requests a job)",
                        flush=True,
                    )
                results.append(p99)
                continue
            started = time.process_time()
            await asyncio.gather(*(connection(t, per_round) for t in range(args.concurrency)))
            results.append((time.process_time() - started) / (per_round * args.concurrency) * 1e6)
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    if set(statuses) != {200}:
        raise SystemExit(f"answers other than 200: {statuses}")
    return results[1:]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--requests", type=int, default=20_000, help="per round")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--batch", type=int, default=0, help="POST /v1/batch with this many events a request (0: /v1/track)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--rate", type=float, default=0, help="requests/s: latency at a constant rate instead (p50/p99 ms)"
    )
    parser.add_argument(
        "--redis-timeout",
        type=float,
        default=2.0,
        help="TRACKGATE_REDIS_TIMEOUT_SECONDS: raise it under valgrind, whose slow flushes would be 503s",
    )
    args = parser.parse_args()
    if redis.Redis.from_url(args.redis).connection_pool.connection_kwargs.get("db", 0) == 0:
        raise SystemExit("refusing Redis database 0 (the bench flushes its queue)")
    db = Database(args.postgres)
    try:
        rounds = uvloop.run(measure(args, db))
    finally:
        db.drop()
    what = "p99 ms" if args.rate else "CPU µs/request"
    print(f"{what} per round: " + " ".join(f"{r:.1f}" for r in rounds) + f"  best {min(rounds):.1f}")


if __name__ == "__main__":
    main()
