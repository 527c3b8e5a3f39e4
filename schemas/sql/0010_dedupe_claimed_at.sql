-- The dedupe window counts from when trackgate stored a (source, message id) pair, not from the
-- event's own received_at: a historical import (`replay file`, whose received_at is in the past) must
-- stay deduplicated for the whole window too, instead of being forgotten by the next hourly prune.
ALTER TABLE event_dedupe RENAME COLUMN received_at TO claimed_at;
ALTER INDEX event_dedupe_received_at RENAME TO event_dedupe_claimed_at;
UPDATE event_dedupe SET claimed_at = now() WHERE claimed_at < now();
