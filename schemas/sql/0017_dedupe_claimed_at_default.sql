-- A claim of (source, message id) pairs that were never seen is COPYed (workers/store.py): the rows
-- carry only the pair, and claimed_at takes the transaction's time, as the INSERT's now() gave it.
ALTER TABLE event_dedupe ALTER COLUMN claimed_at SET DEFAULT now();
