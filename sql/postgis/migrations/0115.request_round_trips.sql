-- One round trip to authenticate a request (issue #5: report intake at 50 reports/s).
--
-- A bearer token or session cookie took three statements on every request: resolve the
-- credential, build the principal, touch the idle clock. These functions do the three in one
-- call with the same rules (resolve_token / resolve_session decide validity, principal_of
-- builds the principal, the touch is throttled as touch_token / touch_session do).
-- No principal (an inactive user) means no row, and then nothing is touched.

CREATE FUNCTION gridgov_meta.authenticate_token(h bytea)
RETURNS TABLE (token_id bigint, user_id bigint, token_permissions text[], username text,
               display_name text, roles text[], permissions text[], scope text[],
               grid_codes text[], must_change_password boolean)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH found AS (
        SELECT t.token_id, t.user_id, t.permissions AS token_permissions, p.*
        FROM gridgov_meta.resolve_token(h) t
        CROSS JOIN LATERAL gridgov_meta.principal_of(t.user_id) p
    ), touched AS (
        UPDATE api_token a SET last_used_at = now() FROM found
        WHERE a.id = found.token_id
          AND (a.last_used_at IS NULL OR a.last_used_at < now() - interval '60 seconds')
        RETURNING a.id
    )
    SELECT token_id, user_id, token_permissions, username, display_name, roles, permissions,
           scope, grid_codes, must_change_password FROM found
$$;

CREATE FUNCTION gridgov_meta.authenticate_session(h bytea)
RETURNS TABLE (session_id bigint, user_id bigint, csrf_hash bytea, username text,
               display_name text, roles text[], permissions text[], scope text[],
               grid_codes text[], must_change_password boolean)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH found AS (
        SELECT s.session_id, s.user_id, s.csrf_hash, p.*
        FROM gridgov_meta.resolve_session(h) s
        CROSS JOIN LATERAL gridgov_meta.principal_of(s.user_id) p
    ), touched AS (
        UPDATE web_session w SET last_seen_at = now() FROM found
        WHERE w.id = found.session_id AND w.last_seen_at < now() - interval '30 seconds'
        RETURNING w.id
    )
    SELECT session_id, user_id, csrf_hash, username, display_name, roles, permissions, scope,
           grid_codes, must_change_password FROM found
$$;

REVOKE ALL ON FUNCTION gridgov_meta.authenticate_token(bytea),
    gridgov_meta.authenticate_session(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.authenticate_token(bytea),
    gridgov_meta.authenticate_session(bytea) TO gridgov_app;
