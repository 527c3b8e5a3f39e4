-- The forwarding outbox (workers/forward/outbox.py). A delivery row is written in the transaction that
-- stores its events, and queued on Redis after the commit; `enqueued_at` says that was done. A worker's
-- sweeper queues the rows still `queued` and not enqueued some seconds after their commit (Redis
-- refused the job, or the worker died between the commit and the enqueue), so a stored event's
-- forwarding can be late, never lost. Rows of older versions were queued before their commit.
ALTER TABLE deliveries ADD COLUMN enqueued_at timestamptz;
UPDATE deliveries SET enqueued_at = created_at;
CREATE INDEX deliveries_outbox ON deliveries (created_at) WHERE enqueued_at IS NULL;

-- Which events each delivery carries: the record `replay events` checks so that it sends a
-- destination only what was never handed to it (unless --force), and what the sweeper reads the
-- events back by. Insert-only, beside `deliveries` rather than a column of it: a delivery row is
-- updated several times (enqueued, retrying, delivered) and, its status being indexed, none of those
-- updates is HOT, so a GIN index on a column of it would take every event id again at each update.
-- received_from/received_to bound the events' arrival times, so reading them back by id scans only
-- the blocks of that interval (the BRIN index below) instead of whole monthly partitions.
-- No foreign key: the table is a log (removing a destination deletes its rows, workers/destinations.py).
CREATE TABLE delivery_events (
    delivery_id     bigint PRIMARY KEY,
    destination_id  text NOT NULL,
    event_ids       uuid[] NOT NULL,
    received_from   timestamptz NOT NULL,
    received_to     timestamptz NOT NULL
);
CREATE INDEX delivery_events_ids ON delivery_events USING gin (event_ids);

-- Arrival order is (almost) insertion order: a BRIN index costs next to nothing on COPY.
CREATE INDEX events_received_at ON events USING brin (received_at);
