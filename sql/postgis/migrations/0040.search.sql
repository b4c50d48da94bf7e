-- Search (统一搜索) and statistics (研判分析): character-bigram indexes for Chinese text,
-- aggregate tables the job runner refreshes (scoped by RLS, unlike materialized views), the
-- peer-ranking function (通报排名: totals of peers, never their rows), and the permission.

-- Character bigrams -------------------------------------------------------------------------
-- pg_trgm cannot serve a 2-character query: a LIKE '%五马%' pattern yields no trigram, so the
-- trigram index scans everything. search_bigrams() cuts the normalised text (NFKC, so full-width
-- digits and letters equal half-width ones; lower case) into tokens of letters and digits and
-- returns every overlapping pair of characters in each token (a 1-character token is kept as
-- itself). A query matches a text when the text's bigrams contain the query's: GIN array
-- containment (arraycontains), which bootstrap marks LEAKPROOF.
-- plpgsql, not SQL: about twice as fast here (~20 µs for a 16-character address).
CREATE FUNCTION search_bigrams(t text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    w text;
    grams text[] := '{}';
    n integer;
BEGIN
    FOREACH w IN ARRAY regexp_split_to_array(lower(normalize(t, NFKC)), '[^[:alnum:]]+') LOOP
        n := length(w);
        IF n = 1 THEN
            grams := array_append(grams, w);
        ELSIF n > 1 THEN
            FOR i IN 1 .. n - 1 LOOP
                grams := array_append(grams, substr(w, i, 2));
            END LOOP;
        END IF;
    END LOOP;
    RETURN grams;
END
$$;

-- The bigrams live in a generated column, not in an expression index: under RLS the planner
-- uses a condition for an index scan only when every function in it is leakproof, and only a
-- superuser may mark search_bigrams so (bootstrap runs before this migration exists). A plain
-- column compared with the leakproof @> is usable by the app role, which EXPLAIN checks in
-- tests/integration/test_search.py. Services select their columns by name, never *, so the
-- extra column shows up nowhere.
ALTER TABLE region ADD COLUMN search_grams text[]
    GENERATED ALWAYS AS (search_bigrams(name)) STORED;
CREATE INDEX region_search_grams ON region USING gin (search_grams) WHERE valid_to IS NULL;
ALTER TABLE standard_address ADD COLUMN search_grams text[]
    GENERATED ALWAYS AS (search_bigrams(full_text)) STORED;
CREATE INDEX standard_address_search_grams ON standard_address USING gin (search_grams);
ALTER TABLE building ADD COLUMN search_grams text[]
    GENERATED ALWAYS AS (search_bigrams(name)) STORED;
CREATE INDEX building_search_grams ON building USING gin (search_grams);
ALTER TABLE key_place ADD COLUMN search_grams text[]
    GENERATED ALWAYS AS (search_bigrams(name)) STORED;
CREATE INDEX key_place_search_grams ON key_place USING gin (search_grams);
ALTER TABLE enterprise ADD COLUMN search_grams text[]
    GENERATED ALWAYS AS (search_bigrams(name)) STORED;
CREATE INDEX enterprise_search_grams ON enterprise USING gin (search_grams);
ALTER TABLE organization ADD COLUMN search_grams text[]
    GENERATED ALWAYS AS (search_bigrams(name)) STORED;
CREATE INDEX organization_search_grams ON organization USING gin (search_grams);
ALTER TABLE person ADD COLUMN search_grams text[]
    GENERATED ALWAYS AS (search_bigrams(name)) STORED;
CREATE INDEX person_search_grams ON person USING gin (search_grams);
ALTER TABLE event ADD COLUMN search_grams text[]
    GENERATED ALWAYS AS (search_bigrams(title || ' ' || coalesce(address, ''))) STORED;
CREATE INDEX event_search_grams ON event USING gin (search_grams);
-- The statistics job recomputes the days of events changed since its last run.
CREATE INDEX event_updated_at ON event (updated_at);

-- Aggregates --------------------------------------------------------------------------------
-- Counted per smallest region (the rows' own path), so any region's figure is a sum over the
-- paths under it, and RLS on path gives each caller exactly the totals of their jurisdiction.
-- Refreshed by the job runner (geoserver/jobs/statistics.py); stat_refresh says how fresh.

-- Base data: how many objects of a subject, by category, registered on each day (Shanghai).
CREATE TABLE stat_object_daily (
    subject     text NOT NULL CHECK (subject IN ('person', 'residence', 'building', 'key_place',
                                                 'enterprise')),
    path        ltree NOT NULL,
    category    text NOT NULL,
    day         date NOT NULL,
    n           bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (subject, path, category, day)
);
CREATE INDEX stat_object_daily_path ON stat_object_daily USING gist (path);
SELECT gridgov_meta.enable_scope_rls('stat_object_daily');

-- Events: reported (merged duplicates excluded) and how many of those are closed, per day of
-- report (Shanghai), grid and type.
CREATE TABLE stat_event_daily (
    day             date NOT NULL,
    path            ltree NOT NULL,
    event_type_id   bigint NOT NULL,
    reported        integer NOT NULL CHECK (reported >= 0),
    closed          integer NOT NULL CHECK (closed >= 0),
    PRIMARY KEY (day, path, event_type_id)
);
-- Path and day together (btree_gist): a township's month is a small slice of a city's year.
CREATE INDEX stat_event_daily_path_day ON stat_event_daily USING gist (path, day);
SELECT gridgov_meta.enable_scope_rls('stat_event_daily');

-- Events per month, rolled up to township paths (deeper paths cut to their township): a
-- city's or county's year is a few tens of thousands of rows here instead of a million daily
-- ones. Used for whole months of areas at township level or above; filled from the daily table.
CREATE TABLE stat_event_monthly (
    month           date NOT NULL CHECK (extract(day FROM month) = 1),
    path            ltree NOT NULL CHECK (nlevel(path) <= 3),
    event_type_id   bigint NOT NULL,
    reported        integer NOT NULL CHECK (reported >= 0),
    closed          integer NOT NULL CHECK (closed >= 0),
    PRIMARY KEY (month, path, event_type_id)
);
CREATE INDEX stat_event_monthly_path_month ON stat_event_monthly USING gist (path, month);
SELECT gridgov_meta.enable_scope_rls('stat_event_monthly');

-- When each aggregate was last refreshed (no rows of anyone's: readable by every session).
CREATE TABLE stat_refresh (
    name            text PRIMARY KEY,
    refreshed_at    timestamptz NOT NULL,
    started_at      timestamptz NOT NULL,
    rows_written    bigint NOT NULL DEFAULT 0,
    duration_ms     double precision NOT NULL DEFAULT 0
);

-- Peer ranking (通报排名) ----------------------------------------------------------------------
-- The aggregate visibility rule: a caller sees the totals of the peers of a region in their
-- scope (the region itself and its siblings of the same level and kind under the same parent),
-- never their rows. Runs as the owner to read the peers' aggregates; returns one total per
-- peer and nothing else. A region outside the caller's scope answers nothing.
CREATE FUNCTION gridgov_meta.peer_totals(of_code text, of_subject text, of_category text,
                                         day_from date, day_to date, type_ids bigint[])
RETURNS TABLE (code text, name text, level text, own boolean, total bigint,
               residents bigint, area_km2 double precision)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    me region%ROWTYPE;
BEGIN
    IF of_subject NOT IN ('person', 'residence', 'building', 'key_place', 'enterprise', 'event') THEN
        RAISE EXCEPTION 'unknown subject %', of_subject USING ERRCODE = 'GG422', DETAIL = 'subject';
    END IF;
    SELECT * INTO me FROM region r
    WHERE r.code = of_code AND r.valid_to IS NULL
      AND r.path <@ ANY (gridgov_meta.scope());
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT p.code, p.name, p.level::text, p.path <@ ANY (gridgov_meta.scope()),
        CASE WHEN of_subject = 'event' THEN
            (SELECT coalesce(sum(e.reported), 0)::bigint FROM stat_event_daily e
             WHERE e.path <@ p.path AND e.day BETWEEN day_from AND day_to
               AND (type_ids IS NULL OR e.event_type_id = ANY (type_ids)))
        ELSE
            (SELECT coalesce(sum(o.n), 0)::bigint FROM stat_object_daily o
             WHERE o.subject = of_subject AND o.path <@ p.path
               AND (of_category IS NULL OR o.category = of_category))
        END,
        (SELECT coalesce(sum(o.n), 0)::bigint FROM stat_object_daily o
         WHERE o.subject = 'person' AND o.path <@ p.path),
        p.area_km2
    FROM region p
    WHERE p.valid_to IS NULL AND p.level = me.level
      AND (p.grid_type = 'dedicated') IS NOT DISTINCT FROM (me.grid_type = 'dedicated')
      AND (p.code = me.code OR p.parent_code = me.parent_code);
END
$$;
REVOKE ALL ON FUNCTION gridgov_meta.peer_totals(text, text, text, date, date, bigint[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.peer_totals(text, text, text, date, date, bigint[])
    TO gridgov_app;

-- Permission --------------------------------------------------------------------------------
INSERT INTO permission (name, description) VALUES ('statistics.read', '查看研判分析')
ON CONFLICT (name) DO NOTHING;
INSERT INTO role_permission (role_id, permission)
SELECT r.id, 'statistics.read' FROM role r
WHERE r.name IN ('admin', 'city_commander', 'county_commander', 'township_commander',
                 'grid_instructor', 'grid_leader', 'grid_worker', 'analyst')
ON CONFLICT DO NOTHING;
