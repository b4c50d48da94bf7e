-- Events layer (事件): points with state and SLA colour at high zoom, clusters at low zoom, and
-- event density on H3 hexagons. Scope applies through row-level security on event (the caller's
-- scope is set for the statement; these functions are SECURITY INVOKER).
--
-- The SLA colour depends on the clock as well as on the row: an event turns amber, then red,
-- with no write at all. tiles.events_expiring() therefore also returns how many seconds its
-- tile stays right — until the next amber or red crossing among the events it drew or filtered
-- on — and the tile cache keeps the tile no longer than that (tiles/service.py). Writes
-- (transitions, new deadlines) bump the tile versions like any other table (migration 0090).

-- SLA colour (时限状态) of an event's running clock, as geoserver.services.events.SLA_EXPR;
-- NULL when no clock runs (finished events).
CREATE OR REPLACE FUNCTION tiles.sla_colour(deadline timestamptz, amber timestamptz)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN deadline IS NULL THEN NULL WHEN now() >= deadline THEN 'red'
                WHEN now() >= amber THEN 'amber' ELSE 'green' END
$$;

-- When that colour next changes by the clock alone (NULL: never).
CREATE OR REPLACE FUNCTION tiles.sla_next_change(deadline timestamptz, amber timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN deadline IS NULL OR now() >= deadline THEN NULL
                WHEN amber IS NOT NULL AND now() < amber THEN amber ELSE deadline END
$$;

-- Ids of event types given by code, with all their sub-types (a type filter takes sub-types,
-- as the queues do); NULL when no type is asked for.
CREATE OR REPLACE FUNCTION tiles.event_type_ids(codes text[]) RETURNS bigint[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN codes IS NULL THEN NULL ELSE coalesce((
        WITH RECURSIVE d AS (
            SELECT id FROM event_type WHERE code = ANY (codes)
            UNION
            SELECT c.id FROM event_type c JOIN d ON c.parent_id = d.id
        ) SELECT array_agg(id) FROM d), '{}') END
$$;

-- The filters every event layer takes (query: type, state, source, severity, time_from/to;
-- NULL: no filter): without a state asked for, merged duplicates are left out. One boolean
-- expression, so the planner inlines it into the caller's WHERE (the index on geom_3857 is
-- still what the caller's && picks).
CREATE OR REPLACE FUNCTION tiles.event_matches(e event, types bigint[], states text[],
                                               sources text[], severities text[],
                                               t0 timestamptz, t1 timestamptz)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (CASE WHEN states IS NULL THEN e.state <> 'merged' ELSE e.state = ANY (states) END)
       AND (types IS NULL OR e.event_type_id = ANY (types))
       AND (sources IS NULL OR e.source = ANY (sources))
       AND (severities IS NULL OR e.severity = ANY (severities))
       AND (t0 IS NULL OR e.reported_at >= t0) AND (t1 IS NULL OR e.reported_at <= t1)
$$;

-- Zoom from which events are drawn one by one (below it: clusters).
CREATE OR REPLACE FUNCTION tiles.events_point_zoom() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 14 $$;

-- The events tile and the seconds it stays right (NULL: until the next write).
-- Query: type (codes), state, source, severity, sla (lists), time_from/time_to (reported_at,
-- inclusive), limit. Without a state filter, merged duplicates are left out.
CREATE OR REPLACE FUNCTION tiles.events_expiring(z integer, x integer, y integer,
                                                 query json DEFAULT '{}',
                                                 OUT mvt bytea, OUT valid_for double precision)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    env geometry := ST_TileEnvelope(z, x, y);
    -- points come from a margin around the tile so that symbols crossing its edges are whole
    near geometry := ST_TileEnvelope(z, x, y, margin => 64.0 / 4096);
    types bigint[] := tiles.event_type_ids(tiles.query_list(query, 'type'));
    states text[] := tiles.query_list(query, 'state');
    sources text[] := tiles.query_list(query, 'source');
    severities text[] := tiles.query_list(query, 'severity');
    slas text[] := tiles.query_list(query, 'sla');
    t0 timestamptz := tiles.query_time(query, 'time_from');
    t1 timestamptz := tiles.query_time(query, 'time_to');
    lim integer := tiles.query_limit(query, 10000);
    -- clusters: an 8 x 8 grid of cells aligned on the tile (64 px on a 512 px tile), so each
    -- event counts in exactly one cell of one tile
    x0 double precision := ST_XMin(ST_TileEnvelope(z, x, y));
    y1 double precision := ST_YMax(ST_TileEnvelope(z, x, y));
    cell double precision := (ST_XMax(ST_TileEnvelope(z, x, y))
                              - ST_XMin(ST_TileEnvelope(z, x, y))) / 8;
    next_change timestamptz;
BEGIN
    IF z >= tiles.events_point_zoom() THEN
        WITH c AS MATERIALIZED (
            SELECT e.id, e.code, e.event_type_id, e.state, e.source, e.severity, e.reported_at,
                   e.geom_3857, tiles.sla_colour(e.deadline_at, e.amber_at) AS sla,
                   tiles.sla_next_change(e.deadline_at, e.amber_at) AS next_change
            FROM event e
            WHERE e.geom_3857 && near
              AND tiles.event_matches(e, types, states, sources, severities, t0, t1)
        ), shown AS (
            SELECT c.id, c.code, t.code AS type, t.name AS type_name, c.state, c.source,
                   c.severity, c.sla, extract(epoch FROM c.reported_at)::bigint AS reported_at,
                   ST_AsMVTGeom(c.geom_3857, env, 4096, 64, true) AS geom
            FROM c JOIN event_type t ON t.id = c.event_type_id
            WHERE slas IS NULL OR c.sla = ANY (slas)
            LIMIT lim
        )
        SELECT (SELECT ST_AsMVT(s, 'events', 4096, 'geom', 'id') FROM shown s
                WHERE s.geom IS NOT NULL),
               -- over every candidate, also those the sla filter left out: they join it later
               (SELECT min(c.next_change) FROM c)
          INTO mvt, next_change;
    ELSE
        WITH c AS MATERIALIZED (
            SELECT ST_X(e.geom_3857) AS ex, ST_Y(e.geom_3857) AS ey,
                   tiles.sla_colour(e.deadline_at, e.amber_at) AS sla,
                   tiles.sla_next_change(e.deadline_at, e.amber_at) AS next_change
            FROM event e
            WHERE e.geom_3857 && env
              AND tiles.event_matches(e, types, states, sources, severities, t0, t1)
        ), k AS (
            -- half-open cells: an event on a tile edge belongs to one tile only
            SELECT floor((c.ex - x0) / cell)::integer AS cx, floor((y1 - c.ey) / cell)::integer AS cy,
                   count(*)::integer AS count,
                   count(*) FILTER (WHERE c.sla = 'red')::integer AS red,
                   count(*) FILTER (WHERE c.sla = 'amber')::integer AS amber,
                   count(*) FILTER (WHERE c.sla = 'green')::integer AS green,
                   avg(c.ex) AS mx, avg(c.ey) AS my
            FROM c
            WHERE c.ex >= x0 AND c.ex < x0 + 8 * cell AND c.ey <= y1 AND c.ey > y1 - 8 * cell
              AND (slas IS NULL OR c.sla = ANY (slas))
            GROUP BY 1, 2
        ), f AS (
            SELECT k.cy * 8 + k.cx AS id, k.count, k.red, k.amber, k.green,
                   CASE WHEN k.red > 0 THEN 'red' WHEN k.amber > 0 THEN 'amber'
                        WHEN k.green > 0 THEN 'green' END AS sla,
                   ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(k.mx, k.my), 3857), env, 4096, 0, false)
                       AS geom
            FROM k
        )
        SELECT (SELECT ST_AsMVT(f, 'event_clusters', 4096, 'geom', 'id') FROM f
                WHERE f.geom IS NOT NULL),
               (SELECT min(c.next_change) FROM c)
          INTO mvt, next_change;
    END IF;
    mvt := coalesce(mvt, ''::bytea);
    valid_for := extract(epoch FROM next_change - now());
END
$$;

-- The events layer as every tile function is called (for Martin and tests); the tile service
-- calls tiles.events_expiring() to learn how long it may keep the tile.
CREATE OR REPLACE FUNCTION tiles.events(z integer, x integer, y integer, query json DEFAULT '{}')
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT mvt FROM tiles.events_expiring(z, x, y, query)
$$;

-- Event density on H3 hexagons (resolution by zoom), from the cell ids stored when events are
-- written. Same filters as the events layer but the SLA colour, so no clock is involved.
CREATE OR REPLACE FUNCTION tiles.heat_events(z integer, x integer, y integer,
                                             query json DEFAULT '{}')
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    env geometry := ST_TileEnvelope(z, x, y);
    hres integer := tiles.heat_resolution(z);
    reach geometry := tiles.heat_envelope(z, x, y);
    types bigint[] := tiles.event_type_ids(tiles.query_list(query, 'type'));
    states text[] := tiles.query_list(query, 'state');
    sources text[] := tiles.query_list(query, 'source');
    severities text[] := tiles.query_list(query, 'severity');
    t0 timestamptz := tiles.query_time(query, 'time_from');
    t1 timestamptz := tiles.query_time(query, 'time_to');
    lim integer := tiles.query_limit(query, 20000);
    mvt bytea;
BEGIN
    SELECT ST_AsMVT(t, 'heat_events', 4096, 'geom', 'id') INTO mvt FROM (
        SELECT * FROM (
            SELECT c.cell AS id, to_hex(c.cell) AS h3, hres AS res, c.n AS count,
                   ST_AsMVTGeom(coalesce(h.geom_3857, c.centre), env, 4096, 64, true) AS geom
            FROM (
                SELECT tiles.heat_cell(hres, e.h3_r7, e.h3_r8, e.h3_r9) AS cell,
                       count(*) AS n,
                       ST_SetSRID(ST_Centroid(ST_Extent(e.geom_3857)::geometry), 3857) AS centre
                FROM event e
                WHERE e.geom_3857 && reach
                  AND tiles.event_matches(e, types, states, sources, severities, t0, t1)
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
