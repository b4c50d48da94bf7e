-- Key places (重点场所: points or premises outlines) and city components (城市部件: points).
-- Points come from a margin around the tile so that symbols crossing tile edges are drawn whole.
CREATE OR REPLACE FUNCTION tiles.key_places(z integer, x integer, y integer,
                                            query json DEFAULT '{}')
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    env geometry := ST_TileEnvelope(z, x, y);
    near geometry := ST_TileEnvelope(z, x, y, margin => 64.0 / 4096);
    categories text[] := tiles.query_list(query, 'category');
    risks text[] := tiles.query_list(query, 'risk_level');
    lim integer := tiles.query_limit(query, 10000);
    mvt bytea;
BEGIN
    SELECT ST_AsMVT(t, 'key_places', 4096, 'geom', 'id') INTO mvt FROM (
        SELECT * FROM (
            SELECT k.id, k.name, k.category, k.risk_level::text AS risk_level,
                   ST_AsMVTGeom(k.geom_3857, env, 4096, 64, true) AS geom
            FROM key_place k
            WHERE k.geom_3857 && near
              AND (categories IS NULL OR k.category = ANY (categories))
              AND (risks IS NULL OR k.risk_level::text = ANY (risks))
            LIMIT lim
        ) s WHERE s.geom IS NOT NULL
    ) t;
    RETURN coalesce(mvt, ''::bytea);
END
$$;

CREATE OR REPLACE FUNCTION tiles.city_components(z integer, x integer, y integer,
                                                 query json DEFAULT '{}')
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    env geometry := ST_TileEnvelope(z, x, y);
    near geometry := ST_TileEnvelope(z, x, y, margin => 64.0 / 4096);
    categories text[] := tiles.query_list(query, 'category');
    statuses text[] := tiles.query_list(query, 'status');
    lim integer := tiles.query_limit(query, 10000);
    mvt bytea;
BEGIN
    SELECT ST_AsMVT(t, 'city_components', 4096, 'geom', 'id') INTO mvt FROM (
        SELECT * FROM (
            SELECT c.id, c.code, c.category, c.status::text AS status,
                   ST_AsMVTGeom(c.geom_3857, env, 4096, 64, true) AS geom
            FROM city_component c
            WHERE c.geom_3857 && near
              AND (categories IS NULL OR c.category = ANY (categories))
              AND (statuses IS NULL OR c.status::text = ANY (statuses))
            LIMIT lim
        ) s WHERE s.geom IS NOT NULL
    ) t;
    RETURN coalesce(mvt, ''::bytea);
END
$$;
