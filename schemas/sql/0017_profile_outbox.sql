-- Profiles applied after the store, in bulk (issue 14): a store transaction writes a row per partition
-- holding what profiles read of the events it stored for the first time (msgspec JSON,
-- workers/profiles_outbox.py); an applier holding a partition's lock applies its oldest rows and
-- deletes them in one transaction, so each row's events change profiles exactly once.
CREATE TABLE profile_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition   smallint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    n_events    integer NOT NULL,
    events      bytea NOT NULL
);
-- the rows live for milliseconds: stored as they are, not compressed
ALTER TABLE profile_outbox ALTER COLUMN events SET STORAGE EXTERNAL;
