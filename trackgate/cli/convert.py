"""``trackgate convert``: payloads between versions of one dialect, stdin to stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from trackgate.adapters import commandersact
from trackgate.adapters.base import AdapterError

CONVERSIONS = (("commandersact.v1", "commandersact.v2"),)
"""The conversions that exist, (from, to): ``--help`` lists these and no other."""


@click.command(epilog="Conversions: " + ", ".join(f"{a} -> {b}" for a, b in CONVERSIONS) + ".")
@click.option("--from", "source", type=click.Choice(sorted({a for a, _ in CONVERSIONS})), required=True)
@click.option("--to", "target", type=click.Choice(sorted({b for _, b in CONVERSIONS})), required=True)
def convert(source: str, target: str) -> None:
    """Convert payloads on stdin (one JSON document, or NDJSON) between dialect versions, to stdout.

    A document may be one event or {"batch": [...]}. An item that cannot be converted is reported on
    stderr (with its line) and the exit status is 1; the others are still written."""
    if (source, target) not in CONVERSIONS:
        raise click.UsageError(f"cannot convert {source} to {target}")
    from_version, to_version = source.partition(".")[2], target.partition(".")[2]
    text = sys.stdin.read()
    documents: list[tuple[int, Any]]
    try:
        documents = [(0, json.loads(text))]
    except json.JSONDecodeError:
        documents = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                documents.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                click.echo(f"line {number}: not JSON: {exc}", err=True)
                documents.append((number, None))
    failed = False
    for number, document in documents:
        if document is None:
            failed = True
            continue
        try:
            converted = commandersact.convert(document, from_version, to_version)
        except (AdapterError, ValueError) as exc:
            where = f"line {number}: " if number else ""
            click.echo(f"{where}{getattr(exc, 'message', exc)}", err=True)
            failed = True
            continue
        click.echo(json.dumps(converted, ensure_ascii=False, separators=(",", ":")))
    if failed:
        sys.exit(1)
