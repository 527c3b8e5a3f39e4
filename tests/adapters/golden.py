"""What the golden-fixture runners (``tests/adapters/test_*_golden.py``, ``test_tinytrail.py``) share.

A fixture is one HTTP request (``headers``, ``body`` sent as compact JSON or ``body_text`` verbatim,
``received_at``, ``request_id``, ``source_id``, ``ip``) and what the adapter must make of it; each runner
documents its dialect's own fields and replays the request the way its gateway module does.

``TRACKGATE_REGEN_GOLDEN=1`` makes the runners rewrite their fixtures' outcome fields from what the adapter
does now (``regenerate``); review the diff by hand before committing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from trackgate.schemas.request import RequestMeta

ROOT = Path(__file__).resolve().parent.parent / "golden"
REGEN = os.environ.get("TRACKGATE_REGEN_GOLDEN") == "1"


def fixtures(dialect: str) -> list[Path]:
    """``tests/golden/<dialect>/*.json``, sorted."""
    return sorted((ROOT / dialect).glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def body_bytes(fixture: dict[str, Any]) -> bytes:
    """The request body: ``body_text`` verbatim, else ``body`` as compact JSON (UTF-8, not ASCII-escaped)."""
    if "body_text" in fixture:
        return fixture["body_text"].encode()
    return json.dumps(fixture["body"], ensure_ascii=False, separators=(",", ":")).encode()


def request_meta(
    fixture: dict[str, Any],
    dialect: str,
    headers: Mapping[str, str],
    call: str | None = None,
    /,
    **extra: Any,
) -> RequestMeta:
    """The ``RequestMeta`` the gateway builds for the fixture's request (``call`` defaults to the fixture's);
    ``extra`` is the dialect's own (``headers``, ``query``, ``hints``)."""
    return RequestMeta(
        source_id=fixture["source_id"],
        dialect=dialect,
        call=call if call is not None else fixture["call"],
        received_at=datetime.fromisoformat(fixture["received_at"]),
        request_id=fixture["request_id"],
        ip=fixture.get("ip"),
        user_agent=headers.get("user-agent"),
        **extra,
    )


def regenerate(
    path: Path, fixture: dict[str, Any], result: dict[str, Any], outcome: Iterable[str]
) -> dict[str, Any]:
    """Rewrite the fixture with its ``outcome`` fields replaced by ``result``; returns what was written."""
    fields = set(outcome)
    out = {k: v for k, v in fixture.items() if k not in fields}
    out.update(result)
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return out
