-- Regions layer: outlines ('regions') and label points ('region_labels') of the levels drawn at
-- a zoom (city at low zoom … grids and micro-grids at high zoom), or of the levels asked for
-- (query "level") that are not too fine for the zoom. Below z14 outlines come from the copies
-- pre-simplified per zoom band (tiles.region_outline); scope applies through RLS on both tables.
CREATE OR REPLACE FUNCTION tiles.regions(z integer, x integer, y integer, query json DEFAULT '{}')
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    env geometry := ST_TileEnvelope(z, x, y);
    -- labels are drawn across tile edges: take points from a wider margin
    label_env geometry := ST_TileEnvelope(z, x, y, margin => 256.0 / 4096);
    zband integer := tiles.region_band(z);
    wanted text[] := tiles.query_list(query, 'level');
    lim integer := tiles.query_limit(query, 5000);
    band_levels region_level[];
    raw_levels region_level[];
    all_levels region_level[];
    shapes bytea;
    labels bytea;
BEGIN
    SELECT array_agg(l) FILTER (WHERE tiles.region_band_has(zband, l)),
           array_agg(l) FILTER (WHERE NOT tiles.region_band_has(zband, l)),
           array_agg(l)
      INTO band_levels, raw_levels, all_levels
    FROM unnest(enum_range(NULL::region_level)) l
    WHERE CASE WHEN wanted IS NULL
               THEN z BETWEEN tiles.region_level_minzoom(l) AND tiles.region_level_maxzoom(l)
               ELSE l::text = ANY (wanted) AND z >= tiles.region_level_minzoom(l) END;
    IF all_levels IS NULL THEN
        RETURN ''::bytea;
    END IF;
    SELECT ST_AsMVT(t, 'regions', 4096, 'geom', 'id') INTO shapes FROM (
        SELECT * FROM (
            SELECT o.region_id AS id, o.code, o.name, o.level::text AS level,
                   o.grid_type::text AS grid_type,
                   ST_AsMVTGeom(o.geom_3857, env, 4096, 64, true) AS geom
            FROM tiles.region_outline o
            WHERE o.band = zband AND o.geom_3857 && env AND o.level = ANY (band_levels)
            UNION ALL
            SELECT r.id, r.code, r.name, r.level::text, r.grid_type::text,
                   ST_AsMVTGeom(r.geom_3857, env, 4096, 64, true)
            FROM region r
            WHERE r.valid_to IS NULL AND r.geom_3857 && env AND r.level = ANY (raw_levels)
            LIMIT lim
        ) s WHERE s.geom IS NOT NULL
    ) t;
    SELECT ST_AsMVT(t, 'region_labels', 4096, 'geom', 'id') INTO labels FROM (
        SELECT * FROM (
            SELECT r.id, r.code, r.name, r.level::text AS level,
                   ST_AsMVTGeom(ST_Transform(r.label_point, 3857), env, 4096, 256, true) AS geom
            FROM region r
            WHERE r.valid_to IS NULL AND r.geom_3857 && label_env AND r.level = ANY (all_levels)
              AND ST_Intersects(ST_Transform(r.label_point, 3857), label_env)
            LIMIT lim
        ) s WHERE s.geom IS NOT NULL
    ) t;
    RETURN coalesce(shapes, ''::bytea) || coalesce(labels, ''::bytea);
END
$$;
