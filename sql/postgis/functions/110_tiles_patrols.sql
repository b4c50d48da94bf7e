-- Patrol tracks (巡查轨迹) of one day and patrol density on H3 hexagons. Tracks are sensitive
-- personal information (行踪轨迹): the registry gives these layers only to roles cleared for
-- playback, and the tile route audits their use. Scope applies through row-level security on
-- patrol_session and tiles.patrol_cell (the worker's grid path).

-- Cleaned tracks of the patrols that started on one governance day (Asia/Shanghai).
-- Query: date (required: no date, no tracks), worker (user ids), grid (grid codes), limit.
-- Simplified for the zoom (half a pixel of a 512 px tile) before clipping.
CREATE OR REPLACE FUNCTION tiles.patrol_tracks(z integer, x integer, y integer,
                                               query json DEFAULT '{}')
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    env geometry := ST_TileEnvelope(z, x, y);
    day date := nullif(query ->> 'date', '')::date;
    d0 timestamptz := (nullif(query ->> 'date', '')::date)::timestamp AT TIME ZONE 'Asia/Shanghai';
    workers bigint[] := tiles.query_list(query, 'worker')::bigint[];
    grids text[] := tiles.query_list(query, 'grid');
    tolerance double precision := (ST_XMax(ST_TileEnvelope(z, x, y))
                                   - ST_XMin(ST_TileEnvelope(z, x, y))) / 1024;
    lim integer := tiles.query_limit(query, 5000);
    mvt bytea;
BEGIN
    IF day IS NULL THEN
        RETURN ''::bytea;
    END IF;
    SELECT ST_AsMVT(t, 'patrol_tracks', 4096, 'geom', 'id') INTO mvt FROM (
        SELECT * FROM (
            SELECT s.id, s.user_id AS worker, s.grid_code AS grid, s.state, s.mode,
                   extract(epoch FROM s.started_at)::bigint AS started_at,
                   extract(epoch FROM s.ended_at)::bigint AS ended_at,
                   round(s.mileage_m)::integer AS mileage_m,
                   ST_AsMVTGeom(ST_Simplify(s.geom_3857, tolerance, true), env, 4096, 64, true)
                       AS geom
            FROM patrol_session s
            WHERE s.geom_3857 && env AND s.deleted_at IS NULL
              AND s.started_at >= d0 AND s.started_at < d0 + interval '1 day'
              AND (workers IS NULL OR s.user_id = ANY (workers))
              AND (grids IS NULL OR s.grid_code = ANY (grids))
            LIMIT lim
        ) q WHERE q.geom IS NOT NULL
    ) t;
    RETURN coalesce(mvt, ''::bytea);
END
$$;

-- Patrol density on H3 hexagons (resolution by zoom): kept GPS fixes per cell, from the r10
-- cells stored at ingest and counted per session (tiles.patrol_cell, migration 0090), and how
-- many workers the fixes came from. Query: time_from/time_to (patrol start, inclusive), limit.
CREATE OR REPLACE FUNCTION tiles.heat_patrols(z integer, x integer, y integer,
                                              query json DEFAULT '{}')
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    env geometry := ST_TileEnvelope(z, x, y);
    hres integer := tiles.heat_resolution(z);
    reach geometry := tiles.heat_envelope(z, x, y);
    t0 timestamptz := tiles.query_time(query, 'time_from');
    t1 timestamptz := tiles.query_time(query, 'time_to');
    lim integer := tiles.query_limit(query, 20000);
    mvt bytea;
BEGIN
    SELECT ST_AsMVT(t, 'heat_patrols', 4096, 'geom', 'id') INTO mvt FROM (
        SELECT * FROM (
            SELECT c.cell AS id, to_hex(c.cell) AS h3, hres AS res, c.n AS count,
                   c.workers,
                   ST_AsMVTGeom(coalesce(h.geom_3857, c.centre), env, 4096, 64, true) AS geom
            FROM (
                SELECT tiles.heat_cell(hres, p.h3_r7, p.h3_r8, p.h3_r9) AS cell,
                       sum(p.points)::bigint AS n, count(DISTINCT p.user_id) AS workers,
                       ST_SetSRID(ST_Centroid(ST_Extent(p.geom_3857)::geometry), 3857) AS centre
                FROM tiles.patrol_cell p
                WHERE p.geom_3857 && reach
                  AND (t0 IS NULL OR p.started_at >= t0) AND (t1 IS NULL OR p.started_at <= t1)
                GROUP BY 1
            ) c
            LEFT JOIN tiles.h3_cell h ON h.cell = c.cell
            WHERE coalesce(h.geom_3857, c.centre) && env
            LIMIT lim
        ) s WHERE s.geom IS NOT NULL
    ) t;
    RETURN coalesce(mvt, ''::bytea);
END
$$;
