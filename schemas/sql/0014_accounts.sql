-- TinyTrail's accounts and websites (issue 12; schemas/websites.py).
--
-- An account is a trackgate workspace: `workspace` names it. An account created through the API has its
-- id as its workspace. The workspace `default`, which every source had until now, becomes the account
-- `Default` with the fixed id 00000000-0000-0000-0000-000000000000 (its sources and profiles keep their
-- rows as they are); any other workspace that sources already name becomes an account named after it.
CREATE TABLE accounts (
    id          text PRIMARY KEY,                -- a UUID, as text
    name        text NOT NULL,
    workspace   text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO accounts (id, name, workspace, created_at)
    VALUES ('00000000-0000-0000-0000-000000000000', 'Default', 'default', now());
INSERT INTO accounts (id, name, workspace, created_at)
    SELECT gen_random_uuid()::text, workspace, workspace, min(created_at)
    FROM sources WHERE workspace <> 'default' GROUP BY workspace;

-- A website is a source. Its id (the API's website_id): for a TinyTrail source the key tracker.js sends,
-- taken back from its stored events (the key itself is kept only as a digest); for every other source,
-- and a TinyTrail one with no event yet, a random UUID (trackgate sources add stores the key of a new
-- TinyTrail source here).
ALTER TABLE sources ADD COLUMN website_id uuid;
UPDATE sources s SET website_id = (
    SELECT (e.raw ->> 'website_id')::uuid FROM events e
    WHERE e.source_id = s.id AND e.raw ->> 'website_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    LIMIT 1
) WHERE s.dialect = 'tinytrail';
UPDATE sources SET website_id = gen_random_uuid() WHERE website_id IS NULL;
ALTER TABLE sources ALTER COLUMN website_id SET DEFAULT gen_random_uuid(), ALTER COLUMN website_id SET NOT NULL;
CREATE UNIQUE INDEX sources_website_id ON sources (website_id);
CREATE INDEX sources_workspace ON sources (workspace);

-- A website's domain is its source's name: the same domain may be a website of two accounts.
ALTER TABLE sources DROP CONSTRAINT sources_dialect_name_key;
ALTER TABLE sources ADD CONSTRAINT sources_workspace_dialect_name_key UNIQUE (workspace, dialect, name);

-- Users are API keys (0013): a key of an account is deleted with it.
CREATE INDEX api_keys_account ON api_keys (account_id) WHERE account_id IS NOT NULL;
