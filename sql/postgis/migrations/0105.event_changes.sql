-- Every change of an event is announced once it commits (NOTIFY is transactional), so open maps
-- refresh queues, counts and the open event at once instead of polling
-- (GET /api/v1/events/stream). The payload carries the event's region path: each stream is
-- filtered by its user's scope with the rule the RLS policy applies. A bulk load by the owner
-- that wrote the history itself (the demo's year of events) announces nothing, as 0070 does.
CREATE FUNCTION gridgov_meta.announce_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gridgov_events', json_build_object(
        'id', NEW.event_id, 'action', NEW.action, 'state', NEW.to_state,
        'version', NEW.event_version, 'path', NEW.path::text)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER event_history_announce AFTER INSERT ON event_history
    FOR EACH ROW WHEN (session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.announce_event_change();
