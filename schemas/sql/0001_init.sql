-- Sources: who may send, in which dialect. Credentials are stored as SHA-256 digests only.
CREATE TABLE sources (
    id          text PRIMARY KEY,
    dialect     text NOT NULL,
    name        text NOT NULL,
    key_hash    bytea NOT NULL,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dialect, key_hash),
    UNIQUE (dialect, name)
);

-- Canonical events, partitioned by month of arrival: time-range scans touch only their months,
-- and retention is a DROP of a partition. Rows land in a month partition, or in the default one
-- until the worker has created that month's partition.
CREATE TABLE events (
    id                  uuid NOT NULL,
    source_id           text NOT NULL,
    message_id          text NOT NULL,
    dialect             text NOT NULL,
    dialect_version     text NOT NULL DEFAULT '',
    type                text NOT NULL,
    name                text,
    user_id             text,
    anonymous_id        text,
    group_id            text,
    group_ids           text[],
    previous_id         text,
    properties          jsonb NOT NULL DEFAULT '{}'::jsonb,
    traits              jsonb NOT NULL DEFAULT '{}'::jsonb,
    context             jsonb NOT NULL DEFAULT '{}'::jsonb,
    integrations        jsonb NOT NULL DEFAULT '{}'::jsonb,
    "timestamp"         timestamptz NOT NULL,
    original_timestamp  timestamptz,
    sent_at             timestamptz,
    received_at         timestamptz NOT NULL,
    enrichment          jsonb NOT NULL DEFAULT '{}'::jsonb,
    raw                 json NOT NULL,
    batch_id            text
) PARTITION BY RANGE (received_at);

CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_source_time ON events (source_id, "timestamp");
CREATE INDEX events_source_user ON events (source_id, user_id) WHERE user_id IS NOT NULL;

-- Dedupe: one row per (source, message id) ever stored, kept for TRACKGATE_DEDUPE_DAYS (at least 7).
-- The worker inserts here first (ON CONFLICT DO NOTHING) and stores only the events whose row it won,
-- in the same transaction: a retried request, a re-run job or two racing workers store an event once.
CREATE TABLE event_dedupe (
    source_id    text NOT NULL,
    message_id   text NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (source_id, message_id)
);
CREATE INDEX event_dedupe_received_at ON event_dedupe (received_at);
