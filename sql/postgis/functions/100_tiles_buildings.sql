-- Buildings layer (建筑物 footprints), filterable by category; scope applies through RLS.
CREATE OR REPLACE FUNCTION tiles.buildings(z integer, x integer, y integer,
                                           query json DEFAULT '{}')
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    env geometry := ST_TileEnvelope(z, x, y);
    categories text[] := tiles.query_list(query, 'category');
    lim integer := tiles.query_limit(query, 20000);
    mvt bytea;
BEGIN
    SELECT ST_AsMVT(t, 'buildings', 4096, 'geom', 'id') INTO mvt FROM (
        SELECT * FROM (
            SELECT b.id, b.code, b.name, b.category::text AS category, b.floors,
                   ST_AsMVTGeom(b.geom_3857, env, 4096, 64, true) AS geom
            FROM building b
            WHERE b.geom_3857 && env AND ST_Intersects(b.geom_3857, env)
              AND (categories IS NULL OR b.category::text = ANY (categories))
            LIMIT lim
        ) s WHERE s.geom IS NOT NULL
    ) t;
    RETURN coalesce(mvt, ''::bytea);
END
$$;

-- Building density on H3 hexagons (resolution by zoom), from the cell ids stored at write time.
-- A hexagon's count is of all its members in scope, also those outside the tile.
CREATE OR REPLACE FUNCTION tiles.heat_buildings(z integer, x integer, y integer,
                                                query json DEFAULT '{}')
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    env geometry := ST_TileEnvelope(z, x, y);
    hres integer := tiles.heat_resolution(z);
    reach geometry := tiles.heat_envelope(z, x, y);
    categories text[] := tiles.query_list(query, 'category');
    lim integer := tiles.query_limit(query, 20000);
    mvt bytea;
BEGIN
    SELECT ST_AsMVT(t, 'heat_buildings', 4096, 'geom', 'id') INTO mvt FROM (
        SELECT * FROM (
            SELECT c.cell AS id, to_hex(c.cell) AS h3, hres AS res, c.n AS count,
                   ST_AsMVTGeom(coalesce(h.geom_3857, c.centre), env, 4096, 64, true) AS geom
            FROM (
                SELECT tiles.heat_cell(hres, b.h3_r7, b.h3_r8, b.h3_r9) AS cell,
                       count(*) AS n,
                       ST_SetSRID(ST_Centroid(ST_Extent(b.geom_3857)::geometry), 3857) AS centre
                FROM building b
                WHERE b.geom_3857 && reach
                  AND (categories IS NULL OR b.category::text = ANY (categories))
                GROUP BY 1
            ) c
            LEFT JOIN tiles.h3_cell h ON h.cell = c.cell
            WHERE c.cell IS NOT NULL AND coalesce(h.geom_3857, c.centre) && env
            LIMIT lim
        ) s WHERE s.geom IS NOT NULL
    ) t;
    RETURN coalesce(mvt, ''::bytea);
END
$$;
