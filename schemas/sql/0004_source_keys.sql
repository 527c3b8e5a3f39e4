-- More keys for a source, by kind: a dialect may authenticate with more than the primary key in
-- sources.key_hash (OpenPanel's client secret beside its client id; Reflag's secret key beside the
-- publishable key). Stored as SHA-256 digests, unique per dialect like the primary keys.
CREATE TABLE source_keys (
    source_id   text NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    dialect     text NOT NULL,
    kind        text NOT NULL,
    key_hash    bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, kind),
    UNIQUE (dialect, key_hash)
);
