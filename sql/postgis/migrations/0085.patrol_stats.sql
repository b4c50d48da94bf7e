-- Patrol statistics over weeks and months, editable targets, and retention that summarises.
--
-- Coverage over a period is the share of a grid's H3 cells visited by any of its patrols in
-- that period, so each session keeps the grid cells it visited (a patrol of an hour visits a
-- few dozen: a few hundred bytes) and the grid's cell count when it was built.
ALTER TABLE patrol_session
    ADD COLUMN grid_cells bigint[],
    ADD COLUMN grid_cell_count integer CHECK (grid_cell_count >= 0);

-- Targets (巡查考核标准) are edited through the API; who changed them last is kept here, the
-- before/after in the audit log.
ALTER TABLE patrol_target
    ADD COLUMN updated_by bigint;

-- What retention leaves of the raw points of a worker's day once its partition is gone:
-- how many points came in, how many were fixes, kept, and dropped for each reason.
-- (Sessions keep their own summary and cleaned track.)
CREATE TABLE gps_point_day (
    day             date NOT NULL,
    user_id         bigint NOT NULL,
    path            ltree NOT NULL,
    points          integer NOT NULL CHECK (points >= 0),
    fixes           integer NOT NULL CHECK (fixes >= 0),
    kept            integer NOT NULL CHECK (kept >= 0),
    poor_accuracy   integer NOT NULL DEFAULT 0,
    duplicates      integer NOT NULL DEFAULT 0,
    jumps           integer NOT NULL DEFAULT 0,
    jitter          integer NOT NULL DEFAULT 0,
    batches         integer NOT NULL DEFAULT 0,
    first_ts        timestamptz NOT NULL,
    last_ts         timestamptz NOT NULL,
    -- retention: 'drop' (the raw rows are gone) or 'archive' (they sit in gps_archive).
    retired_as      text NOT NULL CHECK (retired_as IN ('drop', 'archive')),
    retired_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, user_id, path)
);
CREATE INDEX gps_point_day_user ON gps_point_day (user_id, day);
CREATE INDEX gps_point_day_path ON gps_point_day USING gist (path);
SELECT gridgov_meta.enable_scope_rls('gps_point_day');

-- Archived raw points: detached partitions moved here whole, stragglers and batches copied.
-- The app role has no access; an operator dumps (pg_dump -n gps_archive) and drops them.
CREATE SCHEMA gps_archive;
REVOKE ALL ON SCHEMA gps_archive FROM PUBLIC;
CREATE TABLE gps_archive.gps_point_stragglers (LIKE gps_point);
CREATE TABLE gps_archive.gps_batch (LIKE gps_batch);

-- Add the per-worker, per-day summary of raw rows of one relation (a partition, or the
-- default partition's rows before cutoff) to gps_point_day. Owner only.
CREATE FUNCTION gridgov_meta.summarize_gps_rows(rel regclass, cutoff timestamptz, how text)
RETURNS bigint LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format(
        'INSERT INTO gps_point_day AS g (day, user_id, path, points, fixes, kept, '
        '    poor_accuracy, duplicates, jumps, jitter, batches, first_ts, last_ts, retired_as) '
        'SELECT (ts AT TIME ZONE ''Asia/Shanghai'')::date, user_id, path, count(*), '
        '    count(*) FILTER (WHERE event = 0), '
        '    count(*) FILTER (WHERE event = 0 AND dropped_reason IS NULL), '
        '    count(*) FILTER (WHERE dropped_reason = 1), count(*) FILTER (WHERE dropped_reason = 2), '
        '    count(*) FILTER (WHERE dropped_reason = 3), count(*) FILTER (WHERE dropped_reason = 4), '
        '    count(DISTINCT batch_id), min(ts), max(ts), %L '
        'FROM %s WHERE ts < %L GROUP BY 1, 2, 3 '
        'ON CONFLICT (day, user_id, path) DO UPDATE SET points = g.points + EXCLUDED.points, '
        '    fixes = g.fixes + EXCLUDED.fixes, kept = g.kept + EXCLUDED.kept, '
        '    poor_accuracy = g.poor_accuracy + EXCLUDED.poor_accuracy, '
        '    duplicates = g.duplicates + EXCLUDED.duplicates, jumps = g.jumps + EXCLUDED.jumps, '
        '    jitter = g.jitter + EXCLUDED.jitter, batches = g.batches + EXCLUDED.batches, '
        '    first_ts = least(g.first_ts, EXCLUDED.first_ts), '
        '    last_ts = greatest(g.last_ts, EXCLUDED.last_ts), retired_at = now()',
        how, rel, cutoff);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION gridgov_meta.summarize_gps_rows(regclass, timestamptz, text) FROM PUBLIC;

-- Retention: for every raw-point day before keep_from, summarise it into gps_point_day, then
-- detach its partition and drop it, or (archive) move it into gps_archive; the default
-- partition's stragglers and the processed batches of those days likewise. Returns counts.
CREATE FUNCTION gridgov_meta.retire_gps_partitions(keep_from date, archive boolean)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    d date;
    part text;
    how text := CASE WHEN archive THEN 'archive' ELSE 'drop' END;
    cutoff timestamptz := keep_from::timestamp AT TIME ZONE 'Asia/Shanghai';
    partitions integer := 0;
    summaries bigint := 0;
    stragglers bigint;
    batches bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('gridgov.gps_point.partitions'));
    -- Summarise every expired day first: detaching locks gps_point (ingest waits) until the
    -- transaction ends, so the long scans must not come after the first detach.
    FOR d IN SELECT * FROM gridgov_meta.gps_partition_days() LOOP
        CONTINUE WHEN d >= keep_from;
        summaries := summaries + gridgov_meta.summarize_gps_rows(
            gridgov_meta.gps_partition_name(d)::regclass, cutoff, how);
    END LOOP;
    FOR d IN SELECT * FROM gridgov_meta.gps_partition_days() LOOP
        CONTINUE WHEN d >= keep_from;
        part := gridgov_meta.gps_partition_name(d);
        EXECUTE format('ALTER TABLE gps_point DETACH PARTITION %I', part);
        IF archive AND to_regclass(format('gps_archive.%I', part)) IS NOT NULL THEN
            -- The day was archived before (stragglers re-created it): add to that archive.
            EXECUTE format('INSERT INTO gps_archive.%I SELECT * FROM %I', part, part);
            EXECUTE format('DROP TABLE %I', part);
        ELSIF archive THEN
            EXECUTE format('ALTER TABLE %I SET SCHEMA gps_archive', part);
        ELSE
            EXECUTE format('DROP TABLE %I', part);
        END IF;
        partitions := partitions + 1;
    END LOOP;
    summaries := summaries
        + gridgov_meta.summarize_gps_rows('gps_point_default'::regclass, cutoff, how);
    IF archive THEN
        INSERT INTO gps_archive.gps_point_stragglers
            SELECT * FROM gps_point_default WHERE ts < cutoff;
        INSERT INTO gps_archive.gps_batch
            SELECT * FROM gps_batch WHERE last_ts < cutoff AND processed_at IS NOT NULL;
    END IF;
    DELETE FROM gps_point_default WHERE ts < cutoff;
    GET DIAGNOSTICS stragglers = ROW_COUNT;
    DELETE FROM gps_batch WHERE last_ts < cutoff AND processed_at IS NOT NULL;
    GET DIAGNOSTICS batches = ROW_COUNT;
    RETURN jsonb_build_object('partitions', partitions, 'action', how,
                              'summary_rows', summaries, 'stragglers', stragglers,
                              'batches', batches);
END
$$;
REVOKE ALL ON FUNCTION gridgov_meta.retire_gps_partitions(date, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.retire_gps_partitions(date, boolean) TO gridgov_app;

INSERT INTO permission (name, description) VALUES
    ('patrol.target', '设置巡查考核标准 (各类网格的里程与时长)')
ON CONFLICT DO NOTHING;

INSERT INTO role_permission (role_id, permission)
SELECT r.id, 'patrol.target' FROM role r WHERE r.name IN ('admin', 'city_commander')
ON CONFLICT DO NOTHING;
