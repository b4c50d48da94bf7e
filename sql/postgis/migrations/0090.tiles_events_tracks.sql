-- Tile layers of events, patrol tracks and patrol density: change tracking for the tile cache
-- (migration 0010) on the tables they draw, and patrol density per H3 cell.
-- The tile functions live in sql/postgis/functions/110_tiles_*.sql.

-- Events ----------------------------------------------------------------------------------------
-- event.geom_3857 and its GiST index come with the table (0020). Every insert and transition
-- (state, clock deadlines) bumps the z10 tiles around the event.
SELECT tiles.track_changes('event');

-- Event tiles show type codes and names, and the type filter takes a type's sub-types: a change
-- to the catalogue's codes, names or tree bumps the whole layer's epoch (rare admin edits).
CREATE FUNCTION tiles.note_event_type_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO tiles.pending (xid, tbl, x, y)
    VALUES (pg_current_xact_id(), 'event', -1, -1) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER event_type_tiles AFTER UPDATE OF code, name, parent_id ON event_type
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.note_event_type_change();

-- Patrol tracks ----------------------------------------------------------------------------------
-- patrol_session.geom_3857 (generated from the cleaned track) and its GiST index come with the
-- table (0030). The session job's inserts, rebuilds and deletions bump the tiles of the track.
SELECT tiles.track_changes('patrol_session');

-- Patrol density ---------------------------------------------------------------------------------
-- GPS points carry their H3 r10 cell, computed in Python at ingest. A session's kept points
-- are counted per r9 cell when the session is written, so the heat layer reads a few rows per
-- session rather than the raw points (partitioned, retention-limited, no spatial index).

-- The parent of an H3 cell at a coarser resolution, by bit arithmetic (no h3-pg on Debian):
-- the resolution lives in bits 52-55 and the digits finer than it are all ones (7).
CREATE FUNCTION tiles.h3_parent(cell bigint, res integer) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (cell & ~(15::bigint << 52)) | (res::bigint << 52)
           | ((1::bigint << (3 * (15 - res))) - 1)
$$;

CREATE TABLE tiles.patrol_cell (
    session_id  bigint NOT NULL REFERENCES patrol_session(id) ON DELETE CASCADE,
    h3_r9       bigint NOT NULL,
    h3_r8       bigint NOT NULL GENERATED ALWAYS AS (tiles.h3_parent(h3_r9, 8)) STORED,
    h3_r7       bigint NOT NULL GENERATED ALWAYS AS (tiles.h3_parent(h3_r9, 7)) STORED,
    user_id     bigint NOT NULL,
    path        ltree NOT NULL,
    started_at  timestamptz NOT NULL,
    -- kept fixes of the session in the cell (every few seconds: a measure of time spent)
    points      integer NOT NULL CHECK (points > 0),
    -- the mean position of those fixes
    geom_3857   geometry(Point, 3857) NOT NULL,
    PRIMARY KEY (session_id, h3_r9)
);
CREATE INDEX patrol_cell_geom ON tiles.patrol_cell USING gist (geom_3857);
CREATE INDEX patrol_cell_path ON tiles.patrol_cell USING gist (path);
CREATE INDEX patrol_cell_started ON tiles.patrol_cell (started_at);
GRANT SELECT ON tiles.patrol_cell TO gridgov_app;
REVOKE INSERT, UPDATE, DELETE ON tiles.patrol_cell FROM gridgov_app;
SELECT gridgov_meta.enable_scope_rls('tiles.patrol_cell');
SELECT tiles.track_changes('tiles.patrol_cell');

-- Keep the cells in step with the sessions. Statement-level over the transition tables; an update
-- that leaves a session's track alone (the job closing open sessions) costs nothing.
CREATE FUNCTION tiles.refresh_patrol_cells() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    src text := 'SELECT * FROM new_rows';
BEGIN
    IF TG_OP = 'UPDATE' THEN
        src := 'SELECT n.* FROM new_rows n JOIN old_rows o ON o.id = n.id '
            || 'WHERE (o.version, o.deleted_at, o.started_at, o.ended_at, o.path, o.user_id) '
            || 'IS DISTINCT FROM (n.version, n.deleted_at, n.started_at, n.ended_at, n.path, '
            || 'n.user_id)';
        EXECUTE format('DELETE FROM tiles.patrol_cell c USING (%s) ch WHERE c.session_id = ch.id',
                       src);
    END IF;
    -- Transition tables are visible to EXECUTE inside the trigger function.
    EXECUTE format($q$
        INSERT INTO tiles.patrol_cell (session_id, h3_r9, user_id, path, started_at, points,
                                       geom_3857)
        SELECT s.id, tiles.h3_parent(p.h3_r10, 9), s.user_id, s.path, s.started_at, count(*),
               ST_Transform(ST_SetSRID(ST_MakePoint(avg(p.lon), avg(p.lat)), 4490), 3857)
        FROM (%s) s
        JOIN gps_point p ON p.user_id = s.user_id AND p.ts BETWEEN s.started_at AND s.ended_at
        WHERE s.deleted_at IS NULL AND p.dropped_reason IS NULL AND p.event <> 3
          AND p.h3_r10 IS NOT NULL AND p.lon IS NOT NULL AND p.lat IS NOT NULL
        GROUP BY s.id, 2, s.user_id, s.path, s.started_at$q$, src);
    RETURN NULL;
END
$$;
CREATE TRIGGER patrol_session_cells_ins AFTER INSERT ON patrol_session
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.refresh_patrol_cells();
CREATE TRIGGER patrol_session_cells_upd AFTER UPDATE ON patrol_session
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tiles.refresh_patrol_cells();

-- Sessions written before this migration.
INSERT INTO tiles.patrol_cell (session_id, h3_r9, user_id, path, started_at, points, geom_3857)
SELECT s.id, tiles.h3_parent(p.h3_r10, 9), s.user_id, s.path, s.started_at, count(*),
       ST_Transform(ST_SetSRID(ST_MakePoint(avg(p.lon), avg(p.lat)), 4490), 3857)
FROM patrol_session s
JOIN gps_point p ON p.user_id = s.user_id AND p.ts BETWEEN s.started_at AND s.ended_at
WHERE s.deleted_at IS NULL AND p.dropped_reason IS NULL AND p.event <> 3
  AND p.h3_r10 IS NOT NULL AND p.lon IS NOT NULL AND p.lat IS NOT NULL
GROUP BY s.id, 2, s.user_id, s.path, s.started_at;
