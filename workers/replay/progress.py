"""What the replays share: progress on a terminal or in plain lines, checkpoints that make a run
resumable (``replay_checkpoints``), and a Redis connection for the jobs they queue."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import psycopg
import redis
from psycopg.types.json import Jsonb

from trackgate.schemas.settings import Settings

# --- progress ------------------------------------------------------------------------------------


class Progress:
    """``click.progressbar`` on a terminal (counts and rate beside the bar); plain lines elsewhere."""

    def __init__(self, label: str, total: int | None, counts: dict[str, int], out=None, every: float = 5.0):
        self.out = out or sys.stderr
        self.counts = counts
        self.label = label
        self.started = time.monotonic()
        self.every = every
        self.last_line = 0.0
        self.pending = 0
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self.bar: Any = None  # click's ProgressBar, on a terminal
        if self.tty:
            self.bar = click.progressbar(
                length=total,
                label=label,
                file=self.out,
                show_pos=True,
                item_show_func=lambda _: self.summary(),
            )
            self.bar.__enter__()

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        main = next(iter(self.counts.values()), 0)
        parts = [f"{k}={v}" for k, v in self.counts.items()]
        return " ".join(parts) + f" ({main / elapsed:,.0f}/s)"

    def update(self, n: int) -> None:
        now = time.monotonic()
        if self.bar is not None:
            # redrawn at most 5 times a second: a redraw per line costs more than the import
            self.pending += n
            if now - self.last_line >= 0.2:
                self.last_line = now
                self.bar.update(self.pending, current_item=True)
                self.pending = 0
            return
        if now - self.last_line >= self.every:
            self.last_line = now
            click.echo(f"{self.label}: {self.summary()}", file=self.out)

    def close(self) -> str:
        if self.bar is not None:
            self.bar.update(self.pending, current_item=True)
            self.bar.__exit__(None, None, None)
        elapsed = time.monotonic() - self.started
        line = f"{self.label}: done in {elapsed:.1f} s, {self.summary()}"
        click.echo(line, file=self.out)
        return line


# --- checkpoints -------------------------------------------------------------------------------


def checkpoint(conn: psycopg.Connection, key: str) -> tuple[int, bool, dict]:
    row = conn.execute(
        "SELECT position, done, counts FROM replay_checkpoints WHERE key = %s", (key,)
    ).fetchone()
    return (row[0], row[1], row[2]) if row else (0, False, {})


def save_checkpoint(conn: psycopg.Connection, key: str, position: int, done: bool, counts: dict) -> None:
    conn.execute(
        "INSERT INTO replay_checkpoints (key, position, done, counts) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (key) DO UPDATE SET position = EXCLUDED.position, done = EXCLUDED.done,"
        " counts = EXCLUDED.counts, updated_at = now()",
        (key, position, done, Jsonb(counts)),
    )
    conn.commit()


def redis_for(settings: Settings) -> redis.Redis:
    if not settings.redis_url:
        raise ValueError("TRACKGATE_REDIS_URL is not set")
    return redis.Redis.from_url(settings.redis_url)
