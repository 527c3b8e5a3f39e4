"""``trackgate reports aggregate``: a day or a range rebuilt now, one line per day; bad dates and an
unknown source are one-line errors."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from tests.helpers import make_event
from trackgate.schemas.event import Context, Page
from trackgate.sources import add_source
from trackgate.workers import store


def test_a_range_is_aggregated_day_by_day(cli, settings, db):
    source, _ = add_source(settings.database_url, "segment", "web", "wk-cli")
    page = make_event(
        "p1",
        source_id=source.id,
        received_at=datetime(2026, 3, 17, 10, tzinfo=UTC),
        type="page",
        name=None,
        context=Context(ip="203.0.113.9", page=Page(path="/")),
        enrichment={"visitor_id": "v"},
    )
    store.store_events(db, "b1", [page])
    result = cli(
        "reports", "aggregate", "--from", "2026-03-16", "--to", "2026-03-18", "--source", source.id, ok=True
    )
    assert result.output.splitlines() == [
        "aggregated 2026-03-16: 1 source",
        "aggregated 2026-03-17: 1 source",
        "aggregated 2026-03-18: 1 source",
    ]
    days = db.execute("SELECT day, dirty FROM report_days ORDER BY day").fetchall()
    assert days == [(date(2026, 3, 16), False), (date(2026, 3, 17), False), (date(2026, 3, 18), False)]
    total = db.execute(
        "SELECT day, pageviews, visits FROM report_rows WHERE dim = 'total' AND NOT bots"
    ).fetchall()
    assert total == [(date(2026, 3, 17), 1, 1)]
    assert (
        cli("reports", "aggregate", "--date", "2026-03-17", ok=True).output
        == "aggregated 2026-03-17: 1 source\n"
    )


def test_bad_input_is_one_line(cli, settings, db):
    for args, says in [
        (("--date", "17-03-2026"), "is not a date"),
        (("--from", "2026-03-18", "--to", "2026-03-17"), "--from is after --to"),
        (("--date", "2026-03-17", "--from", "2026-03-16"), "not both"),
        (("--source", "src_nope"), "no source 'src_nope'"),
        # far dates: one line, never an OverflowError's traceback
        (("--date", "9999-12-31"), "--date"),
        (("--date", "0001-01-01"), "2000-01-01"),
        (("--from", "0001-01-01", "--to", "0001-01-02"), "--from"),
        (("--from", "2026-03-01", "--to", "9999-12-31"), "--to"),
    ]:
        result = cli("reports", "aggregate", *args)
        assert result.exit_code != 0 and says in result.output, (args, result.output)
        assert (
            len(
                [
                    line
                    for line in result.output.splitlines()
                    if line.strip() and "Usage" not in line and "Try" not in line
                ]
            )
            == 1
        )


def test_the_source_is_its_id_its_name_or_its_website_id(cli, settings, db):
    source, _ = add_source(settings.database_url, "segment", "shop-web", "wk-cli-ref")
    website_id = db.execute("SELECT website_id::text FROM sources WHERE id = %s", (source.id,)).fetchone()[0]
    for ref in (source.id, "shop-web", website_id, website_id.upper()):
        result = cli("reports", "aggregate", "--date", "2026-03-17", "--source", ref, ok=True)
        assert result.output == "aggregated 2026-03-17: 1 source\n", ref
    add_source(settings.database_url, "tinytrail", "shop-web", str(uuid.uuid4()), {"domain": "x.example"})
    result = cli("reports", "aggregate", "--date", "2026-03-17", "--source", "shop-web")
    assert result.exit_code != 0 and "2 sources are named 'shop-web'" in result.output
