-- Report aggregates, second part (after 0015_aggregates.sql, which databases made from the reports
-- branch already applied): an index for single-value lookups and the month sums.

-- One report's lookups of a single value over days (a timeseries of one path, one custom event).
CREATE INDEX report_rows_key ON report_rows (source_id, dim, scope, key, day);

-- The same rows summed per calendar month (month = its first day), rebuilt with each of its days
-- (schemas/aggregates.py MONTH_SQL): a long period reads its whole clean months here (a year of pages:
-- 12 rows per path, not 365).
CREATE TABLE report_months (
    source_id         text NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    dim               text NOT NULL,
    scope             text NOT NULL,
    month             date NOT NULL,
    bots              boolean NOT NULL,
    key               text NOT NULL,
    label             text,
    pageviews         bigint NOT NULL DEFAULT 0,
    unique_pageviews  bigint NOT NULL DEFAULT 0,
    visits            bigint NOT NULL DEFAULT 0,
    visitors          bigint NOT NULL DEFAULT 0,
    bounces           bigint NOT NULL DEFAULT 0,
    duration          double precision NOT NULL DEFAULT 0,
    entries           bigint NOT NULL DEFAULT 0,
    exits             bigint NOT NULL DEFAULT 0,
    events            bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (source_id, dim, scope, month, bots, key)
);

-- Days aggregated before this table existed: their months' sums, so that reads of clean months agree.
INSERT INTO report_months (source_id, dim, scope, month, bots, key, label, pageviews, unique_pageviews,
                           visits, visitors, bounces, duration, entries, exits, events)
SELECT source_id, dim, scope, date_trunc('month', day)::date, bots, key, max(label), sum(pageviews),
       sum(unique_pageviews), sum(visits), sum(visitors), sum(bounces), sum(duration), sum(entries),
       sum(exits), sum(events)
FROM report_rows
GROUP BY source_id, dim, scope, date_trunc('month', day)::date, bots, key;
