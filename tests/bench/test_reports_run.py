"""``python -m bench reports`` end to end on a small database: generated, aggregated through the
reports' job, every report answered by a live gateway, the check and the sizes (wrk's phase left out)."""

from __future__ import annotations

import psycopg

from bench import reports, reports_data


def _nonzero_db(url: str) -> str:
    """The bench refuses Redis database 0 (it flushes its database): the embedded server's URL (a unix
    socket, database 0: a server of this test session's own) names database 1 instead."""
    if reports._redis_db(url):
        return url
    if url.startswith("unix://"):
        return url + ("&" if "?" in url else "?") + "db=1"
    return url.rstrip("/").rsplit("/", 1)[0] + "/1" if url.rstrip("/").count("/") > 2 else url + "/1"


def test_a_small_run_goes_end_to_end(servers, redis_url):
    admin_url = servers[0]
    redis_url = _nonzero_db(redis_url)
    args = reports.parse_args(
        ["--events", "3000", "--postgres", admin_url, "--redis", redis_url, "--calls", "2", "--warmups", "1"]
        + ["--processes", "1", "--skip", "accept", "--no-explain"]
    )
    lines: list[str] = []
    try:
        result = reports.run(args, progress=lines.append)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{reports_data.database_name(3000)}" WITH (FORCE)')
    assert result.problems == []
    assert result.aggregation["days"] == 365  # every closed day of the year, once
    assert result.check["ok"] and result.check["counted"] > 1000
    expected = {(c.name, p) for p in reports.GOALS_MS for c in reports.report_calls("-", p)}
    assert {(lat.report, lat.period) for lat in result.latencies} == expected
    for lat in result.latencies:
        assert lat.error is None and lat.p95_ms is not None and len(lat.times_ms) == 2, lat
    sizes = {row["what"]: row["bytes"] for row in result.sizes}
    assert sizes["events (heap + TOAST, all partitions)"] > 0
    assert sizes["report_rows (heap + TOAST)"] > 0
    text = reports.render(result)
    assert "summary compare" in text and "funnel (3 steps)" in text
