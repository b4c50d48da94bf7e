-- Vector tiles: the tiles schema, change tracking for the tile cache, region outlines
-- pre-simplified per zoom band, and H3 cell outlines for heat layers. The tile functions
-- themselves (tiles.<layer>(z, x, y, query json)) live in sql/postgis/functions/100_tiles_*.sql.

CREATE SCHEMA tiles;
GRANT USAGE ON SCHEMA tiles TO gridgov_app;

-- Change tracking ----------------------------------------------------------------------------
-- Servers cache tiles in memory under a version kept per (table, z10 tile). A write bumps the
-- versions of the z10 tiles its rows' old and new geometries touch and announces them with
-- NOTIFY gridgov_tiles, so every server process drops exactly the affected tiles. Versions are
-- stored, so processes started at different times (and the tile seeder) agree on them.
-- x = y = -1 is a table-wide epoch (TRUNCATE, or a write touching too many tiles).

CREATE TABLE tiles.tile_version (
    tbl     text NOT NULL,
    x       integer NOT NULL CHECK (x BETWEEN -1 AND 1023),
    y       integer NOT NULL CHECK (y BETWEEN -1 AND 1023),
    version bigint NOT NULL,
    PRIMARY KEY (tbl, x, y)
);
GRANT SELECT ON tiles.tile_version TO gridgov_app;

-- Tiles touched by the current transaction, bumped once at commit. Holding the version row
-- locks only during commit (a deferred trigger) keeps concurrent writers in one z10 tile from
-- queueing behind each other's whole transaction. Unlogged: a crash loses only rows of
-- transactions that never committed.
CREATE UNLOGGED TABLE tiles.pending (
    xid     xid8 NOT NULL,
    tbl     text NOT NULL,
    x       integer NOT NULL,
    y       integer NOT NULL,
    PRIMARY KEY (xid, tbl, x, y)
);

-- Margin added around a changed geometry before finding its z10 tiles, in EPSG:3857 metres:
-- an eighth of a z10 tile (~4.9 km). It covers what a row can draw outside its own bounding
-- box on a tile at z >= 10: the tile buffer (64/4096 of a tile), simplified outlines (<= 20 m),
-- H3 r7 hexagons around a building's centroid (<= 2.4 km at 53°N) and aggregated clusters.
-- tiles/cache.py assumes this value (Z10_MARGIN_TILES = 1/8): change both together.
CREATE FUNCTION tiles.z10_margin() RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 4891.96981025128::double precision $$;

-- The z10 tile span (x0..x1, y0..y1) of a bounding box expanded by the margin.
CREATE FUNCTION tiles.z10_span(box box2d, OUT x0 integer, OUT x1 integer, OUT y0 integer,
                               OUT y1 integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT greatest(0, floor((ST_XMin(box) - m + o) / w)::integer),
           least(1023, floor((ST_XMax(box) + m + o) / w)::integer),
           greatest(0, floor((o - ST_YMax(box) - m) / w)::integer),
           least(1023, floor((o - ST_YMin(box) + m) / w)::integer)
    FROM (SELECT 20037508.342789244 AS o, 39135.75848201024 AS w, tiles.z10_margin() AS m) c
$$;

-- Statement-level trigger of tracked tables: record the z10 tiles of every changed row (old and
-- new geometry) as pending for this transaction. Set-based over the transition tables, so a
-- bulk load of a million rows costs one pass, not a million trigger calls.
CREATE FUNCTION tiles.note_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    src text;
BEGIN
    src := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT geom_3857 FROM new_rows'
        WHEN 'DELETE' THEN 'SELECT geom_3857 FROM old_rows'
        ELSE 'SELECT geom_3857 FROM old_rows UNION ALL SELECT geom_3857 FROM new_rows' END;
    -- Transition tables are visible to EXECUTE inside the trigger function.
    EXECUTE format($q$
        WITH spans AS (
            SELECT DISTINCT s.x0, s.x1, s.y0, s.y1
            FROM (%s) r(g), LATERAL tiles.z10_span(Box2D(g)) s WHERE g IS NOT NULL
        ), touched AS (
            SELECT DISTINCT gx AS x, gy AS y
            FROM spans, generate_series(x0, x1) gx, generate_series(y0, y1) gy
        ), capped AS (
            SELECT x, y FROM touched WHERE (SELECT count(*) FROM touched) <= 2000
            UNION ALL
            SELECT -1, -1 WHERE (SELECT count(*) FROM touched) > 2000
        )
        INSERT INTO tiles.pending (xid, tbl, x, y)
        SELECT pg_current_xact_id(), %L, x, y FROM capped
        ON CONFLICT DO NOTHING$q$, src, TG_TABLE_NAME);
    RETURN NULL;
END
$$;

-- TRUNCATE empties every tile of the table: bump its epoch.
CREATE FUNCTION tiles.note_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO tiles.pending (xid, tbl, x, y)
    VALUES (pg_current_xact_id(), TG_TABLE_NAME, -1, -1) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

-- At commit: bump the versions of this transaction's pending tiles (in one global order, so
-- two committing writers never deadlock) and announce them. The deferred trigger fires once
-- per pending row; the first call does all the work and the others find nothing left.
CREATE FUNCTION tiles.flush_pending() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    r record;
    cur text := NULL;
    items text[] := '{}';
BEGIN
    FOR r IN
        WITH mine AS (
            DELETE FROM tiles.pending WHERE xid = pg_current_xact_id() RETURNING tbl, x, y
        ), bumped AS (
            INSERT INTO tiles.tile_version AS v (tbl, x, y, version)
            SELECT tbl, x, y, 1 FROM mine ORDER BY tbl, x, y
            ON CONFLICT (tbl, x, y) DO UPDATE SET version = v.version + 1
            RETURNING v.tbl, v.x, v.y, v.version
        )
        SELECT * FROM bumped ORDER BY tbl, x, y
    LOOP
        -- NOTIFY payloads are limited to 8000 bytes: ~300 tiles per message.
        IF cur IS DISTINCT FROM r.tbl OR cardinality(items) >= 300 THEN
            IF cur IS NOT NULL THEN
                PERFORM pg_notify('gridgov_tiles', json_build_object(
                    't', cur, 'v', array_to_json(items)::json)::text);
            END IF;
            cur := r.tbl;
            items := '{}';
        END IF;
        items := items || format('%s,%s,%s', r.x, r.y, r.version);
    END LOOP;
    IF cur IS NOT NULL THEN
        PERFORM pg_notify('gridgov_tiles', json_build_object(
            't', cur, 'v', array_to_json(items)::json)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER pending_flush AFTER INSERT ON tiles.pending
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tiles.flush_pending();

-- Put a table with a geom_3857 column under change tracking: one statement-level trigger per
-- event (transition tables allow only one event per trigger) and one for TRUNCATE. A new tiled
-- table (events, patrols) calls this once in its migration.
CREATE FUNCTION tiles.track_changes(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = tbl);
BEGIN
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_changes()',
                   name || '_tiles_ins', tbl);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows '
                   'NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_changes()',
                   name || '_tiles_upd', tbl);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_changes()',
                   name || '_tiles_del', tbl);
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_truncate()',
                   name || '_tiles_trunc', tbl);
END
$$;

SELECT tiles.track_changes('region');
SELECT tiles.track_changes('building');
SELECT tiles.track_changes('key_place');
SELECT tiles.track_changes('city_component');

-- Credentials: tile servers keep resolved credentials in memory for a few seconds so that a
-- cached tile needs no database round trip; a revoked session or token, a deactivated account
-- or changed roles, scopes or grants tell them to forget at once.
CREATE FUNCTION tiles.note_auth_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM pg_notify('gridgov_tiles', '{"auth": true}');
    RETURN NULL;
END
$$;
CREATE TRIGGER web_session_tiles_auth AFTER UPDATE ON web_session FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at)
    EXECUTE FUNCTION tiles.note_auth_change();
CREATE TRIGGER web_session_tiles_auth_del AFTER DELETE ON web_session
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_auth_change();
CREATE TRIGGER api_token_tiles_auth AFTER UPDATE ON api_token FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.permissions IS DISTINCT FROM NEW.permissions
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
    EXECUTE FUNCTION tiles.note_auth_change();
CREATE TRIGGER api_token_tiles_auth_del AFTER DELETE ON api_token
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_auth_change();
CREATE TRIGGER app_user_tiles_auth AFTER UPDATE ON app_user FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active
          OR OLD.password_hash IS DISTINCT FROM NEW.password_hash)
    EXECUTE FUNCTION tiles.note_auth_change();
CREATE TRIGGER app_user_tiles_auth_del AFTER DELETE ON app_user
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_auth_change();
CREATE TRIGGER user_role_tiles_auth AFTER INSERT OR UPDATE OR DELETE ON user_role
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_auth_change();
CREATE TRIGGER user_scope_tiles_auth AFTER INSERT OR UPDATE OR DELETE ON user_scope
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_auth_change();
CREATE TRIGGER role_permission_tiles_auth AFTER INSERT OR UPDATE OR DELETE ON role_permission
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_auth_change();

-- Region outlines pre-simplified per zoom band ---------------------------------------------
-- Each level is drawn over a range of zooms; below z14 its outline comes from a copy simplified
-- for the band (tolerance: half a screen pixel of a 512 px tile at the band's highest zoom),
-- from z14 on from region.geom_3857 itself. Only bands where a level is drawn get a copy.

-- Zooms at which a level is drawn by default.
CREATE FUNCTION tiles.region_level_minzoom(l region_level) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE l WHEN 'city' THEN 0 WHEN 'county' THEN 6 WHEN 'township' THEN 9
                  WHEN 'village' THEN 11 WHEN 'grid' THEN 13 ELSE 15 END
$$;
CREATE FUNCTION tiles.region_level_maxzoom(l region_level) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE l WHEN 'city' THEN 8 WHEN 'county' THEN 11 WHEN 'township' THEN 13
                  WHEN 'village' THEN 15 ELSE 22 END
$$;

-- Zoom band of a zoom: 0 (z <= 7), 1 (8-9), 2 (10-11), 3 (12-13); NULL from z14 (raw outline).
CREATE FUNCTION tiles.region_band(z integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN z <= 7 THEN 0 WHEN z <= 9 THEN 1 WHEN z <= 11 THEN 2
                WHEN z <= 13 THEN 3 ELSE NULL END
$$;

CREATE FUNCTION tiles.region_band_maxzoom(band integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 7 + 2 * band $$;

CREATE FUNCTION tiles.region_band_minzoom(band integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT CASE WHEN band = 0 THEN 0 ELSE 6 + 2 * band END $$;

-- Whether the band holds simplified copies of a level (its zooms overlap the level's).
CREATE FUNCTION tiles.region_band_has(band integer, l region_level) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT band IS NOT NULL
       AND tiles.region_band_minzoom(band) <= tiles.region_level_maxzoom(l)
       AND tiles.region_band_maxzoom(band) >= tiles.region_level_minzoom(l)
$$;

CREATE FUNCTION tiles.region_band_tolerance(band integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 40075016.685578486 / (2 ^ tiles.region_band_maxzoom(band)) / 1024
$$;

CREATE TABLE tiles.region_outline (
    region_id   bigint NOT NULL REFERENCES region(id) ON DELETE CASCADE,
    band        smallint NOT NULL CHECK (band BETWEEN 0 AND 3),
    code        text NOT NULL,
    name        text NOT NULL,
    level       region_level NOT NULL,
    grid_type   grid_type,
    path        ltree NOT NULL,
    geom_3857   geometry(MultiPolygon, 3857) NOT NULL,
    PRIMARY KEY (region_id, band)
);
-- One index per band: at low zoom every band covers the same ground, so a shared index would
-- return each outline four times before the band filter.
CREATE INDEX region_outline_b0 ON tiles.region_outline USING gist (geom_3857) WHERE band = 0;
CREATE INDEX region_outline_b1 ON tiles.region_outline USING gist (geom_3857) WHERE band = 1;
CREATE INDEX region_outline_b2 ON tiles.region_outline USING gist (geom_3857) WHERE band = 2;
CREATE INDEX region_outline_b3 ON tiles.region_outline USING gist (geom_3857) WHERE band = 3;
CREATE INDEX region_outline_path ON tiles.region_outline USING gist (path);
GRANT SELECT ON tiles.region_outline TO gridgov_app;
REVOKE INSERT, UPDATE, DELETE ON tiles.region_outline FROM gridgov_app;
SELECT gridgov_meta.enable_scope_rls('tiles.region_outline');

-- Keep the outlines in step with region writes (current versions only). Statement-level over
-- the transition tables, so loading a whole city simplifies in one pass.
CREATE FUNCTION tiles.refresh_region_outlines() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM tiles.region_outline o USING old_rows r WHERE o.region_id = r.id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO tiles.region_outline (region_id, band, code, name, level, grid_type, path,
                                          geom_3857)
        SELECT r.id, b.band, r.code, r.name, r.level, r.grid_type, r.path,
               ST_Multi(ST_SimplifyPreserveTopology(r.geom_3857,
                                                    tiles.region_band_tolerance(b.band)))
        FROM new_rows r, generate_series(0, 3) b(band)
        WHERE r.valid_to IS NULL AND tiles.region_band_has(b.band, r.level);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER region_outline_ins AFTER INSERT ON region REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.refresh_region_outlines();
CREATE TRIGGER region_outline_upd AFTER UPDATE ON region
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.refresh_region_outlines();
CREATE TRIGGER region_outline_del AFTER DELETE ON region REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.refresh_region_outlines();

INSERT INTO tiles.region_outline (region_id, band, code, name, level, grid_type, path, geom_3857)
SELECT r.id, b.band, r.code, r.name, r.level, r.grid_type, r.path,
       ST_Multi(ST_SimplifyPreserveTopology(r.geom_3857, tiles.region_band_tolerance(b.band)))
FROM region r, generate_series(0, 3) b(band)
WHERE r.valid_to IS NULL AND tiles.region_band_has(b.band, r.level);

-- H3 cell outlines -------------------------------------------------------------------------
-- There is no h3-pg on Debian, so heat layers look hexagons up here; tiles/h3grid.py fills the
-- cells covering the regions (and any cell a row names that is still missing). A heat tile
-- draws a cell without an outline as a point at its members' centre.
CREATE TABLE tiles.h3_cell (
    cell        bigint PRIMARY KEY,
    res         smallint NOT NULL CHECK (res BETWEEN 0 AND 15),
    geom_3857   geometry(Polygon, 3857) NOT NULL
);
CREATE INDEX h3_cell_geom ON tiles.h3_cell USING gist (geom_3857);
GRANT SELECT, INSERT ON tiles.h3_cell TO gridgov_app;
SELECT tiles.track_changes('tiles.h3_cell');

-- Names this database in the shared disk cache (with its name and oid), so that tiles of two
-- databases served from one data directory never meet.
CREATE TABLE tiles.cache_token (
    token   text PRIMARY KEY DEFAULT replace(gen_random_uuid()::text, '-', '')
);
INSERT INTO tiles.cache_token DEFAULT VALUES;
GRANT SELECT ON tiles.cache_token TO gridgov_app;
