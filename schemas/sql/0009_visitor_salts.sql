-- Daily salts of the cookie-less visitor id (workers/enrich/visitor.py): one random 32-byte salt per
-- UTC day, created by the first worker that needs it (INSERT ... ON CONFLICT DO NOTHING, so concurrent
-- workers agree); only today's and yesterday's are kept, older ones are deleted.
CREATE TABLE visitor_salts (
    day         date PRIMARY KEY,
    salt        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
