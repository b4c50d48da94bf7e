-- Message center (消息中心): notifications per user (new dispatch, reminder, supervision,
-- overdue, returned …), per-user message settings, and the triggers that write them.
--
-- Notifications are written by the database, not by the services: a trigger on the event
-- history (and on broadcasts) creates the rows for the people concerned and announces each
-- on NOTIFY gridgov_messages, so every write path — the API, the phone, partner intake, the
-- overdue job — notifies without code of its own. The event trigger is deferred to COMMIT:
-- it sees the transaction's final state (a report resolved on the spot in the same
-- transaction waits for nobody) and a rolled-back action notifies no one.
--
-- Unlike located data, a notification belongs to a person, not a place: row-level security
-- keys on the acting user (gridgov.user_id, set per transaction by the service), so a user
-- sees only their own rows whatever their jurisdiction.

-- The acting user of the transaction (set with set_config('gridgov.user_id', …, true));
-- unset means nobody, and nobody owns no notification.
CREATE FUNCTION gridgov_meta.acting_user() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('gridgov.user_id', true), '')::bigint
$$;

CREATE TABLE notification (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('new_report', 'new_dispatch', 'reminder',
                        'supervision', 'overdue', 'returned', 'return_requested', 'escalated',
                        'verify_failed', 'broadcast')),
    event_id        bigint REFERENCES event(id) ON DELETE CASCADE,
    -- The history row that caused it (one notification per user and history row).
    history_id      bigint,
    broadcast_id    bigint REFERENCES broadcast(id) ON DELETE CASCADE,
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body            text NOT NULL DEFAULT '' CHECK (length(body) <= 4000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    read_at         timestamptz
);
CREATE INDEX notification_user ON notification (user_id, id);
CREATE INDEX notification_unread ON notification (user_id, id) WHERE read_at IS NULL;
CREATE INDEX notification_event ON notification (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX notification_created ON notification USING brin (created_at);
CREATE UNIQUE INDEX notification_once_history ON notification (user_id, history_id)
    WHERE history_id IS NOT NULL;
CREATE UNIQUE INDEX notification_once_broadcast ON notification (user_id, broadcast_id)
    WHERE broadcast_id IS NOT NULL;
ALTER TABLE notification ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON notification
    USING (user_id = (SELECT gridgov_meta.acting_user()))
    WITH CHECK (user_id = (SELECT gridgov_meta.acting_user()));
-- Rows come only from the triggers below; a reader may only mark them read.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON notification FROM gridgov_app;
GRANT UPDATE (read_at) ON notification TO gridgov_app;

-- Message settings (消息设置): the kinds a user does not want, and 免打扰 (muted: messages are
-- kept and counted, but the page shows no pop-up). Supervision (督办) cannot be turned off.
CREATE TABLE notification_setting (
    user_id         bigint PRIMARY KEY REFERENCES app_user(id) ON DELETE CASCADE,
    disabled_kinds  text[] NOT NULL DEFAULT '{}'
                        CHECK (NOT ('supervision' = ANY (disabled_kinds))),
    muted           boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE notification_setting ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON notification_setting
    USING (user_id = (SELECT gridgov_meta.acting_user()))
    WITH CHECK (user_id = (SELECT gridgov_meta.acting_user()));
REVOKE DELETE, TRUNCATE ON notification_setting FROM gridgov_app;

-- The people of org units and grids: a unit's staff (and, for a command centre, the
-- command_centre_staff of its region, as gridgov_meta.event_units_of), and everyone assigned
-- to a grid (网格长, 网格员, departments bound to it: 入格).
CREATE FUNCTION gridgov_meta.notification_people(units bigint[], grids text[])
RETURNS SETOF bigint
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT sa.user_id FROM staff_assignment sa
    WHERE sa.valid_to IS NULL AND sa.org_unit_id = ANY (coalesce(units, '{}'))
    UNION
    SELECT sa.user_id FROM staff_assignment sa
    JOIN org_unit o ON o.kind = 'command_centre' AND o.region_code = sa.region_code
    WHERE sa.valid_to IS NULL AND sa.org_unit_id IS NULL
      AND sa.position = 'command_centre_staff' AND o.id = ANY (coalesce(units, '{}'))
    UNION
    SELECT sa.user_id FROM staff_assignment sa
    WHERE sa.valid_to IS NULL AND sa.region_code = ANY (coalesce(grids, '{}'))
$$;

-- Who holds an event now: its open assignments (主办 and 协办), else its command centre.
CREATE FUNCTION gridgov_meta.notification_holders(ev bigint) RETURNS bigint[]
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
    units bigint[];
    grids text[];
BEGIN
    SELECT array_agg(org_unit_id) FILTER (WHERE org_unit_id IS NOT NULL),
           array_agg(grid_code) FILTER (WHERE grid_code IS NOT NULL)
    INTO units, grids
    FROM event_assignment WHERE event_id = ev AND ended_at IS NULL;
    IF units IS NULL AND grids IS NULL THEN
        SELECT ARRAY[centre_unit_id] INTO units FROM event WHERE id = ev;
    END IF;
    RETURN ARRAY(SELECT gridgov_meta.notification_people(units, grids));
END
$$;

-- Write one notification per recipient (active accounts, not the actor, not turned off) and
-- announce each on gridgov_messages; return how many were written.
CREATE FUNCTION gridgov_meta.deliver_notifications(
    recipients bigint[], k text, actor bigint, ev bigint, hist bigint, bc bigint,
    title_text text, body_text text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    WITH ins AS (
        INSERT INTO notification (user_id, kind, event_id, history_id, broadcast_id, title, body)
        SELECT r.u, k, ev, hist, bc, left(title_text, 200), left(coalesce(body_text, ''), 4000)
        FROM (SELECT DISTINCT unnest(recipients) AS u) r
        JOIN app_user a ON a.id = r.u AND a.is_active
        LEFT JOIN notification_setting s ON s.user_id = r.u
        WHERE r.u IS DISTINCT FROM actor AND NOT (k = ANY (coalesce(s.disabled_kinds, '{}')))
        ON CONFLICT DO NOTHING
        RETURNING id, user_id, kind, event_id, title, body, created_at
    )
    -- The payload stays far below NOTIFY's 8000 bytes: the title is ≤ 200 characters and the
    -- body is cut to 300 (the list API has it whole).
    SELECT count(pg_notify('gridgov_messages', json_build_object(
        'user_id', ins.user_id, 'id', ins.id, 'kind', ins.kind, 'title', ins.title,
        'body', left(ins.body, 300), 'event_id', ins.event_id, 'created_at', ins.created_at,
        'muted', coalesce(s.muted, false))::text))
    INTO n
    FROM ins LEFT JOIN notification_setting s ON s.user_id = ins.user_id;
    RETURN n;
END
$$;

-- Event history → notifications, at COMMIT (a deferred constraint trigger).
CREATE FUNCTION gridgov_meta.notify_event_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    ev record;
    k text;
    label text;
    people bigint[];
    body_text text;
    system_actor boolean := NEW.actor_user_id IS NULL;
BEGIN
    SELECT e.id, e.code, e.title, e.description, e.state, e.centre_unit_id INTO ev
    FROM event e WHERE e.id = NEW.event_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    body_text := coalesce(NEW.note, left(ev.description, 300));
    CASE NEW.action
    WHEN 'report' THEN
        -- Resolved on the spot (or merged) in the same transaction: nobody needs to accept it.
        IF ev.state <> 'reported' THEN
            RETURN NULL;
        END IF;
        k := 'new_report'; label := '新事件待受理';
        people := ARRAY(SELECT gridgov_meta.notification_people(ARRAY[ev.centre_unit_id], NULL));
    WHEN 'dispatch', 'reassign' THEN
        -- The units and grids this action sent it to (not those it already had).
        k := 'new_dispatch'; label := CASE NEW.action WHEN 'dispatch' THEN '新派遣' ELSE '改派' END;
        people := ARRAY(SELECT gridgov_meta.notification_people(
            ARRAY(SELECT (t ->> 'org_unit_id')::bigint FROM jsonb_array_elements(
                      coalesce(NEW.data -> 'targets', '[]')) t WHERE t ->> 'org_unit_id' IS NOT NULL),
            ARRAY(SELECT t ->> 'grid_code' FROM jsonb_array_elements(
                      coalesce(NEW.data -> 'targets', '[]')) t WHERE t ->> 'grid_code' IS NOT NULL)));
    WHEN 'remind' THEN
        -- The overdue job reminds as the system (no actor): the holder and the command centre
        -- that dispatched it both hear of it.
        IF system_actor THEN
            k := 'overdue'; label := '超时催办';
            people := gridgov_meta.notification_holders(ev.id) || ARRAY(SELECT
                gridgov_meta.notification_people(ARRAY[ev.centre_unit_id], NULL));
        ELSE
            k := 'reminder'; label := '催办';
            people := gridgov_meta.notification_holders(ev.id);
        END IF;
    WHEN 'supervise' THEN
        k := 'supervision'; label := '督办';
        people := gridgov_meta.notification_holders(ev.id);
        IF NEW.data ? 'deadline' THEN
            body_text := body_text || '（督办期限：' || to_char(
                (NEW.data ->> 'deadline')::timestamptz AT TIME ZONE 'Asia/Shanghai',
                'YYYY-MM-DD HH24:MI') || '）';
        END IF;
    WHEN 'escalate' THEN
        -- The event row already names the command centre it went up to.
        k := CASE WHEN system_actor THEN 'overdue' ELSE 'escalated' END;
        label := CASE WHEN system_actor THEN '超时上报' ELSE '事件上报' END;
        people := ARRAY(SELECT gridgov_meta.notification_people(ARRAY[ev.centre_unit_id], NULL));
    WHEN 'request_return' THEN
        k := 'return_requested'; label := '申请退回待审核';
        people := ARRAY(SELECT gridgov_meta.notification_people(ARRAY[ev.centre_unit_id], NULL));
    WHEN 'approve_return' THEN
        -- The unit whose assignment this approval ended.
        k := 'returned'; label := '退回已同意';
        people := ARRAY(SELECT gridgov_meta.notification_people(
            ARRAY(SELECT org_unit_id FROM event_assignment WHERE event_id = ev.id
                  AND end_reason = 'returned' AND ended_at = NEW.at AND org_unit_id IS NOT NULL),
            ARRAY(SELECT grid_code FROM event_assignment WHERE event_id = ev.id
                  AND end_reason = 'returned' AND ended_at = NEW.at AND grid_code IS NOT NULL)));
    WHEN 'verify_fail' THEN
        k := 'verify_failed'; label := '核查不通过';
        people := gridgov_meta.notification_holders(ev.id);
    ELSE
        RETURN NULL;
    END CASE;
    PERFORM gridgov_meta.deliver_notifications(
        people, k, NEW.actor_user_id, ev.id, NEW.id, NULL,
        label || '：' || ev.code || ' ' || ev.title, body_text);
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    -- A notification must never undo the governance action that caused it (this runs at
    -- COMMIT): say so in the server log and let the action stand.
    RAISE WARNING 'notification for event history % (%) failed: % (%)',
        NEW.id, NEW.action, SQLERRM, SQLSTATE;
    RETURN NULL;
END
$$;

-- A bulk load by the owner that wrote the history itself (the demo's year of events) notifies
-- nobody, like it skips the location triggers.
CREATE CONSTRAINT TRIGGER event_history_notify AFTER INSERT ON event_history
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.action IN ('report', 'dispatch', 'reassign', 'remind', 'supervise', 'escalate',
                         'request_return', 'approve_return', 'verify_fail')
          AND (session_user <> 'gridgov_owner'
               OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on'))
    EXECUTE FUNCTION gridgov_meta.notify_event_history();

-- Broadcasts (通知公告) → a message for every staff member at or under the region.
CREATE FUNCTION gridgov_meta.notify_broadcast() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM gridgov_meta.deliver_notifications(
        ARRAY(SELECT DISTINCT sa.user_id FROM staff_assignment sa
              WHERE sa.valid_to IS NULL AND sa.path <@ NEW.path),
        'broadcast', NEW.sent_by, NULL, NULL, NEW.id, '通知公告：' || NEW.title, NEW.body);
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'notification for broadcast % failed: % (%)', NEW.id, SQLERRM, SQLSTATE;
    RETURN NULL;
END
$$;
CREATE TRIGGER broadcast_notify AFTER INSERT ON broadcast
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.notify_broadcast();

-- Retention: read messages older than read_days and any older than all_days go, a bounded
-- batch per call (the notifications job calls it until it returns less than the batch).
CREATE FUNCTION gridgov_meta.prune_notifications(read_days integer, all_days integer,
                                                 batch integer DEFAULT 50000)
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH gone AS (
        DELETE FROM notification WHERE id IN (
            SELECT id FROM notification
            WHERE (read_at IS NOT NULL AND read_at < now() - make_interval(days => read_days))
               OR created_at < now() - make_interval(days => all_days)
            LIMIT batch)
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

REVOKE ALL ON FUNCTION gridgov_meta.notification_people(bigint[], text[]),
    gridgov_meta.notification_holders(bigint),
    gridgov_meta.deliver_notifications(bigint[], text, bigint, bigint, bigint, bigint, text, text),
    gridgov_meta.notify_event_history(), gridgov_meta.notify_broadcast(),
    gridgov_meta.prune_notifications(integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.prune_notifications(integer, integer, integer)
    TO gridgov_app;
GRANT EXECUTE ON FUNCTION gridgov_meta.acting_user() TO gridgov_app;
