-- Quarantine for items a dialect answered 2xx to but could not accept (Commanders Act's refused
-- events), beside the events PostgreSQL refused: the raw item as it arrived, the dialect version and
-- a stable code, whether it has been replayed, and a unique key so that a retried job never
-- quarantines the same item twice.
ALTER TABLE quarantine
    ALTER COLUMN event DROP NOT NULL,           -- a refused item has no canonical event
    ADD COLUMN item_key        text,            -- 'event:<event id>' or 'item:<key the publisher gave it>'
    ADD COLUMN dialect_version text NOT NULL DEFAULT '',
    ADD COLUMN code            text,
    ADD COLUMN item_index      integer,         -- its index in the request (a batch)
    ADD COLUMN raw             text,            -- the item verbatim (text: it may hold what json refuses)
    ADD COLUMN request_id      text,
    ADD COLUMN received_at     timestamptz,
    ADD COLUMN status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'replayed')),
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN last_attempt_at timestamptz,
    ADD COLUMN replayed_at     timestamptz,
    ADD COLUMN event_id        text;            -- the stored event's id once replayed

UPDATE quarantine SET item_key = 'legacy:' || id WHERE item_key IS NULL;
ALTER TABLE quarantine ALTER COLUMN item_key SET NOT NULL;
CREATE UNIQUE INDEX quarantine_item_key ON quarantine (item_key);
-- per-source listing and the per-source bound (TRACKGATE_QUARANTINE_MAX_PER_SOURCE)
CREATE INDEX quarantine_source_id ON quarantine (source_id, id);
