-- Patrols (网格巡查): raw GPS points in daily partitions, client batches, patrol sessions with
-- their metrics and visits, live positions, per-grid-type targets, and the permissions.
--
-- Raw points are the one high-volume table (~30M rows a day at city scale), so they are built
-- for ingest speed: lon/lat as two doubles instead of a geometry (COPY parses a double far
-- faster than WKB/EWKT, a PostGIS point costs 32+ bytes against 16, and no spatial index is
-- kept on raw points: spatial work happens on the sessions' tracks); BRIN on time; one btree
-- on (user_id, ts) because every read of raw points is "this worker, this time window".
-- Rows carry the worker's grid path for row-level security.

CREATE TABLE gps_batch (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    client_batch_id text NOT NULL CHECK (length(client_batch_id) BETWEEN 1 AND 128),
    source          text NOT NULL CHECK (source IN ('phone', 'gpx', 'csv')),
    received_at     timestamptz NOT NULL DEFAULT now(),
    n_points        integer NOT NULL CHECK (n_points >= 0),
    first_ts        timestamptz,
    last_ts         timestamptz,
    path            ltree NOT NULL,
    -- Set by the session job; pending batches are found through the partial index.
    processed_at    timestamptz,
    -- Unique keys on a partitioned table must include the partition key, so a retried batch
    -- is recognised here, before any point is written.
    CONSTRAINT gps_batch_client_key UNIQUE (user_id, client_batch_id)
);
CREATE INDEX gps_batch_pending ON gps_batch (id) WHERE processed_at IS NULL;
CREATE INDEX gps_batch_path ON gps_batch USING gist (path);
CREATE INDEX gps_batch_received ON gps_batch USING brin (received_at);
SELECT gridgov_meta.enable_scope_rls('gps_batch');

-- Columns ordered 8-byte first, then 4, then 2, so no alignment padding is stored.
CREATE TABLE gps_point (
    ts              timestamptz NOT NULL,
    user_id         bigint NOT NULL,
    batch_id        bigint NOT NULL,
    lon             double precision,
    lat             double precision,
    -- H3 resolution-10 cell of the point, computed in Python at ingest (no h3-pg on Debian).
    h3_r10          bigint,
    accuracy        real,
    speed           real,
    heading         real,
    seq             integer NOT NULL,
    -- PointKind: 0 fix, 1 start, 2 stop, 3 no fix, 4 page hidden.
    event           smallint NOT NULL DEFAULT 0,
    -- DropReason set by the session job: 1 poor accuracy, 2 duplicate, 3 jump, 4 jitter.
    dropped_reason  smallint,
    path            ltree NOT NULL
) PARTITION BY RANGE (ts);
-- No foreign keys: a per-row trigger check would halve COPY speed; batches are deleted only
-- together with their points by the retention job.
CREATE INDEX gps_point_ts ON gps_point USING brin (ts) WITH (pages_per_range = 32);
CREATE INDEX gps_point_user_ts ON gps_point (user_id, ts);
SELECT gridgov_meta.enable_scope_rls('gps_point');

-- Points whose day has no partition (a phone offline for longer than the partitions reach
-- back) land here; the partition job moves them out when it creates their day.
CREATE TABLE gps_point_default PARTITION OF gps_point DEFAULT;
-- Partitions are reached only through gps_point, where the scope policy applies.
REVOKE ALL ON gps_point_default FROM gridgov_app;
ALTER TABLE gps_point_default ENABLE ROW LEVEL SECURITY;

-- Name of the partition holding one Shanghai day.
CREATE FUNCTION gridgov_meta.gps_partition_name(d date) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'gps_point_p' || to_char(d, 'YYYYMMDD')
$$;

-- Create the daily partitions for first_day..last_day (Shanghai days) that do not exist yet,
-- moving rows of those days out of the default partition first. Runs as the owner so the app
-- role (which may not run DDL) can call it from ingest and from the job; returns how many
-- partitions it created.
CREATE FUNCTION gridgov_meta.ensure_gps_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    d date;
    part text;
    lo timestamptz;
    hi timestamptz;
    made integer := 0;
BEGIN
    IF last_day < first_day OR last_day - first_day > 400 THEN
        RAISE EXCEPTION 'partition range % .. % is not 1..400 days', first_day, last_day
            USING ERRCODE = 'GG422', DETAIL = 'day';
    END IF;
    -- Two ingests meeting a new day at once: the second waits, then finds the partition.
    PERFORM pg_advisory_xact_lock(hashtext('gridgov.gps_point.partitions'));
    FOR d IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        part := gridgov_meta.gps_partition_name(d);
        CONTINUE WHEN to_regclass('public.' || part) IS NOT NULL;
        lo := d::timestamp AT TIME ZONE 'Asia/Shanghai';
        hi := (d + 1)::timestamp AT TIME ZONE 'Asia/Shanghai';
        EXECUTE format('CREATE TABLE %I (LIKE gps_point INCLUDING DEFAULTS)', part);
        EXECUTE format('WITH moved AS (DELETE FROM gps_point_default WHERE ts >= %L AND ts < %L '
                       'RETURNING *) INSERT INTO %I SELECT * FROM moved', lo, hi, part);
        EXECUTE format('ALTER TABLE gps_point ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       part, lo, hi);
        EXECUTE format('REVOKE ALL ON %I FROM gridgov_app', part);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', part);
        made := made + 1;
    END LOOP;
    RETURN made;
END
$$;

-- The days that have a partition (for the ingest's cache and the retention job).
CREATE FUNCTION gridgov_meta.gps_partition_days()
RETURNS SETOF date LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT to_date(substr(c.relname, 12), 'YYYYMMDD')
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'public.gps_point'::regclass AND c.relname ~ '^gps_point_p[0-9]{8}$'
    ORDER BY 1
$$;

-- The days of the rows waiting in the default partition (stragglers), for the partition job.
CREATE FUNCTION gridgov_meta.gps_default_days()
RETURNS SETOF date LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT DISTINCT (ts AT TIME ZONE 'Asia/Shanghai')::date FROM gps_point_default ORDER BY 1
$$;

-- Retention: drop the raw points of days before keep_from (sessions keep their summary and
-- cleaned track), stragglers of those days in the default partition, and their batches.
-- Returns how many partitions were dropped.
CREATE FUNCTION gridgov_meta.drop_gps_partitions_before(keep_from date)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    d date;
    dropped integer := 0;
    cutoff timestamptz := keep_from::timestamp AT TIME ZONE 'Asia/Shanghai';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('gridgov.gps_point.partitions'));
    FOR d IN SELECT * FROM gridgov_meta.gps_partition_days() LOOP
        CONTINUE WHEN d >= keep_from;
        EXECUTE format('ALTER TABLE gps_point DETACH PARTITION %I',
                       gridgov_meta.gps_partition_name(d));
        EXECUTE format('DROP TABLE %I', gridgov_meta.gps_partition_name(d));
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM gps_point_default WHERE ts < cutoff;
    DELETE FROM gps_batch WHERE last_ts < cutoff AND processed_at IS NOT NULL;
    RETURN dropped;
END
$$;

REVOKE ALL ON FUNCTION gridgov_meta.ensure_gps_partitions(date, date),
    gridgov_meta.gps_partition_days(), gridgov_meta.gps_default_days(),
    gridgov_meta.drop_gps_partitions_before(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.ensure_gps_partitions(date, date),
    gridgov_meta.gps_partition_days(), gridgov_meta.gps_default_days(),
    gridgov_meta.drop_gps_partitions_before(date) TO gridgov_app;

-- A week back and a week ahead at migration time; the partition job keeps it going.
SELECT gridgov_meta.ensure_gps_partitions(
    (now() AT TIME ZONE 'Asia/Shanghai')::date - 7, (now() AT TIME ZONE 'Asia/Shanghai')::date + 7);

-- 巡查记录: one patrol of one worker, built from the cleaned points by the session job.
-- Located by the worker's grid (path), not by the track, which may leave the grid.
CREATE TABLE patrol_session (
    id                    bigserial PRIMARY KEY,
    user_id               bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    grid_code             text,
    region_id             bigint REFERENCES region(id),
    path                  ltree NOT NULL,
    started_at            timestamptz NOT NULL,
    ended_at              timestamptz NOT NULL,
    duration_s            integer NOT NULL CHECK (duration_s >= 0),
    mileage_m             double precision NOT NULL CHECK (mileage_m >= 0),
    in_grid_time_share    real CHECK (in_grid_time_share BETWEEN 0 AND 1),
    in_grid_length_share  real CHECK (in_grid_length_share BETWEEN 0 AND 1),
    coverage_share        real CHECK (coverage_share BETWEEN 0 AND 1),
    cells_visited         integer NOT NULL DEFAULT 0,
    points_raw            integer NOT NULL DEFAULT 0,
    points_kept           integer NOT NULL DEFAULT 0,
    mode                  text NOT NULL CHECK (mode IN ('walk', 'bicycle')),
    -- The cleaned track and, per vertex, its time in epoch seconds.
    track                 geometry(LineString, 4490) NOT NULL,
    geom_3857             geometry(LineString, 3857)
                          GENERATED ALWAYS AS (ST_Transform(track, 3857)) STORED,
    times                 double precision[] NOT NULL,
    gaps                  jsonb NOT NULL DEFAULT '[]',
    -- open: the worker may still be on it (last fix within the session gap); closed: final.
    state                 text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    deleted_at            timestamptz,
    deleted_by            bigint,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    version               integer NOT NULL DEFAULT 1,
    CHECK (ended_at >= started_at),
    CHECK (cardinality(times) = ST_NPoints(track))
);
CREATE INDEX patrol_session_user ON patrol_session (user_id, started_at);
CREATE INDEX patrol_session_started ON patrol_session (started_at);
CREATE INDEX patrol_session_grid ON patrol_session (grid_code, started_at);
CREATE INDEX patrol_session_path ON patrol_session USING gist (path);
CREATE INDEX patrol_session_track ON patrol_session USING gist (track);
CREATE INDEX patrol_session_geom_3857 ON patrol_session USING gist (geom_3857);
CREATE INDEX patrol_session_open ON patrol_session (ended_at) WHERE state = 'open';
SELECT gridgov_meta.enable_scope_rls('patrol_session');

-- Key places and buildings a patrol passed within the visit radius.
CREATE TABLE patrol_visit (
    id          bigserial PRIMARY KEY,
    session_id  bigint NOT NULL REFERENCES patrol_session(id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('key_place', 'building')),
    object_id   bigint NOT NULL,
    at          timestamptz NOT NULL,
    distance_m  real NOT NULL CHECK (distance_m >= 0),
    path        ltree NOT NULL,
    UNIQUE (session_id, kind, object_id)
);
CREATE INDEX patrol_visit_object ON patrol_visit (kind, object_id, at);
CREATE INDEX patrol_visit_path ON patrol_visit USING gist (path);
SELECT gridgov_meta.enable_scope_rls('patrol_visit');

-- The last fix of every worker, for live positions and "online now" (a fix in 5 minutes).
CREATE TABLE patrol_live (
    user_id     bigint PRIMARY KEY REFERENCES app_user(id) ON DELETE CASCADE,
    ts          timestamptz NOT NULL,
    lon         double precision NOT NULL,
    lat         double precision NOT NULL,
    accuracy    real,
    path        ltree NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patrol_live_path ON patrol_live USING gist (path);
CREATE INDEX patrol_live_ts ON patrol_live (ts);
SELECT gridgov_meta.enable_scope_rls('patrol_live');

-- Daily patrol targets per grid type (巡查考核标准); editable configuration, not scoped.
CREATE TABLE patrol_target (
    grid_type        grid_type PRIMARY KEY,
    min_mileage_m    double precision NOT NULL CHECK (min_mileage_m >= 0),
    min_duration_s   integer NOT NULL CHECK (min_duration_s >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO patrol_target (grid_type, min_mileage_m, min_duration_s) VALUES
    ('general', 2000, 3600), ('key', 3000, 5400), ('dedicated', 1000, 1800);

INSERT INTO permission (name, description) VALUES
    ('patrol.report', '上报巡查轨迹'),
    ('patrol.read', '查看巡查记录与统计'),
    ('patrol.playback', '轨迹回放与实时位置 (审计)'),
    ('patrol.manage', '删除巡查记录、代传轨迹文件')
ON CONFLICT DO NOTHING;

INSERT INTO role_permission (role_id, permission)
SELECT r.id, p FROM role r, LATERAL unnest(CASE r.name
    WHEN 'grid_worker' THEN ARRAY['patrol.report']
    WHEN 'part_time_grid_worker' THEN ARRAY['patrol.report']
    WHEN 'grid_leader' THEN ARRAY['patrol.report', 'patrol.read', 'patrol.playback']
    WHEN 'grid_instructor' THEN ARRAY['patrol.read']
    WHEN 'township_commander' THEN ARRAY['patrol.read', 'patrol.playback', 'patrol.manage']
    WHEN 'county_commander' THEN ARRAY['patrol.read', 'patrol.playback']
    WHEN 'city_commander' THEN ARRAY['patrol.read', 'patrol.playback']
    WHEN 'admin' THEN ARRAY['patrol.read', 'patrol.manage']
    WHEN 'analyst' THEN ARRAY['patrol.read']
    ELSE ARRAY[]::text[] END) AS p
ON CONFLICT DO NOTHING;
