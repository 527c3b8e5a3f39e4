-- A B-tree entry is limited to ~2.7 KB and Segment sets no length limit on userId: a long one made
-- the whole batch fail to store. A hash index has no such limit and serves the lookups by user id.
DROP INDEX IF EXISTS events_source_user;
CREATE INDEX events_user_id ON events USING hash (user_id);
