-- Event center (事件中心): the event type catalogue and its rules, routing rules, events with
-- their append-only history, routes ("why it went here"), assignments (主办/协办), per-phase
-- clocks (时限), extension requests (延期), the holiday calendar, and the event permissions.
--
-- Catalogue tables (event_type, event_rule, holiday) are city-wide reference data without a
-- region: readable by every app session, written only through services that check event.admin.
-- Everything that belongs to a place (routing rules, events and their children) carries a path
-- and row-level security on it. Child rows copy their event's path in a trigger.

-- Event types (事件类型): a tree with codes, display order and the provincial classification
-- code each maps to for five-level 协同.
CREATE TABLE event_type (
    id              bigserial PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[0-9A-Za-z_]{1,32}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 60),
    parent_id       bigint REFERENCES event_type(id) ON DELETE RESTRICT,
    display_order   integer NOT NULL DEFAULT 0,
    provincial_code text CHECK (provincial_code IS NULL OR provincial_code ~ '^[0-9A-Za-z._-]{1,40}$'),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    version         integer NOT NULL DEFAULT 1,
    CHECK (parent_id IS DISTINCT FROM id)
);
CREATE INDEX event_type_parent ON event_type (parent_id, display_order);
CREATE UNIQUE INDEX event_type_sibling_name ON event_type (coalesce(parent_id, 0), name);

-- Rules per type × severity (业务规则): the time limit and clock unit of each phase, whether the
-- result needs on-site verification (核查), whether a grid worker may resolve it on the spot,
-- the default township platform (a platform key: zz 综治工作, sc 市场监管, zf 综合执法,
-- bm 便民服务; the unit is the township's org_unit coded <key><township code>), and the
-- escalation rule when a clock turns red (none, one level up, or skip to the city).
CREATE TABLE event_rule (
    id                      bigserial PRIMARY KEY,
    event_type_id           bigint NOT NULL REFERENCES event_type(id) ON DELETE CASCADE,
    severity                text NOT NULL CHECK (severity IN ('normal', 'major', 'urgent')),
    accept_limit            numeric NOT NULL CHECK (accept_limit > 0 AND accept_limit <= 10000),
    accept_unit             text NOT NULL CHECK (accept_unit IN ('natural_hours', 'working_hours', 'working_days')),
    sign_limit              numeric NOT NULL CHECK (sign_limit > 0 AND sign_limit <= 10000),
    sign_unit               text NOT NULL CHECK (sign_unit IN ('natural_hours', 'working_hours', 'working_days')),
    handle_limit            numeric NOT NULL CHECK (handle_limit > 0 AND handle_limit <= 10000),
    handle_unit             text NOT NULL CHECK (handle_unit IN ('natural_hours', 'working_hours', 'working_days')),
    verify_limit            numeric NOT NULL CHECK (verify_limit > 0 AND verify_limit <= 10000),
    verify_unit             text NOT NULL CHECK (verify_unit IN ('natural_hours', 'working_hours', 'working_days')),
    verification_required   boolean NOT NULL DEFAULT true,
    on_spot_allowed         boolean NOT NULL DEFAULT true,
    default_platform        text CHECK (default_platform ~ '^[a-z]{1,8}$'),
    escalation              text NOT NULL DEFAULT 'none' CHECK (escalation IN ('none', 'level', 'skip')),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    version                 integer NOT NULL DEFAULT 1,
    UNIQUE (event_type_id, severity)
);

-- Routing rules (路由规则): event type (NULL: any; a rule on a parent type covers its sub-types)
-- × severity (NULL: any) × region (the rule applies under its path) × level (the level whose
-- command centre routes) → a handling unit, or the event's own grid. The most specific rule
-- wins (deepest region, then deepest type, then a severity-specific one), then priority (lower
-- first). Scoped: a county maintains the rules under its own path.
CREATE TABLE routing_rule (
    id              bigserial PRIMARY KEY,
    event_type_id   bigint REFERENCES event_type(id) ON DELETE CASCADE,
    severity        text CHECK (severity IS NULL OR severity IN ('normal', 'major', 'urgent')),
    region_code     text NOT NULL,
    path            ltree NOT NULL,
    level           text NOT NULL CHECK (level IN ('township', 'county', 'city')),
    target_kind     text NOT NULL CHECK (target_kind IN ('unit', 'grid')),
    org_unit_id     bigint REFERENCES org_unit(id) ON DELETE CASCADE,
    priority        integer NOT NULL DEFAULT 100 CHECK (priority BETWEEN 0 AND 10000),
    active          boolean NOT NULL DEFAULT true,
    note            text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    version         integer NOT NULL DEFAULT 1,
    CHECK ((target_kind = 'unit') = (org_unit_id IS NOT NULL))
);
CREATE INDEX routing_rule_path ON routing_rule USING gist (path);
CREATE INDEX routing_rule_type ON routing_rule (event_type_id) WHERE active;
SELECT gridgov_meta.enable_scope_rls('routing_rule');

-- Events (事件): a located table. Address-only and region-only events have no point and take
-- the path the service derives from the geocoded address or the region code.
CREATE TABLE event (
    id                      bigserial PRIMARY KEY,
    code                    text NOT NULL UNIQUE,
    event_type_id           bigint NOT NULL REFERENCES event_type(id),
    source                  text NOT NULL CHECK (source IN ('patrol', 'commander', 'public',
                                'hotline_12345', 'police_110', 'external')),
    severity                text NOT NULL CHECK (severity IN ('normal', 'major', 'urgent')),
    state                   text NOT NULL CHECK (state IN ('reported', 'refused', 'accepted',
                                'dispatched', 'signed', 'return_requested', 'returned', 'handled',
                                'verified', 'closed', 'evaluated', 'merged')),
    level                   text NOT NULL DEFAULT 'township'
                                CHECK (level IN ('township', 'county', 'city')),
    -- The command centre (指挥室) holding the event for acceptance and dispatch.
    centre_unit_id          bigint REFERENCES org_unit(id),
    title                   text NOT NULL CHECK (length(title) BETWEEN 1 AND 100),
    description             text NOT NULL CHECK (length(description) BETWEEN 1 AND 4000),
    address                 text CHECK (address IS NULL OR length(address) BETWEEN 1 AND 500),
    standard_address_id     bigint,
    geom                    geometry(Point, 4490),
    geom_3857               geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    path                    ltree NOT NULL,
    region_id               bigint REFERENCES region(id),
    grid_code               text,
    township_code           text,
    h3_r7                   bigint,
    h3_r8                   bigint,
    h3_r9                   bigint,
    -- Flags kept for the record and for the commander's attention.
    nearest_grid            boolean NOT NULL DEFAULT false,
    snap_distance_m         double precision,
    no_rule_matched         boolean NOT NULL DEFAULT false,
    address_not_found       boolean NOT NULL DEFAULT false,
    reporter_user_id        bigint REFERENCES app_user(id) ON DELETE SET NULL,
    reporter_name           text CHECK (reporter_name IS NULL OR length(reporter_name) <= 50),
    reporter_phone_enc      bytea,
    reporter_phone_hash     bytea,
    reporter_phone_masked   text,
    external_ref            text CHECK (external_ref IS NULL OR length(external_ref) <= 100),
    merged_into_id          bigint REFERENCES event(id),
    resolved_on_spot        boolean NOT NULL DEFAULT false,
    supervised              boolean NOT NULL DEFAULT false,
    reminders               integer NOT NULL DEFAULT 0,
    evaluation_score        smallint CHECK (evaluation_score BETWEEN 1 AND 5),
    evaluation_note         text,
    -- The running phase clock's crossings, copied from event_clock for queue filters by colour.
    deadline_at             timestamptz,
    amber_at                timestamptz,
    reported_at             timestamptz NOT NULL DEFAULT now(),
    closed_at               timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    version                 integer NOT NULL DEFAULT 1,
    CHECK (merged_into_id IS DISTINCT FROM id)
);
CREATE INDEX event_geom ON event USING gist (geom);
CREATE INDEX event_geom_3857 ON event USING gist (geom_3857);
CREATE INDEX event_path ON event USING gist (path);
CREATE INDEX event_state ON event (state, reported_at);
CREATE INDEX event_type_idx ON event (event_type_id);
CREATE INDEX event_centre ON event (centre_unit_id, state);
CREATE INDEX event_reporter ON event (reporter_user_id);
CREATE INDEX event_reported_at ON event (reported_at);
CREATE INDEX event_grid ON event (grid_code);
CREATE INDEX event_h3_r7 ON event (h3_r7);
CREATE INDEX event_h3_r8 ON event (h3_r8);
CREATE INDEX event_h3_r9 ON event (h3_r9);
CREATE INDEX event_external_ref ON event (source, external_ref) WHERE external_ref IS NOT NULL;
CREATE INDEX event_text_trgm ON event USING gin ((title || ' ' || description || ' ' || coalesce(address, '')) gin_trgm_ops);
-- Events locate themselves with their own trigger rather than gridgov_meta.set_location: an
-- event belongs to the grid that handles it, which for a point in a gap between grids or just
-- outside the city is the nearest grid (flagged), not the village or nothing around it.
-- The tolerance comes from the transaction setting gridgov.event_snap_m (default 500 m).
CREATE FUNCTION gridgov_meta.set_event_location() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    hit record;
    tol double precision := coalesce(
        nullif(current_setting('gridgov.event_snap_m', true), '')::double precision, 500);
BEGIN
    IF NEW.geom IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.geom IS DISTINCT FROM OLD.geom) THEN
        SELECT * INTO hit FROM gridgov_meta.event_grid_for(NEW.geom);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no grid exists to place the event in' USING ERRCODE = 'GG422',
                DETAIL = 'location';
        END IF;
        IF hit.distance_m > tol THEN
            RAISE EXCEPTION 'the location lies % m from the nearest grid (at most % m allowed)',
                round(hit.distance_m::numeric), round(tol::numeric)
                USING ERRCODE = 'GG422', DETAIL = 'location';
        END IF;
        NEW.path := hit.path;
        NEW.region_id := hit.region_id;
        NEW.grid_code := hit.code;
        NEW.nearest_grid := hit.distance_m > 0;
        NEW.snap_distance_m := CASE WHEN hit.distance_m > 0 THEN hit.distance_m END;
    END IF;
    IF NEW.path IS NULL THEN
        RAISE EXCEPTION 'an event needs a location, an address or a region' USING ERRCODE = 'GG422',
            DETAIL = 'location';
    END IF;
    RETURN NEW;
END
$$;
-- Like the base-data tables, skipped for a bulk load by the owner that computed path, region_id
-- and grid_code itself (gridgov.trusted_location = 'on': the demo's year of events).
CREATE TRIGGER event_location BEFORE INSERT OR UPDATE OF geom ON event
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.set_event_location();
SELECT gridgov_meta.enable_scope_rls('event');

-- Child rows of an event take its path, so they are visible exactly where the event is (a bulk
-- load by the owner that wrote the paths itself skips it, as for the event's location).
CREATE FUNCTION gridgov_meta.event_child_path() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT e.path INTO NEW.path FROM event e WHERE e.id = NEW.event_id;
    IF NEW.path IS NULL THEN
        RAISE EXCEPTION 'no event %', NEW.event_id USING ERRCODE = 'GG422', DETAIL = 'event_id';
    END IF;
    RETURN NEW;
END
$$;

-- History (流转记录): one row per action, written in the same transaction. Append-only.
CREATE TABLE event_history (
    id              bigserial PRIMARY KEY,
    event_id        bigint NOT NULL REFERENCES event(id),
    path            ltree NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    action          text NOT NULL CHECK (action ~ '^[a-z_]{2,40}$'),
    from_state      text,
    to_state        text NOT NULL,
    actor_user_id   bigint,
    actor_name      text,
    unit_id         bigint REFERENCES org_unit(id),
    note            text CHECK (note IS NULL OR length(note) <= 2000),
    data            jsonb NOT NULL DEFAULT '{}',
    event_version   integer NOT NULL
);
CREATE INDEX event_history_event ON event_history (event_id, id);
CREATE INDEX event_history_actor ON event_history (actor_user_id, at);
CREATE INDEX event_history_path ON event_history USING gist (path);
CREATE TRIGGER event_history_path BEFORE INSERT ON event_history
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.event_child_path();
CREATE TRIGGER event_history_append_only BEFORE UPDATE OR DELETE ON event_history
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON event_history FROM gridgov_app;
SELECT gridgov_meta.enable_scope_rls('event_history');

-- Routes (路由结果): which unit should handle the event at a level, and why — the rule that
-- chose it, or that none matched. A new row per routing (intake, escalation).
CREATE TABLE event_route (
    id              bigserial PRIMARY KEY,
    event_id        bigint NOT NULL REFERENCES event(id),
    path            ltree NOT NULL,
    level           text NOT NULL CHECK (level IN ('township', 'county', 'city')),
    target_kind     text NOT NULL CHECK (target_kind IN ('unit', 'grid', 'none')),
    org_unit_id     bigint REFERENCES org_unit(id),
    grid_code       text,
    rule_kind       text NOT NULL CHECK (rule_kind IN ('routing_rule', 'type_default', 'none')),
    routing_rule_id bigint REFERENCES routing_rule(id) ON DELETE SET NULL,
    event_rule_id   bigint REFERENCES event_rule(id) ON DELETE SET NULL,
    reason          text NOT NULL,
    no_rule_matched boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_route_event ON event_route (event_id, id);
CREATE INDEX event_route_path ON event_route USING gist (path);
CREATE TRIGGER event_route_path BEFORE INSERT ON event_route
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.event_child_path();
SELECT gridgov_meta.enable_scope_rls('event_route');

-- Assignments (派遣): the lead unit (主办) and assisting units (协办) — an org unit or a grid.
-- Ended when the event is returned or reassigned; kept for the record.
CREATE TABLE event_assignment (
    id              bigserial PRIMARY KEY,
    event_id        bigint NOT NULL REFERENCES event(id),
    path            ltree NOT NULL,
    role            text NOT NULL CHECK (role IN ('lead', 'assist')),
    org_unit_id     bigint REFERENCES org_unit(id),
    grid_code       text,
    assigned_at     timestamptz NOT NULL DEFAULT now(),
    assigned_by     bigint,
    signed_at       timestamptz,
    signed_by       bigint,
    ended_at        timestamptz,
    end_reason      text,
    CHECK ((org_unit_id IS NULL) <> (grid_code IS NULL))
);
CREATE INDEX event_assignment_event ON event_assignment (event_id) WHERE ended_at IS NULL;
CREATE INDEX event_assignment_unit ON event_assignment (org_unit_id) WHERE ended_at IS NULL;
CREATE INDEX event_assignment_grid ON event_assignment (grid_code) WHERE ended_at IS NULL;
CREATE INDEX event_assignment_path ON event_assignment USING gist (path);
CREATE UNIQUE INDEX event_assignment_one_lead ON event_assignment (event_id)
    WHERE role = 'lead' AND ended_at IS NULL;
CREATE TRIGGER event_assignment_path BEFORE INSERT ON event_assignment
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.event_child_path();
SELECT gridgov_meta.enable_scope_rls('event_assignment');

-- Phase clocks (时限): a cache of what the history says, recomputed at every transition; the
-- running clock's deadline and amber crossing are absolute times, so colour is a comparison.
CREATE TABLE event_clock (
    event_id            bigint NOT NULL REFERENCES event(id),
    phase               text NOT NULL CHECK (phase IN ('accept', 'sign', 'handle', 'verify')),
    path                ltree NOT NULL,
    unit                text NOT NULL CHECK (unit IN ('natural_hours', 'working_hours', 'working_days')),
    limit_seconds       double precision NOT NULL,
    extension_seconds   double precision NOT NULL DEFAULT 0,
    elapsed_seconds     double precision NOT NULL DEFAULT 0,
    running             boolean NOT NULL,
    started_at          timestamptz NOT NULL,
    stopped_at          timestamptz,
    deadline_at         timestamptz,
    amber_at            timestamptz,
    status              text NOT NULL CHECK (status IN ('green', 'amber', 'red')),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, phase)
);
CREATE INDEX event_clock_running ON event_clock (deadline_at) WHERE running;
CREATE INDEX event_clock_path ON event_clock USING gist (path);
CREATE TRIGGER event_clock_path BEFORE INSERT ON event_clock
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.event_child_path();
SELECT gridgov_meta.enable_scope_rls('event_clock');

-- Extension requests (延期申请) with their decision; at most one pending per event.
CREATE TABLE event_extension (
    id              bigserial PRIMARY KEY,
    event_id        bigint NOT NULL REFERENCES event(id),
    path            ltree NOT NULL,
    phase           text NOT NULL CHECK (phase IN ('accept', 'sign', 'handle', 'verify')),
    seconds         double precision NOT NULL CHECK (seconds > 0),
    reason          text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    requested_at    timestamptz NOT NULL DEFAULT now(),
    requested_by    bigint,
    decided_at      timestamptz,
    decided_by      bigint,
    approved        boolean,
    decision_note   text,
    CHECK ((decided_at IS NULL) = (approved IS NULL))
);
CREATE UNIQUE INDEX event_extension_pending ON event_extension (event_id) WHERE decided_at IS NULL;
CREATE INDEX event_extension_path ON event_extension USING gist (path);
CREATE TRIGGER event_extension_path BEFORE INSERT ON event_extension
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.event_child_path();
SELECT gridgov_meta.enable_scope_rls('event_extension');

-- The holiday calendar (节假日与调休): a date listed here overrides the weekday rule — a holiday
-- (is_workday false) or a 调休 working weekend day (true). Seeded from chinesecalendar for the
-- years it knew when this was written; editable; a year with no rows is treated as plain
-- weekends and logged as missing.
CREATE TABLE holiday (
    day         date PRIMARY KEY,
    is_workday  boolean NOT NULL,
    name        text NOT NULL DEFAULT '' CHECK (length(name) <= 40),
    source      text NOT NULL DEFAULT 'manual' CHECK (source IN ('chinesecalendar', 'manual')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO holiday (day, is_workday, name, source)
SELECT d::date, w, n, 'chinesecalendar' FROM (VALUES
    ('2019-01-01', false, '元旦'), ('2019-02-02', true, '春节调休'), ('2019-02-03', true, '春节调休'),
    ('2019-02-04', false, '春节'), ('2019-02-05', false, '春节'), ('2019-02-06', false, '春节'),
    ('2019-02-07', false, '春节'), ('2019-02-08', false, '春节'), ('2019-02-09', false, '春节'),
    ('2019-02-10', false, '春节'), ('2019-04-05', false, '清明节'), ('2019-04-06', false, '清明节'),
    ('2019-04-07', false, '清明节'), ('2019-04-28', true, '劳动节调休'), ('2019-05-01', false, '劳动节'),
    ('2019-05-02', false, '劳动节'), ('2019-05-03', false, '劳动节'), ('2019-05-04', false, '劳动节'),
    ('2019-05-05', true, '劳动节调休'), ('2019-06-07', false, '端午节'), ('2019-06-08', false, '端午节'),
    ('2019-06-09', false, '端午节'), ('2019-09-13', false, '中秋节'), ('2019-09-14', false, '中秋节'),
    ('2019-09-15', false, '中秋节'), ('2019-09-29', true, '国庆节调休'), ('2019-10-01', false, '国庆节'),
    ('2019-10-02', false, '国庆节'), ('2019-10-03', false, '国庆节'), ('2019-10-04', false, '国庆节'),
    ('2019-10-05', false, '国庆节'), ('2019-10-06', false, '国庆节'), ('2019-10-07', false, '国庆节'),
    ('2019-10-12', true, '国庆节调休'), ('2020-01-01', false, '元旦'), ('2020-01-19', true, '春节调休'),
    ('2020-01-24', false, '春节'), ('2020-01-25', false, '春节'), ('2020-01-26', false, '春节'),
    ('2020-01-27', false, '春节'), ('2020-01-28', false, '春节'), ('2020-01-29', false, '春节'),
    ('2020-01-30', false, '春节'), ('2020-01-31', false, '春节'), ('2020-02-01', false, '春节'),
    ('2020-02-02', false, '春节'), ('2020-04-04', false, '清明节'), ('2020-04-05', false, '清明节'),
    ('2020-04-06', false, '清明节'), ('2020-04-26', true, '劳动节调休'), ('2020-05-01', false, '劳动节'),
    ('2020-05-02', false, '劳动节'), ('2020-05-03', false, '劳动节'), ('2020-05-04', false, '劳动节'),
    ('2020-05-05', false, '劳动节'), ('2020-05-09', true, '劳动节调休'), ('2020-06-25', false, '端午节'),
    ('2020-06-26', false, '端午节'), ('2020-06-27', false, '端午节'), ('2020-06-28', true, '端午节调休'),
    ('2020-09-27', true, '国庆节调休'), ('2020-10-01', false, '国庆节'), ('2020-10-02', false, '国庆节'),
    ('2020-10-03', false, '国庆节'), ('2020-10-04', false, '国庆节'), ('2020-10-05', false, '国庆节'),
    ('2020-10-06', false, '国庆节'), ('2020-10-07', false, '国庆节'), ('2020-10-08', false, '国庆节'),
    ('2020-10-10', true, '国庆节调休'), ('2021-01-01', false, '元旦'), ('2021-01-02', false, '元旦'),
    ('2021-01-03', false, '元旦'), ('2021-02-07', true, '春节调休'), ('2021-02-11', false, '春节'),
    ('2021-02-12', false, '春节'), ('2021-02-13', false, '春节'), ('2021-02-14', false, '春节'),
    ('2021-02-15', false, '春节'), ('2021-02-16', false, '春节'), ('2021-02-17', false, '春节'),
    ('2021-02-20', true, '春节调休'), ('2021-04-03', false, '清明节'), ('2021-04-04', false, '清明节'),
    ('2021-04-05', false, '清明节'), ('2021-04-25', true, '劳动节调休'), ('2021-05-01', false, '劳动节'),
    ('2021-05-02', false, '劳动节'), ('2021-05-03', false, '劳动节'), ('2021-05-04', false, '劳动节'),
    ('2021-05-05', false, '劳动节'), ('2021-05-08', true, '劳动节调休'), ('2021-06-12', false, '端午节'),
    ('2021-06-13', false, '端午节'), ('2021-06-14', false, '端午节'), ('2021-09-18', true, '中秋节调休'),
    ('2021-09-19', false, '中秋节'), ('2021-09-20', false, '中秋节'), ('2021-09-21', false, '中秋节'),
    ('2021-09-26', true, '国庆节调休'), ('2021-10-01', false, '国庆节'), ('2021-10-02', false, '国庆节'),
    ('2021-10-03', false, '国庆节'), ('2021-10-04', false, '国庆节'), ('2021-10-05', false, '国庆节'),
    ('2021-10-06', false, '国庆节'), ('2021-10-07', false, '国庆节'), ('2021-10-09', true, '国庆节调休'),
    ('2022-01-01', false, '元旦'), ('2022-01-02', false, '元旦'), ('2022-01-03', false, '元旦'),
    ('2022-01-29', true, '春节调休'), ('2022-01-30', true, '春节调休'), ('2022-01-31', false, '春节'),
    ('2022-02-01', false, '春节'), ('2022-02-02', false, '春节'), ('2022-02-03', false, '春节'),
    ('2022-02-04', false, '春节'), ('2022-02-05', false, '春节'), ('2022-02-06', false, '春节'),
    ('2022-04-02', true, '清明节调休'), ('2022-04-03', false, '清明节'), ('2022-04-04', false, '清明节'),
    ('2022-04-05', false, '清明节'), ('2022-04-24', true, '劳动节调休'), ('2022-04-30', false, '劳动节'),
    ('2022-05-01', false, '劳动节'), ('2022-05-02', false, '劳动节'), ('2022-05-03', false, '劳动节'),
    ('2022-05-04', false, '劳动节'), ('2022-05-07', true, '劳动节调休'), ('2022-06-03', false, '端午节'),
    ('2022-06-04', false, '端午节'), ('2022-06-05', false, '端午节'), ('2022-09-10', false, '中秋节'),
    ('2022-09-11', false, '中秋节'), ('2022-09-12', false, '中秋节'), ('2022-10-01', false, '国庆节'),
    ('2022-10-02', false, '国庆节'), ('2022-10-03', false, '国庆节'), ('2022-10-04', false, '国庆节'),
    ('2022-10-05', false, '国庆节'), ('2022-10-06', false, '国庆节'), ('2022-10-07', false, '国庆节'),
    ('2022-10-08', true, '国庆节调休'), ('2022-10-09', true, '国庆节调休'), ('2022-12-31', false, '元旦'),
    ('2023-01-01', false, '元旦'), ('2023-01-02', false, '元旦'), ('2023-01-21', false, '春节'),
    ('2023-01-22', false, '春节'), ('2023-01-23', false, '春节'), ('2023-01-24', false, '春节'),
    ('2023-01-25', false, '春节'), ('2023-01-26', false, '春节'), ('2023-01-27', false, '春节'),
    ('2023-01-28', true, '春节调休'), ('2023-01-29', true, '春节调休'), ('2023-04-05', false, '清明节'),
    ('2023-04-23', true, '劳动节调休'), ('2023-04-29', false, '劳动节'), ('2023-04-30', false, '劳动节'),
    ('2023-05-01', false, '劳动节'), ('2023-05-02', false, '劳动节'), ('2023-05-03', false, '劳动节'),
    ('2023-05-06', true, '劳动节调休'), ('2023-06-22', false, '端午节'), ('2023-06-23', false, '端午节'),
    ('2023-06-24', false, '端午节'), ('2023-06-25', true, '端午节调休'), ('2023-09-29', false, '中秋节'),
    ('2023-09-30', false, '国庆节'), ('2023-10-01', false, '国庆节'), ('2023-10-02', false, '国庆节'),
    ('2023-10-03', false, '国庆节'), ('2023-10-04', false, '国庆节'), ('2023-10-05', false, '国庆节'),
    ('2023-10-06', false, '国庆节'), ('2023-10-07', true, '国庆节调休'), ('2023-10-08', true, '国庆节调休'),
    ('2023-12-30', false, '元旦'), ('2023-12-31', false, '元旦'), ('2024-01-01', false, '元旦'),
    ('2024-02-04', true, '春节调休'), ('2024-02-10', false, '春节'), ('2024-02-11', false, '春节'),
    ('2024-02-12', false, '春节'), ('2024-02-13', false, '春节'), ('2024-02-14', false, '春节'),
    ('2024-02-15', false, '春节'), ('2024-02-16', false, '春节'), ('2024-02-17', false, '春节'),
    ('2024-02-18', true, '春节调休'), ('2024-04-04', false, '清明节'), ('2024-04-05', false, '清明节'),
    ('2024-04-06', false, '清明节'), ('2024-04-07', true, '清明节调休'), ('2024-04-28', true, '劳动节调休'),
    ('2024-05-01', false, '劳动节'), ('2024-05-02', false, '劳动节'), ('2024-05-03', false, '劳动节'),
    ('2024-05-04', false, '劳动节'), ('2024-05-05', false, '劳动节'), ('2024-05-11', true, '劳动节调休'),
    ('2024-06-10', false, '端午节'), ('2024-09-14', true, '中秋节调休'), ('2024-09-15', false, '中秋节'),
    ('2024-09-16', false, '中秋节'), ('2024-09-17', false, '中秋节'), ('2024-09-29', true, '国庆节调休'),
    ('2024-10-01', false, '国庆节'), ('2024-10-02', false, '国庆节'), ('2024-10-03', false, '国庆节'),
    ('2024-10-04', false, '国庆节'), ('2024-10-05', false, '国庆节'), ('2024-10-06', false, '国庆节'),
    ('2024-10-07', false, '国庆节'), ('2024-10-12', true, '国庆节调休'), ('2025-01-01', false, '元旦'),
    ('2025-01-26', true, '春节调休'), ('2025-01-28', false, '春节'), ('2025-01-29', false, '春节'),
    ('2025-01-30', false, '春节'), ('2025-01-31', false, '春节'), ('2025-02-01', false, '春节'),
    ('2025-02-02', false, '春节'), ('2025-02-03', false, '春节'), ('2025-02-04', false, '春节'),
    ('2025-02-08', true, '春节调休'), ('2025-04-04', false, '清明节'), ('2025-04-05', false, '清明节'),
    ('2025-04-06', false, '清明节'), ('2025-04-27', true, '劳动节调休'), ('2025-05-01', false, '劳动节'),
    ('2025-05-02', false, '劳动节'), ('2025-05-03', false, '劳动节'), ('2025-05-04', false, '劳动节'),
    ('2025-05-05', false, '劳动节'), ('2025-05-31', false, '端午节'), ('2025-06-01', false, '端午节'),
    ('2025-06-02', false, '端午节'), ('2025-09-28', true, '国庆节调休'), ('2025-10-01', false, '国庆节'),
    ('2025-10-02', false, '国庆节'), ('2025-10-03', false, '国庆节'), ('2025-10-04', false, '国庆节'),
    ('2025-10-05', false, '国庆节'), ('2025-10-06', false, '中秋节'), ('2025-10-07', false, '国庆节'),
    ('2025-10-08', false, '国庆节'), ('2025-10-11', true, '国庆节调休'), ('2026-01-01', false, '元旦'),
    ('2026-01-02', false, '元旦'), ('2026-01-03', false, '元旦'), ('2026-01-04', true, '元旦调休'),
    ('2026-02-14', true, '春节调休'), ('2026-02-15', false, '春节'), ('2026-02-16', false, '春节'),
    ('2026-02-17', false, '春节'), ('2026-02-18', false, '春节'), ('2026-02-19', false, '春节'),
    ('2026-02-20', false, '春节'), ('2026-02-21', false, '春节'), ('2026-02-22', false, '春节'),
    ('2026-02-23', false, '春节'), ('2026-02-28', true, '春节调休'), ('2026-04-04', false, '清明节'),
    ('2026-04-05', false, '清明节'), ('2026-04-06', false, '清明节'), ('2026-05-01', false, '劳动节'),
    ('2026-05-02', false, '劳动节'), ('2026-05-03', false, '劳动节'), ('2026-05-04', false, '劳动节'),
    ('2026-05-05', false, '劳动节'), ('2026-05-09', true, '劳动节调休'), ('2026-06-19', false, '端午节'),
    ('2026-06-20', false, '端午节'), ('2026-06-21', false, '端午节'), ('2026-09-20', true, '国庆节调休'),
    ('2026-09-25', false, '中秋节'), ('2026-09-26', false, '中秋节'), ('2026-09-27', false, '中秋节'),
    ('2026-10-01', false, '国庆节'), ('2026-10-02', false, '国庆节'), ('2026-10-03', false, '国庆节'),
    ('2026-10-04', false, '国庆节'), ('2026-10-05', false, '国庆节'), ('2026-10-06', false, '国庆节'),
    ('2026-10-07', false, '国庆节'), ('2026-10-10', true, '国庆节调休')
) AS v (d, w, n)
ON CONFLICT (day) DO NOTHING;

-- Lookups routing needs whatever the caller's scope: a grid worker's report is routed by rules
-- and to units that sit above the grid. They return names and ids only, never event rows.

-- The grid an event belongs to: a dedicated grid (专属网格: market, school) containing the point
-- first, then the general grid containing it, then the nearest general grid (gaps between
-- grids, water, just outside the city), with the distance in metres (0 inside). The caller
-- decides whether the distance is within its tolerance.
CREATE FUNCTION gridgov_meta.event_grid_for(g geometry)
RETURNS TABLE (region_id bigint, code text, path ltree, dedicated boolean,
               distance_m double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM (
        (SELECT r.id, r.code, r.path, r.grid_type = 'dedicated', 0.0::double precision
         FROM region r
         WHERE r.valid_to IS NULL AND r.level = 'grid' AND r.geom && g AND ST_Intersects(r.geom, g)
         ORDER BY r.grid_type = 'dedicated' DESC, r.area_km2
         LIMIT 1)
        UNION ALL
        (SELECT r.id, r.code, r.path, false, ST_Distance(r.geom::geography, g::geography)
         FROM region r
         WHERE r.valid_to IS NULL AND r.level = 'grid'
           AND r.grid_type IS DISTINCT FROM 'dedicated'
         -- Planar KNN in degrees only preselects; the decision is on geography metres.
         ORDER BY r.geom <-> g
         LIMIT 8)
    ) x (region_id, code, path, dedicated, distance_m)
    ORDER BY distance_m, dedicated DESC
    LIMIT 1
$$;

-- The current regions on a path (the region itself and its ancestors), top first.
CREATE FUNCTION gridgov_meta.event_regions_above(p ltree)
RETURNS TABLE (region_id bigint, code text, name text, level text, path ltree)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT r.id, r.code, r.name, r.level::text, r.path FROM region r
    WHERE r.valid_to IS NULL AND r.path @> p
    ORDER BY nlevel(r.path)
$$;

-- Active routing rules that may apply to an event of one of type_ids at path p, routed at lvl.
CREATE FUNCTION gridgov_meta.event_routing_rules(type_ids bigint[], sev text, p ltree, lvl text)
RETURNS TABLE (rule_id bigint, event_type_id bigint, severity text, region_code text,
               region_depth integer, target_kind text, org_unit_id bigint, unit_code text,
               unit_name text, priority integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT rr.id, rr.event_type_id, rr.severity, rr.region_code, nlevel(rr.path),
           rr.target_kind, rr.org_unit_id, o.code, o.name, rr.priority
    FROM routing_rule rr LEFT JOIN org_unit o ON o.id = rr.org_unit_id
    WHERE rr.active AND rr.level = lvl AND rr.path @> p
      AND (rr.event_type_id IS NULL OR rr.event_type_id = ANY (type_ids))
      AND (rr.severity IS NULL OR rr.severity = sev)
$$;

-- Org units by id or code (names are not secret; dispatching sends events to units above).
CREATE FUNCTION gridgov_meta.event_org_units(ids bigint[], codes text[])
RETURNS TABLE (id bigint, code text, name text, kind text, region_code text, path ltree)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT o.id, o.code, o.name, o.kind, o.region_code, o.path FROM org_unit o
    WHERE o.id = ANY (coalesce(ids, '{}')) OR o.code = ANY (coalesce(codes, '{}'))
$$;

-- The command centre (指挥室) at level lvl above path p.
CREATE FUNCTION gridgov_meta.event_centre_for(p ltree, lvl text)
RETURNS TABLE (id bigint, code text, name text, region_code text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT o.id, o.code, o.name, o.region_code
    FROM org_unit o JOIN region r ON r.code = o.region_code AND r.valid_to IS NULL
    WHERE o.kind = 'command_centre' AND r.level::text = lvl AND r.path @> p
    ORDER BY o.id
    LIMIT 1
$$;

-- The org units a user acts for: assignments naming a unit, and a command centre's staff
-- (command_centre_staff at a region) for that region's command centre.
CREATE FUNCTION gridgov_meta.event_units_of(uid bigint)
RETURNS TABLE (org_unit_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT DISTINCT o.id
    FROM staff_assignment sa
    JOIN org_unit o ON o.id = sa.org_unit_id
        OR (sa.org_unit_id IS NULL AND sa.position = 'command_centre_staff'
            AND o.kind = 'command_centre' AND o.region_code = sa.region_code)
    WHERE sa.user_id = uid AND sa.valid_to IS NULL
$$;

-- A bounding-box margin in degrees that covers at least m metres around g, for an index
-- prefilter only (duplicate search): the distance decision itself is made on geography.
CREATE FUNCTION gridgov_meta.event_expand_metres(g geometry, m double precision) RETURNS geometry
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ST_Expand(g,
        m / (111320.0 * cos(radians(least(89.0, abs(ST_Y(ST_Centroid(g))) + 0.5)))) * 1.01,
        m / 110574.0 * 1.01)
$$;

-- Whether any event (in any scope) has a type: a used type is retired, never deleted.
CREATE FUNCTION gridgov_meta.event_type_in_use(type_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM event WHERE event_type_id = type_id)
$$;

REVOKE ALL ON FUNCTION gridgov_meta.event_grid_for(geometry),
    gridgov_meta.event_regions_above(ltree),
    gridgov_meta.event_routing_rules(bigint[], text, ltree, text),
    gridgov_meta.event_org_units(bigint[], text[]), gridgov_meta.event_centre_for(ltree, text),
    gridgov_meta.event_units_of(bigint), gridgov_meta.event_type_in_use(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.event_grid_for(geometry),
    gridgov_meta.event_regions_above(ltree),
    gridgov_meta.event_routing_rules(bigint[], text, ltree, text),
    gridgov_meta.event_org_units(bigint[], text[]), gridgov_meta.event_centre_for(ltree, text),
    gridgov_meta.event_units_of(bigint), gridgov_meta.event_type_in_use(bigint) TO gridgov_app;

-- Permissions and their grants to the built-in roles.
INSERT INTO permission (name, description) VALUES
    ('event.read', '查看事件'),
    ('event.report', '上报事件、就地解决'),
    ('event.dispatch', '受理、派遣、改派、审核、上报、办结'),
    ('event.handle', '签收、处置、申请退回、申请延期'),
    ('event.verify', '核查'),
    ('event.supervise', '催办、督办'),
    ('event.evaluate', '评价'),
    ('event.admin', '事件类型、业务规则、路由规则与节假日管理')
ON CONFLICT (name) DO NOTHING;

INSERT INTO role_permission (role_id, permission)
SELECT r.id, p FROM role r, LATERAL unnest(CASE r.name
    WHEN 'admin' THEN ARRAY['event.read', 'event.admin']
    WHEN 'city_commander' THEN ARRAY['event.read', 'event.report', 'event.dispatch',
        'event.verify', 'event.supervise', 'event.evaluate']
    WHEN 'county_commander' THEN ARRAY['event.read', 'event.report', 'event.dispatch',
        'event.verify', 'event.supervise', 'event.evaluate', 'event.admin']
    WHEN 'township_commander' THEN ARRAY['event.read', 'event.report', 'event.dispatch',
        'event.verify', 'event.supervise', 'event.evaluate']
    WHEN 'grid_instructor' THEN ARRAY['event.read']
    WHEN 'grid_leader' THEN ARRAY['event.read', 'event.report', 'event.handle', 'event.verify',
        'event.evaluate']
    WHEN 'grid_worker' THEN ARRAY['event.read', 'event.report', 'event.handle', 'event.verify',
        'event.evaluate']
    WHEN 'part_time_grid_worker' THEN ARRAY['event.read', 'event.report']
    WHEN 'party_group_leader' THEN ARRAY['event.read', 'event.report']
    WHEN 'department_staff' THEN ARRAY['event.read', 'event.handle']
    WHEN 'analyst' THEN ARRAY['event.read']
    WHEN 'viewer' THEN ARRAY['event.read']
    ELSE ARRAY[]::text[] END) AS p
ON CONFLICT DO NOTHING;

