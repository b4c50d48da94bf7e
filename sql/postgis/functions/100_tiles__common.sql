-- Helpers shared by the tile functions (tiles.<layer>(z, x, y, query json) RETURNS bytea).
-- The query object is built by tiles/service.py from validated request parameters: lists are
-- JSON arrays, times ISO 8601 strings, and "limit" is the layer's registered feature limit.

-- A list parameter as text[]; NULL when absent (no filter).
CREATE OR REPLACE FUNCTION tiles.query_list(query json, key text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN query IS NULL OR query -> key IS NULL OR json_typeof(query -> key) = 'null' THEN NULL
        WHEN json_typeof(query -> key) = 'array'
            THEN ARRAY(SELECT json_array_elements_text(query -> key))
        ELSE ARRAY[query ->> key] END
$$;

-- A time parameter; NULL when absent.
CREATE OR REPLACE FUNCTION tiles.query_time(query json, key text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(query ->> key, '')::timestamptz
$$;

-- The feature limit: the registered one, never more than the function's own ceiling.
CREATE OR REPLACE FUNCTION tiles.query_limit(query json, ceiling integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(ceiling, greatest(1, coalesce((query ->> 'limit')::integer, ceiling)))
$$;

-- The H3 resolution a heat layer aggregates at for a zoom (hexagons of ~5-15 px on screen).
CREATE OR REPLACE FUNCTION tiles.heat_resolution(z integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN z <= 10 THEN 7 WHEN z <= 12 THEN 8 ELSE 9 END
$$;

-- How far (EPSG:3857 m) members of a hexagon touching a tile can lie from it: the cell's
-- diameter, with room for the Mercator stretch up to 53°N.
CREATE OR REPLACE FUNCTION tiles.heat_reach(res integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE res WHEN 7 THEN 5000 WHEN 8 THEN 2000 ELSE 800 END::double precision
$$;

-- The box a heat layer's tile reads members from: the tile grown by that reach at the zoom's
-- resolution (a hexagon touching the tile counts all its members, also those outside it).
CREATE OR REPLACE FUNCTION tiles.heat_envelope(z integer, x integer, y integer)
RETURNS geometry LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ST_Expand(ST_TileEnvelope(z, x, y), tiles.heat_reach(tiles.heat_resolution(z)))
$$;

-- A member's hexagon at a heat resolution, from the r7/r8/r9 cell ids stored at write time.
-- A plain expression: inlined into the caller's GROUP BY.
CREATE OR REPLACE FUNCTION tiles.heat_cell(res integer, r7 bigint, r8 bigint, r9 bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE res WHEN 7 THEN r7 WHEN 8 THEN r8 ELSE r9 END
$$;
