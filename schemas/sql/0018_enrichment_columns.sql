-- Enrichment in typed columns (issue 14, bench (e)): each key the chain and the adapters write gets a
-- column of its own, named as the key (schemas/enrichment_columns.py lists them, in this order).
-- PostgreSQL built a ~350-byte jsonb for every stored event; 26 short typed values cost it under a
-- third of that, and the reports read columns instead of a key of each row's jsonb. `enrichment` keeps
-- the keys without a column, and a key whose value is null or not of its column's type.
--
-- Adding a column without a default changes only the catalog. Rows stored before move their keys in
-- one UPDATE (one new version of each row that has any), each key only when its JSON type is the
-- column's, so every event reads back with the enrichment it had.
DO $$
DECLARE
    flags text[] := ARRAY['is_bot', 'is_excluded'];
    texts text[] := ARRAY[
        'browser', 'browser_version', 'os', 'os_version', 'device_type',
        'utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content',
        'gclid', 'msclkid', 'fbclid',
        'referrer_domain', 'traffic_source', 'traffic_medium', 'channel',
        'country', 'region', 'region_code', 'city',
        'visitor_id', 'screen_bucket', 'content_group'];
    sets text := '';
    k text;
BEGIN
    FOREACH k IN ARRAY flags LOOP
        EXECUTE format('ALTER TABLE events ADD COLUMN %I boolean', k);
        sets := sets || format(
            '%I = CASE WHEN jsonb_typeof(enrichment -> %L) = ''boolean'' THEN (enrichment -> %L)::boolean END, ',
            k, k, k);
    END LOOP;
    FOREACH k IN ARRAY texts LOOP
        EXECUTE format('ALTER TABLE events ADD COLUMN %I text', k);
        sets := sets || format(
            '%I = CASE WHEN jsonb_typeof(enrichment -> %L) = ''string'' THEN enrichment ->> %L END, ', k, k, k);
    END LOOP;
    EXECUTE 'UPDATE events SET ' || sets
        || 'enrichment = enrichment - ARRAY(SELECT key FROM jsonb_each(enrichment)'
        || ' WHERE (key = ANY($1) AND jsonb_typeof(value) = ''boolean'')'
        || ' OR (key = ANY($2) AND jsonb_typeof(value) = ''string''))'
        || ' WHERE enrichment ?| ($1 || $2)'
        USING flags, texts;
END $$;

ANALYZE events;
