"""The nine reports, in TinyTrail's shapes (field names in the document's case), from the rows
``data.py`` reads. Each returns a :class:`Report`: the JSON ``data`` and the CSV's columns and rows.

Numbers: rates are percentages rounded to 2 decimals; an average session duration is whole seconds;
``change_pct`` is ``(value - previous) / previous * 100`` rounded to 2 decimals (null when the previous
value is 0); a funnel step's ``conversion_rate`` is its sessions over the previous step's, 2 decimals.
Lists are sorted by their count (descending), then by name, and paginated where the document says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from trackgate.gateway.errors import InvalidPayload
from trackgate.gateway.reports.data import Counts, Period, Table
from trackgate.gateway.reports.params import Query
from trackgate.schemas.aggregates import UTM_SEPARATOR

METRICS = (
    "visits",
    "pageviews",
    "unique_pageviews",
    "bounce_rate",
    "avg_session_duration",
    "landing_page_entries",
    "exit_page_exits",
)
GROUP_BY = ("channel", "domain", "utm")


@dataclass(frozen=True, slots=True)
class Report:
    data: dict[str, Any]
    columns: tuple[str, ...] = ()
    csv_rows: Sequence[Sequence[Any]] = ()


def period_of(span: Period) -> dict[str, str]:
    return {"start": span.start.isoformat(), "end": span.end.isoformat()}


def _rate(part: float, whole: float) -> float:
    return round(part / whole * 100, 2) if whole else 0.0


def _avg_seconds(total: float, n: int) -> int:
    return round(total / n) if n else 0


def _ranked(items: dict[str, Counts], value: Callable[[Counts], float]) -> list[tuple[str, Counts]]:
    kept = [(k, c) for k, c in items.items() if value(c) > 0]
    return sorted(kept, key=lambda kc: (-value(kc[1]), kc[0]))


def _page(items: list[Any], query: Query) -> list[Any]:
    return items[query.offset : query.offset + query.per_page]


def _paginated(span: Period, query: Query, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"period": period_of(span), "page": query.page, "per_page": query.per_page, "rows": rows}


# --- summary ----------------------------------------------------------------------------------------


def summary_values(total: Counts) -> dict[str, float]:
    return {
        "visits": total.visits,
        "unique_visitors": total.visitors,
        "pageviews": total.pageviews,
        "bounce_rate": _rate(total.bounces, total.visits),
        "avg_session_duration_sec": _avg_seconds(total.duration, total.visits),
    }


def _change(value: float, previous: float) -> float | None:
    return round((value - previous) / previous * 100, 2) if previous else None


def summary(span: Period, table: Table, compared: tuple[Period, Table] | None) -> Report:
    values = summary_values(table.dim("total").get("", Counts()))
    metrics: dict[str, dict[str, Any]] = {name: {"value": v} for name, v in values.items()}
    data: dict[str, Any] = {"period": period_of(span)}
    if compared is not None:
        before, previous_table = compared
        previous = summary_values(previous_table.dim("total").get("", Counts()))
        data["comparison"] = f"{before.start.isoformat()} to {before.end.isoformat()}"
        for name, metric in metrics.items():
            metric["previous"] = previous[name]
            metric["change_pct"] = _change(metric["value"], previous[name])
    data["metrics"] = metrics
    rows = [
        (name, m["value"], m.get("previous", ""), _blank(m.get("change_pct"))) for name, m in metrics.items()
    ]
    return Report(data, ("metric", "value", "previous", "change_pct"), rows)


def _blank(value: Any) -> Any:
    return "" if value is None else value


# --- pages, sources, devices, flow, custom events ---------------------------------------------------


def pages(span: Period, query: Query, table: Table) -> Report:
    ranked = _page(_ranked(table.dim("path"), lambda c: c.pageviews), query)
    rows = [
        {
            "path": path,
            "contentGroup": c.label,
            "pageviews": c.pageviews,
            "uniquePageviews": c.unique_pageviews,
        }
        for path, c in ranked
    ]
    csv_rows = [(r["path"], _blank(r["contentGroup"]), r["pageviews"], r["uniquePageviews"]) for r in rows]
    return Report(
        _paginated(span, query, rows), ("path", "contentGroup", "pageviews", "uniquePageviews"), csv_rows
    )


SOURCE_DIMS = {"channel": "channel", "domain": "referrer", "utm": "utm"}


def group_by(params: dict[str, str]) -> str:
    value = params.get("group_by") or "channel"
    if value not in GROUP_BY:
        raise InvalidPayload("group_by must be one of channel, domain, utm", path="group_by")
    return value


def sources(span: Period, query: Query, table: Table, by: str) -> Report:
    ranked = _page(_ranked(table.dim(SOURCE_DIMS[by]), lambda c: c.visits), query)
    rows: list[dict[str, Any]]
    if by == "channel":
        rows = [{"channel": key, "visits": c.visits} for key, c in ranked]
        columns: tuple[str, ...] = ("channel", "visits")
    elif by == "domain":
        rows = [{"referrer": key, "visits": c.visits} for key, c in ranked]
        columns = ("referrer", "visits")
    else:
        rows = []
        for key, c in ranked:
            source, medium, campaign = (key.split(UTM_SEPARATOR) + ["", "", ""])[:3]
            rows.append(
                {
                    "utmSource": source or None,
                    "utmMedium": medium or None,
                    "utmCampaign": campaign or None,
                    "visits": c.visits,
                }
            )
        columns = ("utmSource", "utmMedium", "utmCampaign", "visits")
    csv_rows = [tuple(_blank(r[c]) for c in columns) for r in rows]
    return Report(_paginated(span, query, rows), columns, csv_rows)


DEVICE_LISTS = (
    ("device_types", "device", "deviceType"),
    ("browsers", "browser", "browserFamily"),
    ("os_families", "os", "osFamily"),
    ("screen_resolutions", "screen", "bucket"),
)


def devices(span: Period, table: Table) -> Report:
    data: dict[str, Any] = {"period": period_of(span)}
    for name, dim, label in DEVICE_LISTS:
        data[name] = [
            {label: key, "visits": c.visits} for key, c in _ranked(table.dim(dim), lambda c: c.visits)
        ]
    csv_rows = [(r["deviceType"], r["visits"]) for r in data["device_types"]]
    return Report(data, ("deviceType", "visits"), csv_rows)


def flow(span: Period, query: Query, table: Table) -> Report:
    paths = table.dim("path")
    landing = [
        {"path": p, "entries": c.entries} for p, c in _page(_ranked(paths, lambda c: c.entries), query)
    ]
    exits = [{"path": p, "exits": c.exits} for p, c in _page(_ranked(paths, lambda c: c.exits), query)]
    data = {"period": period_of(span), "landing_pages": landing, "exit_pages": exits}
    return Report(data, ("path", "entries"), [(r["path"], r["entries"]) for r in landing])


def custom_events(span: Period, query: Query, table: Table) -> Report:
    ranked = _page(_ranked(table.dim("event"), lambda c: c.events), query)
    rows = [{"name": name, "count": c.events} for name, c in ranked]
    return Report(_paginated(span, query, rows), ("name", "count"), [(r["name"], r["count"]) for r in rows])


# --- funnel, realtime, timeseries ---------------------------------------------------------------------

MIN_STEPS = 2
MAX_STEPS = 20


def funnel_steps(steps: list[str]) -> list[str]:
    steps = [s for s in steps if s]
    if len(steps) < MIN_STEPS:
        raise InvalidPayload("steps[] needs at least 2 steps (paths or event types)", path="steps[]")
    if len(steps) > MAX_STEPS:
        raise InvalidPayload(f"steps[] takes at most {MAX_STEPS} steps", path="steps[]")
    return steps


def funnel(span: Period, steps: list[str], counts: list[int]) -> Report:
    out = []
    for i, (step, n) in enumerate(zip(steps, counts, strict=True)):
        rate: float = 100 if i == 0 else _rate(n, counts[i - 1])
        out.append({"step": step, "sessions": n, "conversion_rate": rate})
    rows = [(r["step"], r["sessions"], r["conversion_rate"]) for r in out]
    return Report({"period": period_of(span), "funnel": out}, ("step", "sessions", "conversion_rate"), rows)


def realtime(data: dict[str, Any]) -> Report:
    rows = [(p["path"], p["visitors"]) for p in data["top_pages"]]
    return Report(data, ("path", "visitors"), rows)


def metric(params: dict[str, str]) -> str:
    value = params.get("metric") or "pageviews"
    if value not in METRICS:
        raise InvalidPayload(f"metric must be one of {', '.join(METRICS)}", path="metric")
    return value


def _value(name: str, c: Counts, site: bool) -> float:
    if name == "visits":
        return c.visits
    if name == "pageviews":
        return c.pageviews
    if name == "unique_pageviews":
        return c.unique_pageviews
    if name == "bounce_rate":
        return _rate(c.bounces, c.visits)
    if name == "avg_session_duration":
        return _avg_seconds(c.duration, c.visits)
    if name == "landing_page_entries":
        return c.entries if not site else c.visits
    return c.exits if not site else c.visits


def timeseries(span: Period, name: str, path: str | None, table: Table) -> Report:
    dim, key = ("path", path) if path else ("total", "")
    by_day: dict[date, Counts] = {k[2]: c for k, c in table.rows.items() if k[0] == dim and k[1] == key}
    series = [
        {"date": day.isoformat(), "value": _value(name, by_day.get(day, Counts()), site=path is None)}
        for day in span.days()
    ]
    data = {"period": period_of(span), "metric": name, "path": path or "*", "series": series}
    return Report(data, ("date", "value"), [(p["date"], p["value"]) for p in series])
