"""Fixtures for the gateway tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import msgspec
import pytest
from starlette.testclient import TestClient

from tests.helpers import SECRET_KEY
from trackgate import api_keys
from trackgate.gateway.app import create_app


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """The URL of a TCP server that accepts connections and never answers: a hung Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    server.close()


# --- the TinyTrail API (issue 12): a gateway with a secret key and no rate limit, an admin key ----------


@pytest.fixture
def api_settings(settings):
    """The test settings with a secret key (users' keys are stored encrypted) and the API's rate limit
    off (tests about the limit set their own)."""
    return msgspec.structs.replace(settings, secret_key=SECRET_KEY, api_rate_limit=0)


@pytest.fixture
def api(api_settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as client:
        yield client


@pytest.fixture
def admin_headers(api_settings) -> dict[str, str]:
    """``X-API-KEY`` of an admin key made as ``trackgate admin create-key`` makes it (no account)."""
    return {"X-API-KEY": api_keys.create_key(api_settings, api_settings.database_url).key}
