-- Standard addresses (标准地址, 四标四实): county › township › village › road › door number ›
-- building › unit › room. Each door, building, unit and room is a row with its own point;
-- children copy the components above them from their parent (door → building → unit → room),
-- so one row carries its whole address and geocoding reads no joins. Roads are kept per
-- township in `road` (filled from the addresses by a trigger): the geocoder's gazetteer reads
-- road names from there to parse text such as 县前头12号 that has no road suffix.

CREATE TYPE address_level AS ENUM ('door', 'building', 'unit', 'room');

-- Roads (路/街/巷/弄) by township ---------------------------------------------------------------
CREATE TABLE road (
    id             bigserial PRIMARY KEY,
    township_code  text NOT NULL,
    name           text NOT NULL CONSTRAINT road_name_check CHECK (length(name) BETWEEN 2 AND 60),
    -- Roads have no geometry yet: the path is the township's.
    path           ltree NOT NULL,
    region_id      bigint REFERENCES region(id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    version        integer NOT NULL DEFAULT 1,
    CONSTRAINT road_township_name_key UNIQUE (township_code, name)
);
CREATE INDEX road_path ON road USING gist (path);
CREATE INDEX road_name_trgm ON road USING gin (name gin_trgm_ops);
SELECT gridgov_meta.enable_scope_rls('road');

-- Standard addresses ------------------------------------------------------------------------
CREATE TABLE standard_address (
    id             bigserial PRIMARY KEY,
    code           text NOT NULL
                   CONSTRAINT standard_address_code_check
                   CHECK (code ~ '^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$'),
    level          address_level NOT NULL,
    parent_id      bigint REFERENCES standard_address(id) ON DELETE RESTRICT,
    county_code    text NOT NULL,
    township_code  text NOT NULL,
    village_code   text,
    road           text CONSTRAINT standard_address_road_check CHECK (length(road) BETWEEN 2 AND 60),
    door_number    text NOT NULL
                   CONSTRAINT standard_address_door_number_check
                   CHECK (door_number ~ '^[0-9A-Z]{1,8}(-[0-9A-Z]{1,4})?$'),
    -- The leading number of the door (123 for 123-1): neighbouring doors for the geocoder.
    door_base      integer GENERATED ALWAYS AS (
                       CASE WHEN door_number ~ '^[0-9]{1,9}'
                            THEN substring(door_number FROM '^[0-9]{1,9}')::integer END) STORED,
    building       text CONSTRAINT standard_address_building_check CHECK (building ~ '^[0-9A-Z]{1,4}$'),
    unit           text CONSTRAINT standard_address_unit_check CHECK (unit ~ '^[0-9]{1,3}$'),
    room           text CONSTRAINT standard_address_room_check CHECK (room ~ '^[A-Z]?[0-9]{1,5}$'),
    -- Canonical text from geoserver.domain.address.format_address.
    full_text      text NOT NULL
                   CONSTRAINT standard_address_full_text_check CHECK (length(full_text) BETWEEN 2 AND 300),
    geom           geometry(Point, 4490) NOT NULL,
    geom_3857      geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    path           ltree NOT NULL,
    region_id      bigint REFERENCES region(id),
    h3_r9          bigint,
    -- Migration 0004 (buildings) adds the foreign key.
    building_id    bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    version        integer NOT NULL DEFAULT 1,
    CONSTRAINT standard_address_code_key UNIQUE (code),
    CONSTRAINT standard_address_level_check CHECK (CASE level
        WHEN 'door' THEN parent_id IS NULL AND building IS NULL AND unit IS NULL AND room IS NULL
        WHEN 'building' THEN parent_id IS NOT NULL AND building IS NOT NULL
                             AND unit IS NULL AND room IS NULL
        WHEN 'unit' THEN parent_id IS NOT NULL AND building IS NOT NULL AND unit IS NOT NULL
                         AND room IS NULL
        ELSE parent_id IS NOT NULL AND room IS NOT NULL END),
    -- Urban addresses hang off a road, rural ones (油岙村12号) off their village.
    CONSTRAINT standard_address_place_check CHECK (road IS NOT NULL OR village_code IS NOT NULL)
);

-- One row per address text. It also serves the geocoder's (township_code, road, door_number)
-- lookups; rural addresses without a road are told apart by their village.
CREATE UNIQUE INDEX standard_address_components_key ON standard_address
    (township_code, road, door_number, building, unit, room,
     (CASE WHEN road IS NULL THEN village_code END)) NULLS NOT DISTINCT;
-- Neighbouring doors on a road, and doors of a village, for geocoding candidates.
CREATE INDEX standard_address_road_door ON standard_address (township_code, road, door_base);
CREATE INDEX standard_address_village_door ON standard_address (village_code, door_base);
CREATE INDEX standard_address_road_trgm ON standard_address USING gin (road gin_trgm_ops);
CREATE INDEX standard_address_full_text_trgm ON standard_address USING gin (full_text gin_trgm_ops);
CREATE INDEX standard_address_parent ON standard_address (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX standard_address_geom ON standard_address USING gist (geom);
CREATE INDEX standard_address_geom_3857 ON standard_address USING gist (geom_3857);
CREATE INDEX standard_address_path ON standard_address USING gist (path);
CREATE INDEX standard_address_region ON standard_address (region_id);
CREATE INDEX standard_address_h3_r9 ON standard_address (h3_r9);
CREATE INDEX standard_address_building ON standard_address (building_id)
    WHERE building_id IS NOT NULL;

-- Location from the point, as on every located table. A bulk load by the owner that has already
-- computed path and region_id in bulk (the demo loader, millions of rows) may say so with
-- gridgov.trusted_location = 'on': one locate() per row would cost it most of an hour.
CREATE TRIGGER standard_address_location BEFORE INSERT OR UPDATE OF geom ON standard_address
    FOR EACH ROW
    WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
          OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.set_location();
SELECT gridgov_meta.enable_scope_rls('standard_address');

-- Every road an address names is a known road of its township. Runs as the owner: a grid
-- worker adding a door in their grid registers the road for the whole township. Statement
-- level with a transition table, so a bulk COPY registers its roads in one INSERT.
CREATE FUNCTION gridgov_meta.register_address_roads() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO road (township_code, name, path, region_id)
    SELECT DISTINCT ON (a.township_code, a.road) a.township_code, a.road, r.path, r.id
    FROM added a
    JOIN region r ON r.code = a.township_code AND r.valid_to IS NULL
    WHERE a.road IS NOT NULL
    ON CONFLICT (township_code, name) DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER standard_address_roads_insert AFTER INSERT ON standard_address
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_meta.register_address_roads();
CREATE TRIGGER standard_address_roads_update AFTER UPDATE ON standard_address
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_meta.register_address_roads();

-- Gazetteer for the address parser -----------------------------------------------------------
-- Division and road names are public (统计用区划代码) and the parser needs all of them to read
-- 鹿城区五马街道… whatever the caller's scope; the addresses themselves stay behind RLS.
CREATE FUNCTION gridgov_meta.gazetteer_divisions()
RETURNS TABLE (code text, name text, level text, parent_code text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT r.code, r.name, r.level::text, r.parent_code
    FROM region r
    WHERE r.valid_to IS NULL AND r.level IN ('county', 'township', 'village')
$$;

CREATE FUNCTION gridgov_meta.gazetteer_roads()
RETURNS TABLE (township_code text, name text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT r.township_code, r.name FROM road r
$$;

-- The gazetteer's version: the geocoder rebuilds its cached gazetteer when it changes. Any
-- statement writing regions, and any statement adding, renaming or removing roads, sets it to a
-- fresh number from a sequence: the row is transactional (a rolled-back change restores the old
-- number, and only committed changes are seen) while the numbers never repeat, so a cache built
-- inside a transaction that later rolled back can never be taken for a current one.
CREATE SEQUENCE gridgov_meta.gazetteer_version_seq;
CREATE TABLE gridgov_meta.gazetteer_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint NOT NULL
);
INSERT INTO gridgov_meta.gazetteer_state (version)
    VALUES (nextval('gridgov_meta.gazetteer_version_seq'));
REVOKE ALL ON gridgov_meta.gazetteer_state FROM gridgov_app;

CREATE FUNCTION gridgov_meta.bump_gazetteer() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- Road triggers pass the transition table's name: bump only when rows really changed, so
    -- address inserts that name known roads never queue on this row.
    IF TG_NARGS > 0 THEN
        IF NOT EXISTS (SELECT 1 FROM changed) THEN
            RETURN NULL;
        END IF;
    END IF;
    UPDATE gridgov_meta.gazetteer_state
    SET version = nextval('gridgov_meta.gazetteer_version_seq');
    RETURN NULL;
END
$$;
CREATE TRIGGER region_gazetteer AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON region
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_meta.bump_gazetteer();
CREATE TRIGGER road_gazetteer_insert AFTER INSERT ON road REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_meta.bump_gazetteer('rows');
CREATE TRIGGER road_gazetteer_update AFTER UPDATE ON road REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_meta.bump_gazetteer('rows');
CREATE TRIGGER road_gazetteer_delete AFTER DELETE ON road REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_meta.bump_gazetteer('rows');

CREATE FUNCTION gridgov_meta.gazetteer_version() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT version::text FROM gridgov_meta.gazetteer_state
$$;

-- Regions around a point ---------------------------------------------------------------------
-- Every current region containing a point, city first (dedicated grids included, flagged by
-- grid_type): the region chain of a reverse geocode. Names of regions are public; the rows that
-- sit in them stay behind RLS.
CREATE FUNCTION gridgov_meta.region_chain(g geometry)
RETURNS TABLE (code text, name text, level text, parent_code text, path text, grid_type text,
               virtual boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT r.code, r.name, r.level::text, r.parent_code, r.path::text, r.grid_type::text,
           r.virtual
    FROM region r
    WHERE r.valid_to IS NULL AND r.geom && g AND ST_Intersects(r.geom, g)
    ORDER BY region_level_rank(r.level), r.grid_type IS NOT DISTINCT FROM 'dedicated', r.code
$$;

-- The named current regions and how far a point lies outside each (0 inside), in metres: an
-- address's division codes must agree with its point, within a tolerance for slivers.
CREATE FUNCTION gridgov_meta.region_distances(codes text[], g geometry)
RETURNS TABLE (code text, name text, level text, parent_code text, path text,
               distance_m double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT r.code, r.name, r.level::text, r.parent_code, r.path::text,
           CASE WHEN ST_Intersects(r.geom, g) THEN 0.0
                ELSE ST_Distance(r.geom::geography, g::geography) END
    FROM region r
    WHERE r.valid_to IS NULL AND r.code = ANY (codes)
$$;

REVOKE ALL ON FUNCTION gridgov_meta.gazetteer_divisions(), gridgov_meta.gazetteer_roads(),
    gridgov_meta.gazetteer_version(), gridgov_meta.region_chain(geometry),
    gridgov_meta.region_distances(text[], geometry), gridgov_meta.register_address_roads(),
    gridgov_meta.bump_gazetteer() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.gazetteer_divisions(), gridgov_meta.gazetteer_roads(),
    gridgov_meta.gazetteer_version(), gridgov_meta.region_chain(geometry),
    gridgov_meta.region_distances(text[], geometry)
    TO gridgov_app;
