"""What the reports count, as SQL, written once: the aggregation (``workers/aggregate.py``, and the
admin route) stores these rows per closed day; the reports (``gateway/reports/``) compute the very
same rows from raw events for today and for any day not aggregated (or marked dirty by a late event).

What counts, across dialects (README "TinyTrail reports"):

- a **page view** is a canonical ``page`` (TinyTrail ``page_view``, Segment/Spectacle ``page``,
  Commanders Act ``page_view``), a ``screen`` (Segment's mobile page), or an OpenPanel track named
  ``screen_view``; its path is ``context.page.path``, else the path of ``context.page.url``, else ``/``;
- a **custom event** is every other named ``track`` (TinyTrail's ``custom`` under its
  ``properties.name``, and its ``scroll_*``, ``outbound_link``, ``close_tab`` under their type);
- a **visitor** is the enrichment's ``visitor_id`` (the cookie-less hash, salted per UTC day; like
  every enrichment key the SQL reads, a column of ``events``: ``schemas/enrichment_columns.py``),
  else the user id, else the anonymous id, else the event itself; unique visitors over several days
  are the sum of the daily uniques (the hash changes every day, as with Plausible);
- a **session** (a visit) is a visitor's run of page views and custom events with no gap over 30
  minutes, cut at UTC midnight, with at least one page view; a **bounce** is a visit with one page
  view; its **duration** is its last event's time minus its first's; its channel, referrer, campaign,
  device, browser, OS and screen are those of its first page view; its landing and exit pages its
  first and last page views' paths;
- traffic flagged ``is_excluded`` is never counted; ``is_bot`` traffic is kept in
  rows of its own (``bots = true``), which reports add only when asked (``include_bots=true``).

An event's day is the UTC date of its ``timestamp`` (when it happened, as the dialect gives it).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from trackgate.schemas.channels import channel_sql

SESSION_GAP = "30 minutes"

PAGE_VIEW = (
    "(e.type IN ('page', 'screen')"
    " OR (e.dialect = 'openpanel' AND e.type = 'track' AND e.name = 'screen_view'))"
)
CUSTOM_EVENT = f"(e.type = 'track' AND e.name IS NOT NULL AND NOT {PAGE_VIEW})"
PATH = (
    "coalesce(nullif(e.context->'page'->>'path', ''),"
    " nullif(substring(e.context->'page'->>'url' from '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)'), ''),"
    " '/')"
)
UTM_SEPARATOR = "\x1f"
"""Between the source, medium and campaign of a ``utm`` row's key."""

_EVENTS = f"""
ev AS (
  SELECT e.source_id, e.id, e."timestamp" AS ts, (e."timestamp" AT TIME ZONE 'UTC')::date AS day,
         coalesce(e.visitor_id, 'u:' || e.user_id, 'a:' || e.anonymous_id, 'e:' || e.id::text) AS vid,
         coalesce(e.is_bot, false) AS bots,
         e.content_group AS cg,
         {PAGE_VIEW} AS pv,
         CASE WHEN {PAGE_VIEW} THEN {PATH} END AS path,
         CASE WHEN {PAGE_VIEW} THEN NULL ELSE e.name END AS name,
         {channel_sql("e.channel")} AS channel,
         CASE WHEN coalesce(e.channel, 'Direct') <> 'Direct' THEN e.referrer_domain END AS referrer,
         CASE WHEN coalesce(e.utm_source, e.utm_medium, e.utm_campaign) IS NOT NULL
              THEN concat_ws(chr(31), coalesce(e.utm_source, ''), coalesce(e.utm_medium, ''),
                             coalesce(e.utm_campaign, '')) END AS utm,
         coalesce(e.device_type, 'unknown') AS device,
         coalesce(e.browser, 'unknown') AS browser,
         coalesce(e.os, 'unknown') AS os,
         coalesce(e.screen_bucket, 'unknown') AS screen
  FROM events e
  WHERE e.source_id = %(source)s AND e."timestamp" >= %(start)s AND e."timestamp" < %(end)s
    AND NOT coalesce(e.is_excluded, false)
    AND ({PAGE_VIEW} OR {CUSTOM_EVENT})
    AND (%(with_bots)s OR NOT coalesce(e.is_bot, false))
),
scoped AS (
  SELECT '' AS scope, ev.* FROM ev WHERE coalesce(%(only)s::text, '') = ''
  UNION ALL
  SELECT ev.cg AS scope, ev.* FROM ev WHERE ev.cg IS NOT NULL AND (%(only)s::text IS NULL OR ev.cg = %(only)s)
),
marked AS (
  SELECT s.*, CASE WHEN s.ts - lag(s.ts) OVER w <= interval '{SESSION_GAP}' THEN 0 ELSE 1 END AS starts
  FROM scoped s
  WINDOW w AS (PARTITION BY s.day, s.scope, s.bots, s.vid ORDER BY s.ts, s.id)
),
numbered AS (
  SELECT m.*, sum(m.starts) OVER (PARTITION BY m.day, m.scope, m.bots, m.vid ORDER BY m.ts, m.id) AS sn
  FROM marked m
)"""

_FIRST_COLUMNS = ("path", "channel", "referrer", "utm", "device", "browser", "os", "screen")
_FIRST = "(array_agg(n.{0} ORDER BY n.ts, n.id) FILTER (WHERE n.pv))[1] AS {0}"

ROWS_SQL = f"""
WITH {_EVENTS},
visits AS (
  SELECT n.day, n.scope, n.bots, n.vid, n.sn,
         count(*) FILTER (WHERE n.pv) AS pvs,
         count(DISTINCT n.path) FILTER (WHERE n.pv) AS upvs,
         extract(epoch FROM max(n.ts) - min(n.ts))::double precision AS duration,
         (array_agg(n.path ORDER BY n.ts DESC, n.id DESC) FILTER (WHERE n.pv))[1] AS exit,
         {", ".join(_FIRST.format(c) for c in _FIRST_COLUMNS)}
  FROM numbered n
  GROUP BY n.day, n.scope, n.bots, n.vid, n.sn
  HAVING count(*) FILTER (WHERE n.pv) > 0
),
parts AS (
  SELECT v.day, v.scope, v.bots, 'total' AS dim, '' AS key, NULL::text AS label,
         sum(v.pvs) AS pageviews, sum(v.upvs) AS unique_pageviews, count(*) AS visits,
         count(DISTINCT v.vid) AS visitors, count(*) FILTER (WHERE v.pvs = 1) AS bounces,
         sum(v.duration) AS duration, 0 AS entries, 0 AS exits, 0 AS events
  FROM visits v GROUP BY v.day, v.scope, v.bots
  UNION ALL
  SELECT v.day, v.scope, v.bots, d.dim, d.key, NULL, sum(v.pvs), 0, count(*), count(DISTINCT v.vid),
         count(*) FILTER (WHERE v.pvs = 1), sum(v.duration), 0, 0, 0
  FROM visits v
  CROSS JOIN LATERAL (VALUES ('channel', v.channel), ('referrer', v.referrer), ('utm', v.utm),
                             ('device', v.device), ('browser', v.browser), ('os', v.os),
                             ('screen', v.screen)) AS d(dim, key)
  WHERE d.key IS NOT NULL
  GROUP BY v.day, v.scope, v.bots, d.dim, d.key
  UNION ALL
  SELECT n.day, n.scope, n.bots, 'path', n.path, max(n.cg), count(*), count(DISTINCT (n.vid, n.sn)), 0,
         count(DISTINCT n.vid), 0, 0, 0, 0, 0
  FROM numbered n WHERE n.pv
  GROUP BY n.day, n.scope, n.bots, n.path
  UNION ALL
  SELECT v.day, v.scope, v.bots, 'path', v.path, NULL, 0, 0, count(*), 0,
         count(*) FILTER (WHERE v.pvs = 1), sum(v.duration), count(*), 0, 0
  FROM visits v GROUP BY v.day, v.scope, v.bots, v.path
  UNION ALL
  SELECT v.day, v.scope, v.bots, 'path', v.exit, NULL, 0, 0, 0, 0, 0, 0, 0, count(*), 0
  FROM visits v GROUP BY v.day, v.scope, v.bots, v.exit
  UNION ALL
  SELECT n.day, n.scope, n.bots, 'event', n.name, NULL, 0, 0, 0, count(DISTINCT n.vid), 0, 0, 0, 0, count(*)
  FROM numbered n WHERE NOT n.pv
  GROUP BY n.day, n.scope, n.bots, n.name
)
SELECT %(source)s::text AS source_id, p.dim, p.scope, p.day, p.bots, p.key, max(p.label) AS label,
       sum(p.pageviews)::int AS pageviews, sum(p.unique_pageviews)::int AS unique_pageviews,
       sum(p.visits)::int AS visits, sum(p.visitors)::int AS visitors, sum(p.bounces)::int AS bounces,
       coalesce(sum(p.duration), 0)::double precision AS duration, sum(p.entries)::int AS entries,
       sum(p.exits)::int AS exits, sum(p.events)::int AS events
FROM parts p
GROUP BY p.dim, p.scope, p.day, p.bots, p.key
"""
"""Every ``report_rows`` row of one source's events in [start, end) (parameters ``source``, ``start``,
``end``; ``only``: NULL for every scope, else that scope's rows alone; ``with_bots``: false leaves the
bot rows out). In a ``path`` row: ``pageviews``, ``unique_pageviews`` (visits that viewed the page),
``visitors`` (who viewed it), ``label`` (its content group) count its page views; ``visits``,
``bounces``, ``duration`` and ``entries`` the visits that landed on it; ``exits`` the visits that left
from it. In an ``event`` row: ``events`` and ``visitors``. In the others: the visits (and their page
views, bounces, duration, visitors) by their first page view's value; the ``total`` row's
``unique_pageviews`` is the sum over visits of the distinct pages each viewed."""

COUNTS = (
    "pageviews",
    "unique_pageviews",
    "visits",
    "visitors",
    "bounces",
    "duration",
    "entries",
    "exits",
    "events",
)
"""The numbers of a ``report_rows`` row, in its column order (the reports read them in this order)."""
ROW_COLUMNS = ("source_id", "dim", "scope", "day", "bots", "key", "label", *COUNTS)

SEQUENCES_SQL = f"""
WITH {_EVENTS},
tokens AS (
  SELECT n.day, n.scope, n.bots, n.vid, n.sn, n.ts, n.id,
         CASE WHEN n.pv THEN n.path ELSE n.name END AS token,
         lag(CASE WHEN n.pv THEN n.path ELSE n.name END)
           OVER (PARTITION BY n.day, n.scope, n.bots, n.vid, n.sn ORDER BY n.ts, n.id) AS previous
  FROM numbered n
),
sessions AS (
  SELECT t.day, t.scope, t.bots,
         array_agg(t.token ORDER BY t.ts, t.id) FILTER (WHERE t.previous IS DISTINCT FROM t.token) AS steps
  FROM tokens t GROUP BY t.day, t.scope, t.bots, t.vid, t.sn
)
SELECT %(source)s::text AS source_id, s.scope, s.day, s.bots, s.steps, count(*)::int AS sessions
FROM sessions s GROUP BY s.scope, s.day, s.bots, s.steps
"""
"""Every sequence row of one source's events in [start, end): each session's steps (page
paths and custom event names in order, a step repeated in a row kept once), identical ones counted."""

SEQUENCE_COLUMNS = ("source_id", "scope", "day", "bots", "steps", "sessions")

INTERN_SQL = f"""
WITH {_EVENTS}
INSERT INTO report_steps (source_id, step)
SELECT DISTINCT %(source)s::text, t.token
FROM (SELECT CASE WHEN ev.pv THEN ev.path ELSE ev.name END AS token FROM ev) t
WHERE NOT EXISTS (SELECT 1 FROM report_steps d WHERE d.source_id = %(source)s AND d.step = t.token)
ORDER BY 2
ON CONFLICT (source_id, step) DO NOTHING
"""
"""Number every step of the source's events in [start, end) that ``report_steps`` does not hold yet
(before :data:`STEP_SEQUENCES_SQL`, in its own statement, so that it sees what a concurrent rebuild of
another day numbered; new steps only, so the identity is not spent on known ones; in order, so two
rebuilds never wait on each other crosswise)."""

STEP_SEQUENCES_SQL = f"""
INSERT INTO report_step_sequences ({", ".join(SEQUENCE_COLUMNS)})
SELECT s.source_id, s.scope, s.day, s.bots,
       ARRAY(SELECT d.id FROM unnest(s.steps) WITH ORDINALITY AS t(step, n)
             JOIN report_steps d ON d.source_id = s.source_id AND d.step = t.step ORDER BY t.n),
       s.sessions
FROM ({SEQUENCES_SQL}) s
"""
""":data:`SEQUENCES_SQL`'s rows stored with their steps as ``report_steps`` ids (after :data:`INTERN_SQL`)."""

MARK_SQL = """
INSERT INTO report_days (source_id, day, dirty, aggregated_at)
SELECT s.id, %(day)s, %(day)s >= (now() AT TIME ZONE 'UTC')::date, now()
FROM sources s WHERE s.id = %(source)s
ON CONFLICT (source_id, day) DO UPDATE SET dirty = excluded.dirty, aggregated_at = excluded.aggregated_at
"""
"""First in a rebuild's transaction: it takes the day's row lock, so a late event stored meanwhile
waits and then marks the day dirty again (its event was not in what this rebuild read). A day not yet
closed (today, or later) stays dirty: reports keep reading its raw events."""

LATE_SQL = """
INSERT INTO report_days (source_id, day, dirty)
SELECT DISTINCT s.id, d.day::date, true
FROM ROWS FROM (json_array_elements_text(%s), json_array_elements_text(%s)) AS d(source_id, day)
JOIN sources s ON s.id = d.source_id
ORDER BY 1, 2
ON CONFLICT (source_id, day) DO UPDATE SET dirty = true WHERE NOT report_days.dirty
"""
"""Mark (source, day) pairs dirty: two JSON arrays (source ids, ISO days). A source deleted meanwhile
is skipped (no foreign-key error in the store's transaction)."""

DIRTY_SQL = (
    "SELECT source_id, day FROM report_days WHERE dirty AND day < (now() AT TIME ZONE 'UTC')::date"
    " ORDER BY day, source_id"
)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def month_after(day: date) -> date:
    """The first day of the month after ``day``'s."""
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


MONTH_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%(source)s || ':' || %(month)s::text, 15))"
"""Two days of one month rebuilt at once take turns on the month's sums (else the second's DELETE would
miss the rows the first inserted, and its INSERT collide with them)."""

MONTH_SQL = """
INSERT INTO report_months (source_id, dim, scope, month, bots, key, label, pageviews, unique_pageviews,
                           visits, visitors, bounces, duration, entries, exits, events)
SELECT source_id, dim, scope, %(month)s, bots, key, max(label), sum(pageviews), sum(unique_pageviews),
       sum(visits), sum(visitors), sum(bounces), sum(duration), sum(entries), sum(exits), sum(events)
FROM report_rows
WHERE source_id = %(source)s AND day >= %(month)s AND day < %(next_month)s
GROUP BY source_id, dim, scope, bots, key
"""
"""The month's sums of ``day``'s month, from its days' rows (every count is a sum of daily ones)."""


def rebuild_statements(source_id: str, day: date) -> list[tuple[str, dict[str, Any]]]:
    """The statements that rebuild one source's day, to run in one transaction, in order: mark the
    day (its lock), delete its rows, insert them again from the events, then its month's sums.
    Idempotent."""
    start, end = day_bounds(day)
    params: dict[str, Any] = {
        "source": source_id,
        "day": day,
        "start": start,
        "end": end,
        "only": None,
        "with_bots": True,
        "month": day.replace(day=1),
        "next_month": month_after(day),
    }
    rows = ", ".join(ROW_COLUMNS)
    return [
        (MARK_SQL, params),
        ("DELETE FROM report_rows WHERE source_id = %(source)s AND day = %(day)s", params),
        ("DELETE FROM report_step_sequences WHERE source_id = %(source)s AND day = %(day)s", params),
        (f"INSERT INTO report_rows ({rows}) {ROWS_SQL}", params),
        (INTERN_SQL, params),
        (STEP_SEQUENCES_SQL, params),
        (MONTH_LOCK_SQL, params),
        ("DELETE FROM report_months WHERE source_id = %(source)s AND month = %(month)s", params),
        (MONTH_SQL, params),
    ]


SOURCES_SQL = "SELECT id FROM sources ORDER BY id"
