-- API keys (issue 13's debugger needs the admin ones; issue 12's users and accounts extend this table):
-- a key `tt_…`, sent as X-API-KEY. Looked up by its keyed digest (HMAC-SHA256 under the installation
-- secret, with TRACKGATE_KEY_PEPPER when set: the same digest as source keys, gateway/auth.py); the key
-- itself is kept Fernet-encrypted with TRACKGATE_SECRET_KEY, so that an admin can be shown a user's key
-- again (issue 12). A `user` key belongs to an account; an `admin` key to none.
CREATE TABLE api_keys (
    id            text PRIMARY KEY,
    role          text NOT NULL CHECK (role IN ('admin', 'user')),
    account_id    text,
    email         text,
    key_hash      bytea NOT NULL UNIQUE,
    key_encrypted text NOT NULL,
    label         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    CHECK (role = 'admin' OR account_id IS NOT NULL)
);
