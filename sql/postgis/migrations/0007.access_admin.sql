-- Access administration: separated administrator duties (三员分立) enforced on role
-- definitions, the account-phone permission, and the single sign-on lookup.

-- Which administrator duty a permission belongs to: only roles of that duty may hold it.
ALTER TABLE permission ADD COLUMN admin_duty text
    CHECK (admin_duty IN ('system', 'security', 'audit'));
UPDATE permission SET admin_duty = 'system' WHERE name = 'user.admin';
UPDATE permission SET admin_duty = 'security' WHERE name = 'role.admin';
UPDATE permission SET admin_duty = 'audit' WHERE name = 'audit.read';

INSERT INTO permission (name, description) VALUES
    ('user.read_sensitive', '查看账号未脱敏手机号')
ON CONFLICT DO NOTHING;
INSERT INTO role_permission (role_id, permission)
SELECT id, 'user.read_sensitive' FROM role WHERE name = 'admin'
ON CONFLICT DO NOTHING;

-- 三员分立 on role definitions: a duty's permissions go only to roles of that duty; the audit
-- duty holds nothing else; the security duty holds besides its own only what it needs to pick
-- jurisdictions and staff; '*' is the system itself and never a role's.
CREATE FUNCTION gridgov_meta.role_permission_duty() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    role_duty text;
    role_name text;
    perm_duty text;
BEGIN
    IF NEW.permission = '*' THEN
        RAISE EXCEPTION 'the permission * belongs to the system, not to a role'
            USING ERRCODE = 'GG422', DETAIL = 'permissions';
    END IF;
    SELECT admin_duty, name INTO role_duty, role_name FROM role WHERE id = NEW.role_id;
    SELECT admin_duty INTO perm_duty FROM permission WHERE name = NEW.permission;
    IF perm_duty IS NOT NULL AND perm_duty IS DISTINCT FROM role_duty THEN
        RAISE EXCEPTION 'administrator duties are separated: % is a % duty and role % is not',
            NEW.permission, perm_duty, role_name USING ERRCODE = 'GG422', DETAIL = 'permissions';
    END IF;
    IF role_duty = 'audit' AND perm_duty IS DISTINCT FROM 'audit' THEN
        RAISE EXCEPTION 'administrator duties are separated: audit role % holds only audit '
            'permissions, not %', role_name, NEW.permission
            USING ERRCODE = 'GG422', DETAIL = 'permissions';
    END IF;
    IF role_duty = 'security' AND perm_duty IS DISTINCT FROM 'security'
            AND NEW.permission NOT IN ('region.read', 'staff.read') THEN
        RAISE EXCEPTION 'administrator duties are separated: security role % cannot hold %',
            role_name, NEW.permission USING ERRCODE = 'GG422', DETAIL = 'permissions';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER role_permission_duty BEFORE INSERT OR UPDATE ON role_permission
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.role_permission_duty();

-- A role's duty is fixed when it is created: changing it would smuggle permissions across.
CREATE FUNCTION gridgov_meta.role_duty_fixed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.admin_duty IS DISTINCT FROM OLD.admin_duty THEN
        RAISE EXCEPTION 'the administrator duty of role % cannot change', OLD.name
            USING ERRCODE = 'GG422', DETAIL = 'admin_duty';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER role_duty_fixed BEFORE UPDATE OF admin_duty ON role
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.role_duty_fixed();

-- The audit administrator's account holds no other role: it reads the log and nothing else.
CREATE FUNCTION gridgov_meta.user_role_audit_alone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    clash text;
BEGIN
    SELECT r.name INTO clash
    FROM user_role ur JOIN role r ON r.id = ur.role_id, role n
    WHERE ur.user_id = NEW.user_id AND n.id = NEW.role_id AND ur.role_id <> NEW.role_id
      -- exactly one of the two roles is an audit role
      AND (r.admin_duty IS NOT DISTINCT FROM 'audit') <> (n.admin_duty IS NOT DISTINCT FROM 'audit')
    LIMIT 1;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'administrator duties are separated: an audit account holds no other '
            'role (this account already holds %)', clash USING ERRCODE = 'GG409', DETAIL = clash;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER user_role_audit_alone BEFORE INSERT OR UPDATE ON user_role
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.user_role_audit_alone();

-- Single sign-on: find the local account bound to an external identity, whatever the
-- caller's scope (like user_for_login, authentication comes before the scope is known).
CREATE FUNCTION gridgov_meta.user_for_subject(subject text)
RETURNS TABLE (id bigint, is_active boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT u.id, u.is_active FROM app_user u WHERE u.external_subject = subject
$$;
REVOKE ALL ON FUNCTION gridgov_meta.user_for_subject(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.user_for_subject(text) TO gridgov_app;

-- The admin API pages through the audit log newest first, often for one actor or action.
CREATE INDEX audit_log_actor_id ON audit_log (actor_user_id, id);
CREATE INDEX audit_log_action_id ON audit_log (action, id);
