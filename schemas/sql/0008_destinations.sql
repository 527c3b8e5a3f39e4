-- Destinations: where stored events are forwarded, each in one dialect (kind). Credentials are a
-- Fernet token (key from TRACKGATE_SECRET_KEY): readable by trackgate, never stored or shown in clear.
CREATE TABLE destinations (
    id           text PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    kind         text NOT NULL,
    base_url     text NOT NULL,
    credentials  text,                              -- Fernet token of a JSON object, or NULL
    source_ids   text[] NOT NULL DEFAULT '{}',      -- the sources it takes; empty: every source
    filters      jsonb NOT NULL DEFAULT '{}'::jsonb,  -- include/exclude types and names, consent
    paused       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The delivery log: one row per destination and forwarded chunk of a stored batch.
-- status: queued (waiting for its first attempt) | retrying | delivered | dead (some part dead-lettered).
CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    destination_id  text NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    batch_id        text NOT NULL,
    n_events        integer NOT NULL,
    status          text NOT NULL DEFAULT 'queued',
    attempts        integer NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX deliveries_destination_status ON deliveries (destination_id, status);
CREATE INDEX deliveries_batch ON deliveries (batch_id);

-- Dead letters: a request a destination refused for good (or that ran out of retry horizon), kept
-- as the encoded items it carried, so `trackgate replay dead-letters` can send it again as it was.
-- status: dead | replaying | replayed.
CREATE TABLE dead_letters (
    id              bigserial PRIMARY KEY,
    delivery_id     bigint NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    destination_id  text NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    route           text NOT NULL,
    items           text NOT NULL,                  -- JSON array of the encoded items
    n_events        integer NOT NULL,
    status          text NOT NULL DEFAULT 'dead',
    http_status     integer,
    response_body   text,
    error           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_destination_status ON dead_letters (destination_id, status, created_at);

-- Where an interrupted replay stops and resumes (replay events / replay file).
CREATE TABLE replay_checkpoints (
    key         text PRIMARY KEY,
    position    bigint NOT NULL DEFAULT 0,
    done        boolean NOT NULL DEFAULT false,
    counts      jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
