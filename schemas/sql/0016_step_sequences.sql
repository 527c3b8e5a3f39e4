-- The funnel's sequences, compact (issue 12, the 12-month funnel): steps stored as integer ids of a
-- per-source dictionary (a 12-month funnel over 10M events read 524 MB of text arrays), whole-site rows
-- (scope '') in a partition of their own, apart from the content-group rows, and a GIN index on the
-- steps so that a funnel reads only the sequences that hold its first step.

-- Every step (page path or custom event name) a source's sequences hold, numbered. The ids come from
-- one identity, so an id names one step of one source: the GIN probe of a source's step finds that
-- source's rows only.
CREATE TABLE report_steps (
    source_id  text NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    step       text NOT NULL,
    id         integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    PRIMARY KEY (source_id, step)
);

-- One row per distinct sequence of steps (report_steps ids, in order, a repeat in a row kept once) of a
-- source, scope, UTC day and bot flag, with the sessions that followed it.
CREATE TABLE report_step_sequences (
    source_id  text NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    scope      text NOT NULL,
    day        date NOT NULL,
    bots       boolean NOT NULL,
    steps      integer[] NOT NULL,
    sessions   integer NOT NULL
) PARTITION BY LIST (scope);
CREATE TABLE report_step_sequences_site PARTITION OF report_step_sequences FOR VALUES IN ('');
CREATE TABLE report_step_sequences_groups PARTITION OF report_step_sequences DEFAULT;

-- The rows 0015's report_sequences already holds, converted (one hash of the dictionary, not a lookup
-- per step).
INSERT INTO report_steps (source_id, step)
SELECT DISTINCT r.source_id, t.step FROM report_sequences r, unnest(r.steps) AS t(step) ORDER BY 1, 2;

SET LOCAL work_mem = '256MB';
INSERT INTO report_step_sequences (source_id, scope, day, bots, steps, sessions)
SELECT r.source_id, r.scope, r.day, r.bots, x.ids, r.sessions
FROM report_sequences r
JOIN (SELECT u.rid, array_agg(d.id ORDER BY u.n) AS ids
      FROM (SELECT r.ctid AS rid, r.source_id, t.step, t.n
            FROM report_sequences r, unnest(r.steps) WITH ORDINALITY AS t(step, n)) u
      JOIN report_steps d ON d.source_id = u.source_id AND d.step = u.step
      GROUP BY u.rid) x ON x.rid = r.ctid
ORDER BY r.source_id, r.scope, r.day, r.bots;

DROP TABLE report_sequences;

CREATE INDEX report_step_sequences_day ON report_step_sequences (source_id, scope, day);
CREATE INDEX report_step_sequences_steps ON report_step_sequences USING gin (steps);

-- The sequences with their steps' names, as 0015's table gave them (for reading by hand, and tests).
CREATE VIEW report_sequences AS
SELECT s.source_id, s.scope, s.day, s.bots,
       ARRAY(SELECT d.step FROM unnest(s.steps) WITH ORDINALITY AS t(id, n)
             JOIN report_steps d ON d.id = t.id ORDER BY t.n) AS steps,
       s.sessions
FROM report_step_sequences s;

-- The converted rows' statistics now, not at autovacuum's next pass: the first funnels plan with them.
ANALYZE report_steps, report_step_sequences;
