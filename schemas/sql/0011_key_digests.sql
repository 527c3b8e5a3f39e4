-- Keyed key digests (issue 11 item 11). Keys were stored as plain SHA-256: a user-chosen key can be
-- guessed from a dump by hashing candidates. They are now HMAC-SHA256 under a per-installation secret,
-- generated here (pg_strong_random through gen_random_uuid, 244 random bits), so every gateway and CLI
-- process shares it without configuration; TRACKGATE_KEY_PEPPER may add a secret held outside the
-- database (gateway/auth.py). Rows keep their digest's kind: the existing SHA-256 rows still
-- authenticate and are rewritten as HMAC on their next successful lookup.
CREATE TABLE installation (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key_secret  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO installation (key_secret) VALUES (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));

-- 'sha256' (legacy, and any row written without saying) or 'hmac-sha256'
ALTER TABLE sources ADD COLUMN digest_kind text NOT NULL DEFAULT 'sha256'
    CHECK (digest_kind IN ('sha256', 'hmac-sha256'));
ALTER TABLE source_keys ADD COLUMN digest_kind text NOT NULL DEFAULT 'sha256'
    CHECK (digest_kind IN ('sha256', 'hmac-sha256'));
