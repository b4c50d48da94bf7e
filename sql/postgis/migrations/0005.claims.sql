-- Claim queue (数据认领) and pooled records (归集).
--
-- Pooled records are rows gathered from departments, many with only an address or a region
-- code. Every pooled record, and every located base-data row whose grid is uncertain (near a
-- grid boundary, outside every grid), waits in the queue as a claim item until a grid claims
-- it. An item refers to its subject by (kind, id) without a foreign key, so this migration
-- does not depend on the base-data tables; the kinds that can be claimed are rows of
-- gridgov_meta.claim_subject_kind.
--
-- Who sees an item: the region holding it (path: the common parent of the candidate grids,
-- the region a source named, or a region it was declined up or transferred to) and the
-- candidate grids while it is unsettled. Every move is written to claim_action, which is
-- append-only.

CREATE TYPE pooled_record_status AS ENUM ('pending', 'claimed', 'declined', 'transferred',
                                          'imported');
-- Why an item is in the queue. 'in_grid': a pooled record whose point lies in exactly one
-- grid, waiting to be confirmed (automatically by auto_claim, or by the grid).
CREATE TYPE claim_reason AS ENUM ('no_location', 'boundary', 'outside_grids', 'address_only',
                                  'declined', 'in_grid');
CREATE TYPE claim_status AS ENUM ('open', 'claimed', 'declined', 'transferred');
CREATE TYPE claim_action_kind AS ENUM ('claim', 'decline', 'transfer', 'auto_claim');

-- Located tables (geom, path, region_id) whose rows can be claimed. A claimed row takes the
-- claimed grid's path; points go to the grid containing them, polygons to the grid holding
-- the largest share of their area. Later migrations that add a claimable table insert a row.
CREATE TABLE gridgov_meta.claim_subject_kind (
    kind        text PRIMARY KEY CHECK (kind ~ '^[a-z][a-z_]{1,39}$'),
    table_name  regclass NOT NULL UNIQUE
);
GRANT SELECT ON gridgov_meta.claim_subject_kind TO gridgov_app;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON gridgov_meta.claim_subject_kind FROM gridgov_app;

INSERT INTO gridgov_meta.claim_subject_kind (kind, table_name)
SELECT k, format('public.%I', k)::regclass
FROM unnest(ARRAY['building', 'key_place', 'city_component', 'enterprise', 'organization',
                  'standard_address']) AS k
WHERE EXISTS (SELECT 1 FROM information_schema.columns c
              WHERE c.table_schema = 'public' AND c.table_name = k
              GROUP BY c.table_name
              HAVING count(*) FILTER (WHERE c.column_name IN ('geom', 'path', 'region_id')) = 3);

-- A bounding-box margin in degrees that covers at least `m` metres around g, for the index
-- prefilter only: every distance decision itself is made on geography.
CREATE FUNCTION gridgov_meta.expand_metres(g geometry, m double precision) RETURNS geometry
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ST_Expand(g,
        m / (111320.0 * cos(radians(least(89.0, greatest(abs(ST_YMin(g)), abs(ST_YMax(g))) + 0.5))))
            * 1.01 + 1e-9,
        m / 110574.0 * 1.01 + 1e-9)
$$;

-- The general grids (not dedicated, not micro-grids) within `within_m` metres of g, whatever
-- the caller's scope: a boundary is only a boundary if the grid on the other side is seen.
-- distance_m is 0 for grids g touches; overlap_share is the share of a polygon's area inside
-- the grid (NULL for points).
CREATE FUNCTION gridgov_meta.claim_grids_near(g geometry, within_m double precision)
RETURNS TABLE (region_id bigint, code text, path ltree, distance_m double precision,
               overlap_share double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT r.id, r.code, r.path,
           CASE WHEN ST_Intersects(r.geom, g) THEN 0.0
                ELSE ST_Distance(r.geom::geography, g::geography) END,
           CASE WHEN ST_Dimension(g) = 2 THEN
               least(1.0, ST_Area(ST_Intersection(r.geom, g)::geography)
                          / nullif(ST_Area(g::geography), 0)) END
    FROM region r
    WHERE r.valid_to IS NULL AND r.level = 'grid'
      AND r.grid_type IS DISTINCT FROM 'dedicated'
      AND r.geom && gridgov_meta.expand_metres(g, greatest(within_m, 0))
      AND (ST_Intersects(r.geom, g)
           OR (within_m > 0 AND ST_DWithin(r.geom::geography, g::geography, within_m)))
$$;
REVOKE ALL ON FUNCTION gridgov_meta.claim_grids_near(geometry, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.claim_grids_near(geometry, double precision)
    TO gridgov_app;

-- 归集: records gathered from departments. A located table (the trigger derives path from
-- the point); rows without a point take the path the service gives (the named region, else
-- the ingesting user's top region).
CREATE TABLE pooled_record (
    id                  bigserial PRIMARY KEY,
    source_department   text NOT NULL CHECK (length(source_department) BETWEEN 1 AND 100),
    source_record_id    text NOT NULL CHECK (length(source_record_id) BETWEEN 1 AND 200),
    target_kind         text NOT NULL CHECK (target_kind ~ '^[a-z][a-z_]{1,39}$'),
    payload             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    address             text CHECK (address IS NULL OR length(address) BETWEEN 1 AND 500),
    source_region_code  text CHECK (source_region_code ~ '^[0-9A-Za-z]{2,24}$'),
    geom                geometry(Point, 4490),
    geom_3857           geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    location_source     text CHECK (location_source IN ('source', 'geocoded')),
    h3_r9               bigint,
    path                ltree NOT NULL,
    region_id           bigint REFERENCES region(id),
    status              pooled_record_status NOT NULL DEFAULT 'pending',
    -- Seam for the ETL import: the object a claimed record became.
    imported_kind       text,
    imported_id         bigint,
    ingested_by         bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    version             integer NOT NULL DEFAULT 1,
    UNIQUE (source_department, source_record_id),
    CHECK ((geom IS NULL) = (location_source IS NULL)),
    CHECK ((status = 'imported') = (imported_id IS NOT NULL AND imported_kind IS NOT NULL))
);
CREATE INDEX pooled_record_geom ON pooled_record USING gist (geom);
CREATE INDEX pooled_record_geom_3857 ON pooled_record USING gist (geom_3857);
CREATE INDEX pooled_record_path ON pooled_record USING gist (path);
CREATE INDEX pooled_record_status ON pooled_record (status);
CREATE INDEX pooled_record_h3_r9 ON pooled_record (h3_r9);
CREATE TRIGGER pooled_record_location BEFORE INSERT OR UPDATE OF geom ON pooled_record
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.set_location();
SELECT gridgov_meta.enable_scope_rls('pooled_record');

-- The queue.
CREATE TABLE claim_item (
    id                  bigserial PRIMARY KEY,
    reason              claim_reason NOT NULL,
    origin_reason       claim_reason NOT NULL,
    subject_kind        text REFERENCES gridgov_meta.claim_subject_kind(kind),
    subject_id          bigint,
    pooled_record_id    bigint REFERENCES pooled_record(id),
    -- The region that must act now.
    path                ltree NOT NULL,
    status              claim_status NOT NULL DEFAULT 'open',
    claimed_region_id   bigint REFERENCES region(id),
    claimed_code        text,
    claimed_by          bigint,
    claimed_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    version             integer NOT NULL DEFAULT 1,
    CHECK ((subject_kind IS NOT NULL AND subject_id IS NOT NULL AND pooled_record_id IS NULL)
           OR (subject_kind IS NULL AND subject_id IS NULL AND pooled_record_id IS NOT NULL)),
    CHECK ((status = 'claimed') = (claimed_region_id IS NOT NULL AND claimed_code IS NOT NULL))
);
-- At most one unsettled item per subject (enqueueing twice must not duplicate work).
CREATE UNIQUE INDEX claim_item_subject_unsettled ON claim_item (subject_kind, subject_id)
    WHERE status <> 'claimed' AND subject_kind IS NOT NULL;
CREATE UNIQUE INDEX claim_item_pooled_unsettled ON claim_item (pooled_record_id)
    WHERE status <> 'claimed' AND pooled_record_id IS NOT NULL;
CREATE INDEX claim_item_subject ON claim_item (subject_kind, subject_id);
CREATE INDEX claim_item_pooled ON claim_item (pooled_record_id);
CREATE INDEX claim_item_path ON claim_item USING gist (path);
CREATE INDEX claim_item_status_reason ON claim_item (status, reason);

-- Candidate grids of an item: one row each, never a delimited list. region_id has no foreign
-- key: region rows are versioned, never deleted, and a per-row key check would double the cost
-- of a bulk auto-claim.
CREATE TABLE claim_candidate (
    claim_item_id   bigint NOT NULL REFERENCES claim_item(id) ON DELETE CASCADE,
    region_code     text NOT NULL,
    region_id       bigint NOT NULL,
    path            ltree NOT NULL,
    overlap_share   double precision CHECK (overlap_share BETWEEN 0 AND 1),
    distance_m      double precision CHECK (distance_m >= 0),
    CHECK (overlap_share IS NOT NULL OR distance_m IS NOT NULL),
    PRIMARY KEY (claim_item_id, region_code)
);
CREATE INDEX claim_candidate_path ON claim_candidate USING gist (path);

-- History: every claim, decline, transfer and automatic claim, append-only. from_path is the
-- region that acted (the holder, or a candidate grid acting on the item), to_path the holder
-- afterwards; region_code the grid claimed or the region transferred to.
CREATE TABLE claim_action (
    id              bigserial PRIMARY KEY,
    claim_item_id   bigint NOT NULL REFERENCES claim_item(id),
    action          claim_action_kind NOT NULL,
    from_path       ltree NOT NULL,
    to_path         ltree NOT NULL,
    region_code     text,
    actor_user_id   bigint,
    note            text CHECK (note IS NULL OR length(note) <= 1000),
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claim_action_item ON claim_action (claim_item_id, at);
REVOKE UPDATE, DELETE, TRUNCATE ON claim_action FROM gridgov_app;

CREATE FUNCTION gridgov_meta.claim_action_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'claim_action is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER claim_action_append_only BEFORE UPDATE OR DELETE ON claim_action
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.claim_action_append_only();
CREATE TRIGGER claim_action_no_truncate BEFORE TRUNCATE ON claim_action
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_meta.claim_action_append_only();

-- Unsettled items with a candidate grid in the caller's scope. Read as the owner, so that the
-- claim_item policy below does not recurse through claim_candidate's policy.
CREATE FUNCTION gridgov_meta.claim_items_of_candidates() RETURNS SETOF bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT DISTINCT c.claim_item_id
    FROM claim_candidate c JOIN claim_item i ON i.id = c.claim_item_id
    WHERE c.path <@ ANY (gridgov_meta.scope()) AND i.status <> 'claimed'
$$;
REVOKE ALL ON FUNCTION gridgov_meta.claim_items_of_candidates() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.claim_items_of_candidates() TO gridgov_app;

-- Items: the holder's scope (read and write), plus candidate grids while unsettled (read, and
-- update only into their own scope, i.e. claim).
SELECT gridgov_meta.enable_scope_rls('claim_item');
CREATE POLICY candidate_read ON claim_item FOR SELECT
    USING (id IN (SELECT gridgov_meta.claim_items_of_candidates()));
CREATE POLICY candidate_update ON claim_item FOR UPDATE
    USING (id IN (SELECT gridgov_meta.claim_items_of_candidates()))
    WITH CHECK (path <@ ANY ((SELECT gridgov_meta.scope())));

-- Candidates and history follow their item.
ALTER TABLE claim_candidate ENABLE ROW LEVEL SECURITY;
CREATE POLICY item ON claim_candidate
    USING (path <@ ANY ((SELECT gridgov_meta.scope()))
           OR EXISTS (SELECT 1 FROM claim_item i WHERE i.id = claim_item_id));
ALTER TABLE claim_action ENABLE ROW LEVEL SECURITY;
CREATE POLICY item ON claim_action
    USING (EXISTS (SELECT 1 FROM claim_item i WHERE i.id = claim_item_id))
    WITH CHECK (EXISTS (SELECT 1 FROM claim_item i WHERE i.id = claim_item_id));

-- A pooled record is also readable by whoever sees its item.
CREATE POLICY claim_item_read ON pooled_record FOR SELECT
    USING (EXISTS (SELECT 1 FROM claim_item i WHERE i.pooled_record_id = pooled_record.id));

-- Decline (退回): the acting region gives the item up. The holder sends it to its parent
-- region; a candidate grid only strikes itself off, leaving the item with its holder. Runs as
-- the owner because the item leaves the caller's scope; the caller must see the item and act
-- from a region in its scope. Returns the new holder path.
CREATE FUNCTION gridgov_meta.claim_decline(item bigint, seen_version integer, acting ltree,
                                           actor bigint, why text)
RETURNS ltree LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    it claim_item%ROWTYPE;
    target ltree;
BEGIN
    SELECT * INTO it FROM claim_item WHERE id = item FOR UPDATE;
    IF NOT FOUND OR NOT acting <@ ANY (gridgov_meta.scope())
       OR NOT (acting = it.path OR (acting <@ it.path AND EXISTS (
               SELECT 1 FROM claim_candidate c
               WHERE c.claim_item_id = item AND c.path <@ acting))) THEN
        RAISE EXCEPTION 'no such claim item' USING ERRCODE = 'GG404', DETAIL = 'item_id';
    END IF;
    IF it.status = 'claimed' THEN
        RAISE EXCEPTION 'already claimed' USING ERRCODE = 'GG409', DETAIL = it.claimed_code;
    END IF;
    IF it.version <> seen_version THEN
        RAISE EXCEPTION 'the item changed since it was read' USING ERRCODE = 'GG409',
            DETAIL = 'version';
    END IF;
    IF acting = it.path THEN
        IF nlevel(it.path) <= 1 THEN
            RAISE EXCEPTION 'there is no region above % to return it to', it.path
                USING ERRCODE = 'GG422', DETAIL = 'item_id';
        END IF;
        target := subpath(it.path, 0, nlevel(it.path) - 1);
    ELSE
        target := it.path;
    END IF;
    DELETE FROM claim_candidate WHERE claim_item_id = item AND path <@ acting;
    INSERT INTO claim_action (claim_item_id, action, from_path, to_path, actor_user_id, note)
    VALUES (item, 'decline', acting, target, actor, why);
    UPDATE claim_item SET path = target, status = 'declined', reason = 'declined',
                          version = version + 1, updated_at = now()
    WHERE id = item;
    RETURN target;
END
$$;
REVOKE ALL ON FUNCTION gridgov_meta.claim_decline(bigint, integer, ltree, bigint, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.claim_decline(bigint, integer, ltree, bigint, text)
    TO gridgov_app;

-- Candidates for the caller's open items (its own scope, oldest first, at most lim; NULL means
-- all) that have a geometry but no candidates yet: points by containment, polygons with their
-- share of area. Only grids under the item's holder count. Runs as the owner because this join
-- is the hot path of auto-claim and, under row-level security, the app role cannot use the GiST
-- indexes (PostGIS operators are not LEAKPROOF, so they may not run before the policy).
-- Returns the number of candidates added.
CREATE FUNCTION gridgov_meta.claim_locate_open(lim integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    bare bigint[];
    k record;
    n integer;
    m integer;
BEGIN
    -- Chosen first, in its own statement: an insert that also scans claim_candidate for
    -- "no candidates yet" re-reads its own growing heap on every row while the table is small.
    SELECT coalesce(array_agg(t.id), '{}') INTO bare
    FROM (SELECT i.id FROM claim_item i
          WHERE i.status = 'open' AND i.path <@ ANY ((SELECT gridgov_meta.scope()))
          ORDER BY i.id LIMIT lim) t
    WHERE NOT EXISTS (SELECT 1 FROM claim_candidate c WHERE c.claim_item_id = t.id);
    INSERT INTO claim_candidate (claim_item_id, region_code, region_id, path, distance_m)
    SELECT i.id, g.code, g.id, g.path, 0
    FROM unnest(bare) AS b(id)
    JOIN claim_item i ON i.id = b.id
    JOIN pooled_record p ON p.id = i.pooled_record_id
    JOIN region g ON g.geom && p.geom AND ST_Intersects(g.geom, p.geom)
    WHERE p.geom IS NOT NULL AND g.valid_to IS NULL
      AND g.level = 'grid' AND g.grid_type IS DISTINCT FROM 'dedicated'
      -- IS TRUE keeps the planner from joining every grid to every item held above it
      -- through the path index (a city-held batch makes that a full cross product).
      AND (g.path <@ i.path) IS TRUE;
    GET DIAGNOSTICS n = ROW_COUNT;
    FOR k IN SELECT kind, table_name FROM gridgov_meta.claim_subject_kind ORDER BY kind LOOP
        EXECUTE format($q$
            INSERT INTO claim_candidate (claim_item_id, region_code, region_id, path, distance_m,
                                         overlap_share)
            SELECT i.id, g.code, g.id, g.path, 0,
                   CASE WHEN ST_Dimension(s.geom) = 2 THEN
                       least(1.0, ST_Area(ST_Intersection(g.geom, s.geom)::geography)
                                  / nullif(ST_Area(s.geom::geography), 0)) END
            FROM unnest($1) AS b(id)
            JOIN claim_item i ON i.id = b.id
            JOIN %s s ON s.id = i.subject_id
            JOIN region g ON g.geom && s.geom AND ST_Intersects(g.geom, s.geom)
            WHERE i.subject_kind = $2 AND s.geom IS NOT NULL
              AND g.valid_to IS NULL AND g.level = 'grid'
              AND g.grid_type IS DISTINCT FROM 'dedicated' AND (g.path <@ i.path) IS TRUE
        $q$, k.table_name) USING bare, k.kind;
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION gridgov_meta.claim_locate_open(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.claim_locate_open(integer) TO gridgov_app;

-- Carry items' state to their subjects: a pooled record mirrors its item's status, and a
-- claimed subject (pooled record or base-data row) takes the claimed grid's path and region.
-- Runs as the owner because a grid may claim a row the trigger had put in the neighbouring
-- grid; it only ever copies what the (RLS-checked) items say, so calling it for any ids is
-- harmless. Importing claimed pooled records into their target tables is the ETL's job.
CREATE FUNCTION gridgov_meta.claim_sync(items bigint[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    k record;
    n integer := 0;
    m integer;
    bump text;
BEGIN
    UPDATE pooled_record p
    SET status = CASE i.status WHEN 'open' THEN 'pending'::pooled_record_status
                               ELSE i.status::text::pooled_record_status END,
        path = CASE WHEN i.status = 'claimed' THEN i.path ELSE p.path END,
        region_id = CASE WHEN i.status = 'claimed' THEN i.claimed_region_id ELSE p.region_id END,
        version = p.version + 1, updated_at = now()
    FROM unnest(items) AS b(id) JOIN claim_item i ON i.id = b.id
    WHERE p.id = i.pooled_record_id AND p.status <> 'imported'
      AND (p.status::text IS DISTINCT FROM
               CASE i.status WHEN 'open' THEN 'pending' ELSE i.status::text END
           OR (i.status = 'claimed' AND p.path IS DISTINCT FROM i.path));
    GET DIAGNOSTICS n = ROW_COUNT;
    FOR k IN
        SELECT DISTINCT s.kind, s.table_name
        FROM unnest(items) AS b(id) JOIN claim_item i ON i.id = b.id
        JOIN gridgov_meta.claim_subject_kind s ON s.kind = i.subject_kind
        WHERE i.status = 'claimed'
    LOOP
        bump := '';
        IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = k.table_name
                   AND attname = 'version' AND NOT attisdropped) THEN
            bump := bump || ', version = t.version + 1';
        END IF;
        IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = k.table_name
                   AND attname = 'updated_at' AND NOT attisdropped) THEN
            bump := bump || ', updated_at = now()';
        END IF;
        EXECUTE format(
            'UPDATE %s t SET path = i.path, region_id = i.claimed_region_id%s '
            'FROM unnest($1) AS b(id) JOIN claim_item i ON i.id = b.id '
            'WHERE i.status = ''claimed'' '
            'AND i.subject_kind = $2 AND t.id = i.subject_id AND t.path IS DISTINCT FROM i.path',
            k.table_name, bump)
        USING items, k.kind;
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION gridgov_meta.claim_sync(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.claim_sync(bigint[]) TO gridgov_app;
