-- Access: accounts, sessions, API tokens, roles and permissions as data, jurisdiction scopes,
-- staff positions and assignments, and the append-only audit log.

CREATE TABLE permission (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z_*]+(\.[a-z_]+)*$'),
    description text NOT NULL DEFAULT ''
);

-- 三员分立: the three administrator roles are exclusive (see user_role_exclusive below).
CREATE TABLE role (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z_]{2,40}$'),
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    admin_duty  text CHECK (admin_duty IN ('system', 'security', 'audit')),
    builtin     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role_permission (
    role_id     bigint NOT NULL REFERENCES role(id) ON DELETE CASCADE,
    permission  text NOT NULL REFERENCES permission(name) ON DELETE CASCADE,
    PRIMARY KEY (role_id, permission)
);

CREATE TABLE app_user (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL CHECK (username ~ '^[A-Za-z0-9_.@-]{3,64}$'),
    display_name    text NOT NULL,
    phone_enc       bytea,
    phone_masked    text,
    password_hash   text,
    is_active       boolean NOT NULL DEFAULT true,
    must_change_password boolean NOT NULL DEFAULT false,
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    last_login_at   timestamptz,
    -- The region the account is managed from: admins see accounts under their own scope.
    home_region_code text NOT NULL,
    path            ltree NOT NULL,
    external_subject text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    version         integer NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX app_user_username ON app_user (lower(username));
CREATE UNIQUE INDEX app_user_external ON app_user (external_subject) WHERE external_subject IS NOT NULL;
CREATE INDEX app_user_path ON app_user USING gist (path);
SELECT gridgov_meta.enable_scope_rls('app_user');

CREATE TABLE user_role (
    user_id     bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    role_id     bigint NOT NULL REFERENCES role(id) ON DELETE RESTRICT,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    granted_by  bigint,
    PRIMARY KEY (user_id, role_id)
);

-- No account holds two administrator duties (三员分立).
CREATE FUNCTION gridgov_meta.user_role_exclusive() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    duty text;
    clash text;
BEGIN
    SELECT admin_duty INTO duty FROM role WHERE id = NEW.role_id;
    IF duty IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT r.name INTO clash FROM user_role ur JOIN role r ON r.id = ur.role_id
    WHERE ur.user_id = NEW.user_id AND r.admin_duty IS NOT NULL AND r.admin_duty <> duty
    LIMIT 1;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'administrator duties are separated: this account already holds %', clash
            USING ERRCODE = 'GG409', DETAIL = clash;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER user_role_exclusive BEFORE INSERT OR UPDATE ON user_role
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.user_role_exclusive();

-- Jurisdiction: the regions a user may see and act in (by code; paths are looked up current).
CREATE TABLE user_scope (
    user_id     bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    region_code text NOT NULL,
    PRIMARY KEY (user_id, region_code)
);

-- Departments (职能部门) and command centres (指挥室) are units at a region.
CREATE TABLE org_unit (
    id          bigserial PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('command_centre', 'department', 'platform')),
    region_code text NOT NULL,
    path        ltree NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX org_unit_path ON org_unit USING gist (path);
SELECT gridgov_meta.enable_scope_rls('org_unit');

-- Staff positions and assignments: a grid worker to their grid(s), a department account bound
-- to grids (入格), a commander to a command centre.
CREATE TYPE staff_position AS ENUM (
    'grid_instructor', 'grid_leader', 'grid_worker', 'part_time_grid_worker',
    'party_group_leader', 'command_centre_staff', 'department_staff');

CREATE TABLE staff_assignment (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    position    staff_position NOT NULL,
    region_code text NOT NULL,
    org_unit_id bigint REFERENCES org_unit(id) ON DELETE CASCADE,
    path        ltree NOT NULL,
    valid_from  timestamptz NOT NULL DEFAULT now(),
    valid_to    timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX staff_assignment_user ON staff_assignment (user_id) WHERE valid_to IS NULL;
CREATE INDEX staff_assignment_region ON staff_assignment (region_code) WHERE valid_to IS NULL;
CREATE INDEX staff_assignment_path ON staff_assignment USING gist (path);
SELECT gridgov_meta.enable_scope_rls('staff_assignment');

-- Web sessions: the cookie holds a random token; only its hash is stored.
CREATE TABLE web_session (
    id              bigserial PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE,
    csrf_hash       bytea NOT NULL,
    user_id         bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    idle_seconds    integer NOT NULL,
    revoked_at      timestamptz,
    ip              inet,
    user_agent      text
);
CREATE INDEX web_session_user ON web_session (user_id) WHERE revoked_at IS NULL;

-- Personal API tokens for scripts, QGIS and GDAL: hashed, scoped to permissions, expiring.
CREATE TABLE api_token (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    name            text NOT NULL,
    token_hash      bytea NOT NULL UNIQUE,
    prefix          text NOT NULL,
    permissions     text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    last_used_at    timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX api_token_user ON api_token (user_id) WHERE revoked_at IS NULL;

-- Audit (等保): logins, writes, permission changes, exports, unmasked reads. Append-only.
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor_user_id   bigint,
    actor_username  text,
    action          text NOT NULL,
    object_kind     text,
    object_id       text,
    before          jsonb,
    after           jsonb,
    detail          jsonb NOT NULL DEFAULT '{}',
    ip              inet,
    user_agent      text,
    request_id      text,
    success         boolean NOT NULL DEFAULT true
);
CREATE INDEX audit_log_at ON audit_log USING brin (at);
CREATE INDEX audit_log_actor ON audit_log (actor_user_id, at);
CREATE INDEX audit_log_action ON audit_log (action, at);
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM gridgov_app;

CREATE FUNCTION gridgov_meta.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'GG409';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.refuse_change();

-- Resolve a credential (session or token hash) to its user, whatever the caller's scope:
-- authentication happens before the scope is known. Runs as the owner.
CREATE FUNCTION gridgov_meta.resolve_session(h bytea)
RETURNS TABLE (session_id bigint, user_id bigint, csrf_hash bytea, last_seen_at timestamptz,
               expires_at timestamptz, idle_seconds integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT s.id, s.user_id, s.csrf_hash, s.last_seen_at, s.expires_at, s.idle_seconds
    FROM web_session s JOIN app_user u ON u.id = s.user_id
    WHERE s.token_hash = h AND s.revoked_at IS NULL AND u.is_active
      AND s.expires_at > now() AND s.last_seen_at + make_interval(secs => s.idle_seconds) > now()
$$;

CREATE FUNCTION gridgov_meta.resolve_token(h bytea)
RETURNS TABLE (token_id bigint, user_id bigint, permissions text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.id, t.user_id, t.permissions
    FROM api_token t JOIN app_user u ON u.id = t.user_id
    WHERE t.token_hash = h AND t.revoked_at IS NULL AND t.expires_at > now() AND u.is_active
$$;

-- Everything needed to build a Principal for one user: roles, permissions, scope paths, grids.
CREATE FUNCTION gridgov_meta.principal_of(uid bigint)
RETURNS TABLE (username text, display_name text, roles text[], permissions text[],
               scope text[], grid_codes text[], must_change_password boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT u.username, u.display_name,
        coalesce((SELECT array_agg(DISTINCT r.name) FROM user_role ur JOIN role r ON r.id = ur.role_id
                  WHERE ur.user_id = u.id), '{}'),
        coalesce((SELECT array_agg(DISTINCT rp.permission) FROM user_role ur
                  JOIN role_permission rp ON rp.role_id = ur.role_id WHERE ur.user_id = u.id), '{}'),
        -- '*' is the whole tree (the first administrator, before any region exists)
        coalesce((SELECT array_agg(DISTINCT CASE WHEN us.region_code = '*' THEN ''
                                                 ELSE g.path::text END)
                  FROM user_scope us
                  LEFT JOIN region g ON g.code = us.region_code AND g.valid_to IS NULL
                  WHERE us.user_id = u.id AND (us.region_code = '*' OR g.id IS NOT NULL)), '{}'),
        coalesce((SELECT array_agg(DISTINCT sa.region_code) FROM staff_assignment sa
                  JOIN region g ON g.code = sa.region_code AND g.valid_to IS NULL
                  WHERE sa.user_id = u.id AND sa.valid_to IS NULL
                    AND g.level IN ('grid', 'micro_grid')), '{}'),
        u.must_change_password
    FROM app_user u WHERE u.id = uid AND u.is_active
$$;

-- Look a user up by name for login, whatever the caller's scope.
CREATE FUNCTION gridgov_meta.user_for_login(name text)
RETURNS TABLE (id bigint, password_hash text, failed_logins integer, locked_until timestamptz,
               is_active boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT u.id, u.password_hash, u.failed_logins, u.locked_until, u.is_active
    FROM app_user u WHERE lower(u.username) = lower(name)
$$;

-- Record a login outcome (failures count towards lockout), whatever the caller's scope.
CREATE FUNCTION gridgov_meta.record_login(uid bigint, ok boolean, lock_after integer,
                                          base_lock_seconds integer)
RETURNS TABLE (failed_logins integer, locked_until timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE app_user u SET
        failed_logins = CASE WHEN ok THEN 0 ELSE u.failed_logins + 1 END,
        last_login_at = CASE WHEN ok THEN now() ELSE u.last_login_at END,
        -- growing lockout: base, then doubling with every further failure
        locked_until = CASE
            WHEN ok THEN NULL
            WHEN u.failed_logins + 1 >= lock_after THEN now() + make_interval(
                secs => base_lock_seconds * power(2, least(10, u.failed_logins + 1 - lock_after)))
            ELSE u.locked_until END
    WHERE u.id = uid
    RETURNING u.failed_logins, u.locked_until
$$;

REVOKE ALL ON FUNCTION gridgov_meta.resolve_session(bytea), gridgov_meta.resolve_token(bytea),
    gridgov_meta.principal_of(bigint), gridgov_meta.user_for_login(text),
    gridgov_meta.record_login(bigint, boolean, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.resolve_session(bytea), gridgov_meta.resolve_token(bytea),
    gridgov_meta.principal_of(bigint), gridgov_meta.user_for_login(text),
    gridgov_meta.record_login(bigint, boolean, integer, integer) TO gridgov_app;

-- Sessions and tokens are touched by the auth layer for any user.
CREATE FUNCTION gridgov_meta.touch_session(sid bigint) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE web_session SET last_seen_at = now()
    WHERE id = sid AND last_seen_at < now() - interval '30 seconds'
$$;
CREATE FUNCTION gridgov_meta.touch_token(tid bigint) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE api_token SET last_used_at = now()
    WHERE id = tid AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')
$$;
GRANT EXECUTE ON FUNCTION gridgov_meta.touch_session(bigint), gridgov_meta.touch_token(bigint)
    TO gridgov_app;

-- Permissions and built-in roles. Later migrations add their own permissions and grants.
INSERT INTO permission (name, description) VALUES
    ('*', 'everything (system only)'),
    ('region.read', '查看区划网格'), ('region.write', '维护区划网格'),
    ('address.read', '查看标准地址'), ('address.write', '维护标准地址'),
    ('building.read', '查看建筑物'), ('building.write', '维护建筑物'),
    ('person.read', '查看实有人口'), ('person.write', '维护实有人口'),
    ('person.read_sensitive', '查看未脱敏个人信息'),
    ('place.read', '查看场所部件'), ('place.write', '维护场所部件'),
    ('enterprise.read', '查看企业组织'), ('enterprise.write', '维护企业组织'),
    ('claim.read', '查看数据认领'), ('claim.act', '认领、退回、移交'),
    ('export', '导出数据'),
    ('special.community_correction', '特殊人群: 社区矫正'),
    ('special.drug_rehab', '特殊人群: 戒毒'),
    ('special.mental_illness', '特殊人群: 严重精神障碍'),
    ('special.released_prisoner', '特殊人群: 刑满释放'),
    ('special.petition_key', '特殊人群: 重点信访'),
    ('user.admin', '系统管理: 账号与人员'), ('role.admin', '安全管理: 角色、权限与辖区'),
    ('audit.read', '审计管理: 查看审计日志'),
    ('staff.read', '查看辖区力量');

INSERT INTO role (name, title, admin_duty, builtin, description) VALUES
    ('admin', '系统管理员', 'system', true, 'accounts, staff and base data of its jurisdiction'),
    ('security_admin', '安全管理员', 'security', true, 'roles, permissions and scopes'),
    ('audit_admin', '审计管理员', 'audit', true, 'reads the audit log, nothing else'),
    ('city_commander', '市级指挥室', NULL, true, ''),
    ('county_commander', '县级指挥室', NULL, true, ''),
    ('township_commander', '乡镇指挥室', NULL, true, ''),
    ('grid_instructor', '网格指导员', NULL, true, ''),
    ('grid_leader', '网格长', NULL, true, ''),
    ('grid_worker', '专职网格员', NULL, true, ''),
    ('part_time_grid_worker', '兼职网格员', NULL, true, ''),
    ('party_group_leader', '党小组长', NULL, true, ''),
    ('department_staff', '部门人员', NULL, true, ''),
    ('analyst', '分析员', NULL, true, ''),
    ('viewer', '只读', NULL, true, '');

INSERT INTO role_permission (role_id, permission)
SELECT r.id, p FROM role r, LATERAL unnest(CASE r.name
    WHEN 'admin' THEN ARRAY['user.admin', 'staff.read', 'region.read', 'region.write',
        'address.read', 'address.write', 'building.read', 'building.write', 'person.read',
        'person.write', 'place.read', 'place.write', 'enterprise.read', 'enterprise.write',
        'claim.read', 'claim.act', 'export']
    WHEN 'security_admin' THEN ARRAY['role.admin', 'region.read']
    WHEN 'audit_admin' THEN ARRAY['audit.read']
    WHEN 'city_commander' THEN ARRAY['region.read', 'address.read', 'building.read',
        'person.read', 'place.read', 'enterprise.read', 'claim.read', 'staff.read', 'export']
    WHEN 'county_commander' THEN ARRAY['region.read', 'address.read', 'building.read',
        'person.read', 'place.read', 'enterprise.read', 'claim.read', 'claim.act', 'staff.read',
        'export']
    WHEN 'township_commander' THEN ARRAY['region.read', 'region.write', 'address.read',
        'address.write', 'building.read', 'building.write', 'person.read', 'person.write',
        'place.read', 'place.write', 'enterprise.read', 'enterprise.write', 'claim.read',
        'claim.act', 'staff.read', 'export']
    WHEN 'grid_instructor' THEN ARRAY['region.read', 'address.read', 'building.read',
        'person.read', 'place.read', 'enterprise.read', 'staff.read']
    WHEN 'grid_leader' THEN ARRAY['region.read', 'address.read', 'building.read',
        'building.write', 'person.read', 'person.write', 'person.read_sensitive', 'place.read',
        'place.write', 'enterprise.read', 'claim.read', 'claim.act', 'staff.read']
    WHEN 'grid_worker' THEN ARRAY['region.read', 'address.read', 'building.read',
        'building.write', 'person.read', 'person.write', 'person.read_sensitive', 'place.read',
        'place.write', 'enterprise.read', 'claim.read', 'claim.act', 'staff.read']
    WHEN 'part_time_grid_worker' THEN ARRAY['region.read', 'address.read', 'building.read',
        'person.read', 'place.read']
    WHEN 'party_group_leader' THEN ARRAY['region.read', 'person.read']
    WHEN 'department_staff' THEN ARRAY['region.read', 'address.read', 'building.read',
        'place.read', 'enterprise.read']
    WHEN 'analyst' THEN ARRAY['region.read', 'address.read', 'building.read', 'person.read',
        'place.read', 'enterprise.read', 'export']
    WHEN 'viewer' THEN ARRAY['region.read']
    ELSE ARRAY[]::text[] END) AS p;
