"""A report as CSV: ``text/csv`` with ``Content-Disposition: attachment; filename=...`` and the
document's columns (header row first), written by the standard library's ``csv`` module (quoting,
line endings)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from starlette.responses import Response


def csv_response(
    name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], start: str, end: str
) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}_{start}_{end}.csv"'},
    )
