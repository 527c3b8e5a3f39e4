"""What a running ``trackgate up`` keeps in its data directory for the other commands to find.

- ``up.json`` (0600): the URLs of its PostgreSQL, Redis and gateway, and its pid. Written once everything
  runs, removed when ``up`` stops. A command run with a ``TRACKGATE_*_URL`` unset takes the URL from it
  (``trackgate.cli.config``), but only while that ``up`` lives: a file left by a killed one is ignored.
- ``secret-key`` (0600): the Fernet key ``up`` generates on its first start when ``TRACKGATE_SECRET_KEY``
  is unset, so that destination credentials can be stored at once; every command of that data
  directory uses it while the variable is unset.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgspec
import psutil

STATE_FILE = "up.json"
SECRET_KEY_FILE = "secret-key"


class UpState(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    started: float
    """The process's start time (``psutil``), so a reused pid is not taken for ``up``."""
    database_url: str
    redis_url: str
    gateway_url: str


def _write_private(path: Path, content: bytes) -> None:
    """Write ``content`` readable by its owner only, atomically (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    os.replace(temporary, path)


def write_state(data_dir: str | os.PathLike[str], state: UpState) -> None:
    _write_private(Path(data_dir) / STATE_FILE, msgspec.json.format(msgspec.json.encode(state)))


def this_process() -> tuple[int, float]:
    """(pid, start time) of the calling process, as :class:`UpState` records them."""
    return os.getpid(), psutil.Process().create_time()


def read_state(data_dir: str | os.PathLike[str]) -> UpState | None:
    """The state of the ``up`` running on ``data_dir``, or None (no file, unreadable, or its ``up`` is
    gone)."""
    try:
        state = msgspec.json.decode((Path(data_dir) / STATE_FILE).read_bytes(), type=UpState)
    except (OSError, msgspec.ValidationError, msgspec.DecodeError):
        return None
    try:
        process = psutil.Process(state.pid)
        alive = process.status() != psutil.STATUS_ZOMBIE and abs(process.create_time() - state.started) < 1
    except psutil.Error:
        alive = False
    return state if alive else None


def remove_state(data_dir: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        (Path(data_dir) / STATE_FILE).unlink()


def read_secret_key(data_dir: str | os.PathLike[str]) -> str | None:
    """The key ``up`` generated for ``data_dir``, if it did."""
    try:
        return (Path(data_dir) / SECRET_KEY_FILE).read_text().strip() or None
    except OSError:
        return None


def ensure_secret_key(data_dir: str | os.PathLike[str]) -> tuple[str, bool]:
    """The data directory's secret key, generated (a Fernet key, file mode 0600) if there is none yet;
    and whether it was generated now."""
    from cryptography.fernet import Fernet

    existing = read_secret_key(data_dir)
    if existing:
        return existing, False
    key = Fernet.generate_key().decode()
    _write_private(Path(data_dir) / SECRET_KEY_FILE, key.encode() + b"\n")
    return key, True


def write_secret_key(data_dir: str | os.PathLike[str], key: str) -> None:
    """Replace the data directory's secret key (``trackgate secret-key rotate``)."""
    _write_private(Path(data_dir) / SECRET_KEY_FILE, key.encode() + b"\n")
