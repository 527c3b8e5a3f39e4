-- Identity state: profiles, the ids that resolve to them, groups and memberships.
--
-- A workspace is the scope of identity: every source belongs to one (default 'default'), and a user id
-- means the same person in every source of a workspace, whatever its dialect. Ids are looked up by
-- their SHA-256 digest (`key`): a B-tree entry is limited to ~2.7 KB and no dialect limits id length.
ALTER TABLE sources ADD COLUMN workspace text NOT NULL DEFAULT 'default';

CREATE TABLE profiles (
    id           uuid PRIMARY KEY,                     -- UUIDv7: new rows append to the index
    workspace    text NOT NULL,
    user_id      text,                                 -- the main user id; null while anonymous
    traits       jsonb NOT NULL DEFAULT '{}'::jsonb,   -- merged by event time, per trait
    trait_times  jsonb NOT NULL DEFAULT '{}'::jsonb,   -- trait -> event time of its current value
    counters     jsonb NOT NULL DEFAULT '{}'::jsonb,   -- dot path -> number (increment/decrement)
    revenue      jsonb NOT NULL DEFAULT '{}'::jsonb,   -- ISO 4217 currency -> total in major units
    mrr          numeric,
    mrr_at       timestamptz,
    arr          numeric,
    arr_at       timestamptz,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz,                          -- never moved by context.active = false
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- No foreign keys on the tables below: each costs a lookup and a row lock per inserted row; without
-- them (and with plain inserts and time-ordered profile ids) the id inserts took a third of the time
-- in bench-shaped batches. The one writer (workers/profiles.py) keeps them consistent: a profile is deleted only when
-- merged, after its ids and memberships have moved, and groups are never deleted.

-- (workspace, id) -> profile: user ids, anonymous/device ids, alias previous ids, in one namespace
-- (an alias's previous id may be either kind).
CREATE TABLE profile_ids (
    workspace   text NOT NULL,
    key         bytea NOT NULL,                        -- sha256(id)
    id          text NOT NULL,
    kind        text NOT NULL,                         -- user | anonymous | previous
    profile_id  uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, key)
);
CREATE INDEX profile_ids_profile ON profile_ids (profile_id);

CREATE TABLE groups (
    workspace    text NOT NULL,
    key          bytea NOT NULL,                       -- sha256(group id)
    group_id     text NOT NULL,
    traits       jsonb NOT NULL DEFAULT '{}'::jsonb,
    trait_times  jsonb NOT NULL DEFAULT '{}'::jsonb,
    name         text GENERATED ALWAYS AS (traits ->> 'name') STORED,
    type         text GENERATED ALWAYS AS (traits ->> 'type') STORED,
    first_seen   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, key)
);

CREATE TABLE group_members (
    workspace   text NOT NULL,
    group_key   bytea NOT NULL,
    profile_id  uuid NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (workspace, group_key, profile_id)
);
CREATE INDEX group_members_profile ON group_members (profile_id);
