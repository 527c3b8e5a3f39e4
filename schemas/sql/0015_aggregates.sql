-- Daily report aggregates (issue 12; schemas/aggregates.py builds them, gateway/reports/ reads them).
-- One row per (source, dimension, scope, UTC day, bot flag, dimension value):
--   dim    total | path | channel | referrer | utm | device | browser | os | screen | event
--   scope  '' = all events of the day; a content group's name = only that group's events (sessions
--          rebuilt over them), so that content_group= filters read their own rows
--   bots   the rows of bot traffic (enrichment.is_bot); reports add them only with include_bots=true.
--          Excluded traffic (enrichment.is_excluded) is never aggregated.
-- The counts of a row: see schemas/aggregates.py (ROWS_SQL).
CREATE TABLE report_rows (
    source_id         text NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    dim               text NOT NULL,
    scope             text NOT NULL,
    day               date NOT NULL,
    bots              boolean NOT NULL,
    key               text NOT NULL,
    label             text,
    pageviews         integer NOT NULL DEFAULT 0,
    unique_pageviews  integer NOT NULL DEFAULT 0,
    visits            integer NOT NULL DEFAULT 0,
    visitors          integer NOT NULL DEFAULT 0,
    bounces           integer NOT NULL DEFAULT 0,
    duration          double precision NOT NULL DEFAULT 0,
    entries           integer NOT NULL DEFAULT 0,
    exits             integer NOT NULL DEFAULT 0,
    events            integer NOT NULL DEFAULT 0,
    PRIMARY KEY (source_id, dim, scope, day, bots, key)
);

-- The funnel's input: each session's steps (page paths and custom event names, in order, a repeat in a
-- row kept once), identical sequences of a day counted together.
CREATE TABLE report_sequences (
    source_id  text NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    scope      text NOT NULL,
    day        date NOT NULL,
    bots       boolean NOT NULL,
    steps      text[] NOT NULL,
    sessions   integer NOT NULL
);
CREATE INDEX report_sequences_day ON report_sequences (source_id, scope, day);

-- Which days have aggregates that reports may read (dirty = false), per source. The aggregation
-- writes dirty = false for a closed day (true for today or later: still moving); a late event (its
-- day already closed) sets dirty = true from the store path, in the transaction that stores it, and
-- the next aggregation job rebuilds that day. Reports read raw events for every day not marked clean.
CREATE TABLE report_days (
    source_id      text NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    day            date NOT NULL,
    dirty          boolean NOT NULL,
    aggregated_at  timestamptz,
    PRIMARY KEY (source_id, day)
);
CREATE INDEX report_days_dirty ON report_days (day) WHERE dirty;
