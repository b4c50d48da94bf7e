-- Regions: one versioned tree for every level, city › county › township › village › grid ›
-- micro-grid. A region's identity is its code (统计用区划代码; grid codes extend their
-- village's code); each boundary change closes the current row (valid_to) and adds a new
-- version, so past data keeps the region row it had.

CREATE TYPE region_level AS ENUM ('city', 'county', 'township', 'village', 'grid', 'micro_grid');
CREATE TYPE grid_type AS ENUM ('general', 'key', 'dedicated');

CREATE TABLE region (
    id              bigserial PRIMARY KEY,
    code            text NOT NULL CHECK (code ~ '^[0-9A-Za-z]{2,24}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    level           region_level NOT NULL,
    parent_code     text,
    path            ltree NOT NULL,
    geom            geometry(MultiPolygon, 4490) NOT NULL CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    -- Tiles read pre-projected geometry: a per-row ST_Transform costs ~2.4x on dense tiles.
    geom_3857       geometry(MultiPolygon, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    label_point     geometry(Point, 4490) GENERATED ALWAYS AS (ST_PointOnSurface(geom)) STORED,
    area_km2        double precision GENERATED ALWAYS AS (ST_Area(geom::geography) / 1e6) STORED,
    virtual         boolean NOT NULL DEFAULT false,
    grid_type       grid_type,
    households      integer CHECK (households >= 0),
    party_members   integer CHECK (party_members >= 0),
    population      integer CHECK (population >= 0),
    leader_name     text,
    leader_phone    text,
    intro           text,
    attributes      jsonb NOT NULL DEFAULT '{}',
    valid_from      timestamptz NOT NULL DEFAULT now(),
    valid_to        timestamptz,
    version         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    CHECK ((grid_type IS NULL) = (level NOT IN ('grid', 'micro_grid'))),
    CHECK (level = 'city' OR parent_code IS NOT NULL)
);

-- One current version per code; the path is the same for every version of a code.
CREATE UNIQUE INDEX region_code_current ON region (code) WHERE valid_to IS NULL;
CREATE UNIQUE INDEX region_code_version ON region (code, version);
CREATE INDEX region_path ON region USING gist (path);
CREATE INDEX region_parent ON region (parent_code) WHERE valid_to IS NULL;
CREATE INDEX region_geom ON region USING gist (geom) WHERE valid_to IS NULL;
CREATE INDEX region_geom_all ON region USING gist (geom);
CREATE INDEX region_geom_3857 ON region USING gist (geom_3857) WHERE valid_to IS NULL;
CREATE INDEX region_level_current ON region (level) WHERE valid_to IS NULL;
CREATE INDEX region_name_trgm ON region USING gin (name gin_trgm_ops);

SELECT gridgov_meta.enable_scope_rls('region');

-- Depth of each level in the path, for choosing the smallest containing region.
CREATE FUNCTION region_level_rank(l region_level) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE l WHEN 'city' THEN 1 WHEN 'county' THEN 2 WHEN 'township' THEN 3
                  WHEN 'village' THEN 4 WHEN 'grid' THEN 5 ELSE 6 END
$$;

-- The smallest current region of the general hierarchy that contains a geometry (its point on
-- surface), whatever the caller's scope: located rows store this region's id and path, which
-- the server derives and never takes from the client. Dedicated grids (专属网格) overlap village
-- grids and are skipped here; routing looks them up separately.
CREATE FUNCTION gridgov_meta.locate(g geometry)
RETURNS TABLE (region_id bigint, path ltree, code text, level region_level)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT r.id, r.path, r.code, r.level
    FROM region r
    WHERE r.valid_to IS NULL
      AND r.geom && ST_PointOnSurface(g)
      AND ST_Intersects(r.geom, ST_PointOnSurface(g))
      AND r.grid_type IS DISTINCT FROM 'dedicated'
    ORDER BY region_level_rank(r.level) DESC, r.area_km2 ASC
    LIMIT 1
$$;
REVOKE ALL ON FUNCTION gridgov_meta.locate(geometry) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.locate(geometry) TO gridgov_app;

-- Trigger for located tables (columns geom, path, region_id): derive path and region_id from
-- the geometry on every insert and every geometry change. Rows outside every region keep the
-- path they were given (e.g. the region code a pooled record names); none at all is an error.
CREATE FUNCTION gridgov_meta.set_location() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    hit record;
BEGIN
    IF NEW.geom IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.geom IS DISTINCT FROM OLD.geom
                                  OR NEW.path IS NULL) THEN
        SELECT * INTO hit FROM gridgov_meta.locate(NEW.geom);
        IF FOUND THEN
            NEW.path := hit.path;
            NEW.region_id := hit.region_id;
        END IF;
    END IF;
    IF NEW.path IS NULL THEN
        RAISE EXCEPTION 'location lies in no region' USING ERRCODE = 'GG422',
            DETAIL = 'geometry';
    END IF;
    RETURN NEW;
END
$$;

-- Tolerance for slivers in real boundary files: a child may stick out of its parent, and
-- siblings may overlap, by at most this many square metres or this share of the child's area.
CREATE FUNCTION gridgov_meta.sliver_tolerance_m2(child geometry) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT greatest(
        coalesce(nullif(current_setting('gridgov.sliver_m2', true), '')::double precision, 200),
        coalesce(nullif(current_setting('gridgov.sliver_share', true), '')::double precision,
                 0.002) * ST_Area(child::geography))
$$;

-- Nesting and overlap checks on every write of a current region version. Runs as the owner
-- (SECURITY DEFINER) so that it sees neighbours outside the writer's scope; errors name the
-- other region in DETAIL so the service can say which.
CREATE FUNCTION gridgov_meta.check_region() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    parent region%ROWTYPE;
    other record;
    tol double precision;
    outside double precision;
BEGIN
    IF NEW.valid_to IS NOT NULL THEN
        RETURN NEW;
    END IF;
    IF NEW.level = 'city' THEN
        IF NEW.path <> text2ltree(NEW.code) THEN
            RAISE EXCEPTION 'path of a city must be its code' USING ERRCODE = 'GG422',
                DETAIL = 'path';
        END IF;
        RETURN NEW;
    END IF;
    SELECT * INTO parent FROM region WHERE code = NEW.parent_code AND valid_to IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'parent region % does not exist', NEW.parent_code
            USING ERRCODE = 'GG422', DETAIL = 'parent_code';
    END IF;
    IF region_level_rank(parent.level) >= region_level_rank(NEW.level) THEN
        RAISE EXCEPTION 'a % cannot sit under a %', NEW.level, parent.level
            USING ERRCODE = 'GG422', DETAIL = 'level';
    END IF;
    IF NEW.path <> parent.path || text2ltree(NEW.code) THEN
        RAISE EXCEPTION 'path must be the parent''s path followed by the code'
            USING ERRCODE = 'GG422', DETAIL = 'path';
    END IF;
    IF current_setting('gridgov.skip_region_checks', true) = 'on'
       AND session_user = 'gridgov_owner' THEN
        RETURN NEW;  -- bulk loads of generated or already-checked boundaries
    END IF;
    tol := gridgov_meta.sliver_tolerance_m2(NEW.geom);
    outside := ST_Area(ST_Difference(NEW.geom, parent.geom)::geography);
    IF outside > tol THEN
        RAISE EXCEPTION '% % lies % m² outside its parent % %', NEW.code, NEW.name,
            round(outside::numeric), parent.code, parent.name
            USING ERRCODE = 'GG409', DETAIL = parent.code;
    END IF;
    IF NEW.grid_type IS DISTINCT FROM 'dedicated' THEN
        FOR other IN
            SELECT s.code, s.name,
                   ST_Area(ST_Intersection(s.geom, NEW.geom)::geography) AS overlap
            FROM region s
            WHERE s.parent_code = NEW.parent_code AND s.valid_to IS NULL
              AND s.code <> NEW.code AND s.level = NEW.level
              AND s.grid_type IS DISTINCT FROM 'dedicated'
              AND s.geom && NEW.geom AND ST_Intersects(s.geom, NEW.geom)
        LOOP
            IF other.overlap > tol THEN
                RAISE EXCEPTION '% % overlaps % % by % m²', NEW.code, NEW.name, other.code,
                    other.name, round(other.overlap::numeric)
                    USING ERRCODE = 'GG409', DETAIL = other.code;
            END IF;
        END LOOP;
    END IF;
    -- A new boundary must still hold the children (a new version keeps the same code).
    FOR other IN
        SELECT c.code, c.name,
               ST_Area(ST_Difference(c.geom, NEW.geom)::geography) AS outside,
               gridgov_meta.sliver_tolerance_m2(c.geom) AS tol
        FROM region c
        WHERE c.parent_code = NEW.code AND c.valid_to IS NULL
    LOOP
        IF other.outside > other.tol THEN
            RAISE EXCEPTION 'the new boundary of % % leaves its child % % % m² outside',
                NEW.code, NEW.name, other.code, other.name, round(other.outside::numeric)
                USING ERRCODE = 'GG409', DETAIL = other.code;
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;

CREATE TRIGGER region_check BEFORE INSERT OR UPDATE OF geom, parent_code, path, level, valid_to
    ON region FOR EACH ROW EXECUTE FUNCTION gridgov_meta.check_region();
