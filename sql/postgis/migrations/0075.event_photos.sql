-- Photos as evidence on events (现场照片): one photo store for the whole system; the
-- anonymous public channel's rate limit; indexes for the work queues at city scale.
--
-- The phone page kept its photos in mobile_photo (0060). Every photo of an event — taken with
-- the report, the handling result or the on-site verification, from the phone or the browser —
-- now lives in event_photo, linked to the event and to the history row of the action it
-- documents. Rows are evidence: append-only, like the history. The files are content-addressed
-- under <data_dir>/files/photos (one file per distinct SHA-256, its thumbnail next to it); the
-- table says what each file documents and what EXIF said about when and where it was taken.

CREATE TABLE event_photo (
    id                  bigserial PRIMARY KEY,
    event_id            bigint NOT NULL REFERENCES event(id) ON DELETE CASCADE,
    -- The action the photo documents: its history row, and the action's name for reading.
    history_id          bigint REFERENCES event_history(id),
    stage               text NOT NULL CHECK (stage ~ '^[a-z_]{1,40}$'),
    sha256              text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    -- Sniffed from the bytes, never taken from the client.
    content_type        text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png',
                            'image/webp', 'image/heic', 'image/heif')),
    bytes               integer NOT NULL CHECK (bytes > 0),
    width               integer NOT NULL CHECK (width > 0),
    height              integer NOT NULL CHECK (height > 0),
    -- What readers get: the original, or a copy without the GPS position (and as JPEG for
    -- HEIC, which browsers do not show). The original stays the evidence.
    served_content_type text NOT NULL CHECK (served_content_type IN ('image/jpeg', 'image/png',
                            'image/webp')),
    stripped            boolean NOT NULL DEFAULT false,
    -- Disk taken by the original, its thumbnail and its served copy (quotas).
    stored_bytes        bigint NOT NULL CHECK (stored_bytes > 0),
    -- EXIF, kept as evidence: DateTimeOriginal (Shanghai time when the camera gave no
    -- offset) and the GPS position (WGS84 from the receiver = CGCS2000 at metre level), with
    -- its distance from the event's point.
    taken_at            timestamptz,
    taken_geom          geometry(Point, 4490),
    taken_distance_m    double precision,
    -- No foreign key: like the history's actor, it must outlive the account (append-only).
    uploaded_by         bigint,
    uploaded_at         timestamptz NOT NULL DEFAULT now(),
    path                ltree NOT NULL,
    UNIQUE (event_id, stage, sha256)
);
CREATE INDEX event_photo_event ON event_photo (event_id, id);
CREATE INDEX event_photo_sha ON event_photo (sha256);
CREATE INDEX event_photo_uploader ON event_photo (uploaded_by, uploaded_at);
CREATE INDEX event_photo_path ON event_photo USING gist (path);

-- Keep the phone's photos (and their ids, which are in URLs) before taking the table over.
INSERT INTO event_photo (id, event_id, history_id, stage, sha256, content_type, bytes, width,
                         height, served_content_type, stored_bytes, uploaded_by, uploaded_at,
                         path)
SELECT m.id, m.event_id,
       (SELECT max(h.id) FROM event_history h WHERE h.event_id = m.event_id
          AND h.action = m.stage AND h.at <= m.uploaded_at),
       m.stage, m.sha256, m.content_type, m.bytes, m.width, m.height, m.content_type, m.bytes,
       m.uploaded_by, m.uploaded_at, m.path
FROM mobile_photo m;
SELECT setval('event_photo_id_seq', coalesce(max(id), 0) + 1, false) FROM event_photo;
DROP TABLE mobile_photo;

-- The event's path, so a photo is visible exactly where its event is.
CREATE TRIGGER event_photo_path BEFORE INSERT ON event_photo
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.event_child_path();
CREATE TRIGGER event_photo_append_only BEFORE UPDATE OR DELETE ON event_photo
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON event_photo FROM gridgov_app;
SELECT gridgov_meta.enable_scope_rls('event_photo');

-- The phone page's name for the same rows, read-only (its queries and tests keep working).
CREATE VIEW mobile_photo WITH (security_invoker = true) AS
    SELECT id, event_id, stage, sha256, content_type, bytes, width, height, uploaded_by,
           uploaded_at, path
    FROM event_photo;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON mobile_photo FROM gridgov_app;
GRANT SELECT ON mobile_photo TO gridgov_app;

-- The store's size for the total quota, whatever the caller's scope: one sum over distinct
-- files (a photo attached to two events is stored once). Returns a number, never a row.
CREATE FUNCTION gridgov_meta.photo_store_bytes() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce(sum(stored_bytes), 0)::bigint FROM (
        SELECT DISTINCT ON (sha256) stored_bytes FROM event_photo ORDER BY sha256
    ) d
$$;
REVOKE ALL ON FUNCTION gridgov_meta.photo_store_bytes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.photo_store_bytes() TO gridgov_app;

-- Anonymous public reports (群众上报) by IP and phone number, for the hourly rate limits. Both
-- are kept as keyed hashes (blind indexes), not in clear: an IP address is personal data too.
-- One row per public event, located with it.
CREATE TABLE event_public_report (
    event_id    bigint PRIMARY KEY REFERENCES event(id) ON DELETE CASCADE,
    path        ltree NOT NULL,
    ip_hash     bytea,
    phone_hash  bytea NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_public_report_ip ON event_public_report (ip_hash, at);
CREATE INDEX event_public_report_phone ON event_public_report (phone_hash, at);
CREATE INDEX event_public_report_path ON event_public_report USING gist (path);
CREATE TRIGGER event_public_report_path BEFORE INSERT ON event_public_report
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.event_child_path();
SELECT gridgov_meta.enable_scope_rls('event_public_report');

-- Work queues at city scale (a year is ~1M events): the page is an index walk in the queue's
-- order, stopping after 50 rows, and the total an index-only count. ``path`` is included so
-- the row-level security check needs no heap visit.
CREATE INDEX event_queue_order ON event (state, deadline_at, reported_at, id)
    INCLUDE (path, centre_unit_id);
CREATE INDEX event_closed_order ON event (closed_at DESC NULLS LAST, id DESC) INCLUDE (path)
    WHERE state IN ('closed', 'evaluated');
CREATE INDEX event_newest ON event (reported_at DESC, id DESC) INCLUDE (path);

-- An event's detail (after every report and action) reads all its assignments and extension
-- requests, ended and decided ones too; 0020 indexes only the open ones, so each detail was a
-- scan of the whole table (9 ms of a 50 ms report at demo scale).
CREATE INDEX event_assignment_of_event ON event_assignment (event_id, id);
CREATE INDEX event_extension_of_event ON event_extension (event_id);

-- Seeing a photo's original bytes (with its GPS position) and the EXIF position fields.
INSERT INTO permission (name, description) VALUES
    ('event.photo_original', '查看事件照片原图及拍摄位置')
ON CONFLICT (name) DO NOTHING;

INSERT INTO role_permission (role_id, permission)
SELECT r.id, 'event.photo_original' FROM role r
WHERE r.name IN ('city_commander', 'county_commander', 'township_commander')
ON CONFLICT DO NOTHING;
