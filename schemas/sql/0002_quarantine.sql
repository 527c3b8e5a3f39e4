-- Events that were acknowledged but cannot be stored as they are (PostgreSQL refused a value), or
-- that a dialect answered 200 to but could not accept. Kept with their reason, never dropped.
CREATE TABLE quarantine (
    id          bigserial PRIMARY KEY,
    source_id   text NOT NULL,
    message_id  text,
    dialect     text NOT NULL,
    reason      text NOT NULL,
    event       text NOT NULL,   -- the canonical event as JSON text (text: it may hold what jsonb refuses)
    batch_id    text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_source_created ON quarantine (source_id, created_at);
