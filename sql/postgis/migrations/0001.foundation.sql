-- Foundation: bookkeeping, the caller's scope and the RLS helper, the job runner's tables.
-- Tables are owned by the migration role (gridgov_owner); the app connects as gridgov_app,
-- which is not the owner and has NOBYPASSRLS, so every policy applies to it.

CREATE SCHEMA IF NOT EXISTS gridgov_meta;
GRANT USAGE ON SCHEMA gridgov_meta TO gridgov_app;

CREATE TABLE gridgov_meta.applied_sql (
    kind        text NOT NULL CHECK (kind IN ('migration', 'functions')),
    name        text NOT NULL,
    sha256      text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);
GRANT SELECT ON gridgov_meta.applied_sql TO gridgov_app;
REVOKE INSERT, UPDATE, DELETE ON gridgov_meta.applied_sql FROM gridgov_app;

-- The caller's scope: region paths set per transaction with set_config('gridgov.scope', …, true).
-- Unset or empty means an empty array, and an empty scope sees nothing.
-- Keep this function in a migration: re-creating it with CASCADE would drop every policy.
CREATE FUNCTION gridgov_meta.scope() RETURNS ltree[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN coalesce(current_setting('gridgov.scope', true), '') = ''
                THEN '{}'::ltree[]
                ELSE current_setting('gridgov.scope', true)::ltree[] END
$$;

-- Whether a path lies inside the caller's scope (for use in SQL functions and services).
CREATE FUNCTION gridgov_meta.in_scope(p ltree) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT p <@ ANY (gridgov_meta.scope())
$$;

-- The one way tables get their scope policy: rows are visible and writable only when their
-- path lies under one of the caller's scope paths. The scope is read once per statement
-- (a scalar sub-select becomes an InitPlan) instead of once per row.
CREATE FUNCTION gridgov_meta.enable_scope_rls(tbl regclass, col text DEFAULT 'path')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS scope ON %s', tbl);
    EXECUTE format(
        'CREATE POLICY scope ON %s USING (%I <@ ANY ((SELECT gridgov_meta.scope()))) '
        'WITH CHECK (%I <@ ANY ((SELECT gridgov_meta.scope())))', tbl, col, col);
END
$$;

-- Job runner: periodic job bookkeeping and a queue of one-off jobs.
CREATE TABLE gridgov_meta.job_state (
    name          text PRIMARY KEY,
    last_started  timestamptz,
    last_finished timestamptz,
    last_ok       timestamptz,
    last_error    text,
    failures      integer NOT NULL DEFAULT 0,
    next_run      timestamptz NOT NULL DEFAULT now(),
    runs          bigint NOT NULL DEFAULT 0
);

CREATE TABLE gridgov_meta.job_queue (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}',
    run_after   timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 8,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz,
    dead        boolean NOT NULL DEFAULT false,
    dedupe_key  text
);
CREATE INDEX job_queue_due ON gridgov_meta.job_queue (run_after) WHERE done_at IS NULL AND NOT dead;
CREATE UNIQUE INDEX job_queue_dedupe ON gridgov_meta.job_queue (kind, dedupe_key)
    WHERE done_at IS NULL AND NOT dead AND dedupe_key IS NOT NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON gridgov_meta.job_state, gridgov_meta.job_queue TO gridgov_app;
GRANT USAGE, SELECT ON SEQUENCE gridgov_meta.job_queue_id_seq TO gridgov_app;
