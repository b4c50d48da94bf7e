-- The grid worker's phone page (掌上应用, H5): requests replayed from the phone's offline
-- outbox are applied once, photos taken on the phone are kept with the event action they
-- document, and broadcasts (通知公告) reach every worker of a jurisdiction.

-- One row per request the phone sent with a client key (a uuid made when the worker tapped
-- "submit"). A phone that lost the answer sends the same key again, maybe hours later from a
-- queue: the row says what the first attempt did, so the answer is repeated, not the report.
-- Located by the event it produced, so a replay is visible exactly where the event is.
CREATE TABLE mobile_request (
    user_id     bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    client_key  text NOT NULL CHECK (client_key ~ '^[0-9A-Za-z_-]{8,64}$'),
    -- 'report', or the lifecycle action applied ('handle', 'verify_pass' …).
    kind        text NOT NULL CHECK (kind ~ '^[a-z_]{1,32}$'),
    -- sha256 of the request as sent: the same key with another body is a client bug (409).
    body_hash   text NOT NULL CHECK (body_hash ~ '^[0-9a-f]{64}$'),
    event_id    bigint NOT NULL REFERENCES event(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    path        ltree NOT NULL,
    PRIMARY KEY (user_id, client_key)
);
CREATE INDEX mobile_request_event ON mobile_request (event_id);
CREATE INDEX mobile_request_path ON mobile_request USING gist (path);
SELECT gridgov_meta.enable_scope_rls('mobile_request');

-- Photos from the phone (resized there), content-addressed under <data_dir>/files/photos;
-- ``stage`` is the action the photo documents: the report, the handling result, the
-- on-site verification.
CREATE TABLE mobile_photo (
    id           bigserial PRIMARY KEY,
    event_id     bigint NOT NULL REFERENCES event(id) ON DELETE CASCADE,
    stage        text NOT NULL CHECK (stage ~ '^[a-z_]{1,32}$'),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    bytes        integer NOT NULL CHECK (bytes > 0),
    width        integer NOT NULL CHECK (width > 0),
    height       integer NOT NULL CHECK (height > 0),
    uploaded_by  bigint REFERENCES app_user(id) ON DELETE SET NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    path         ltree NOT NULL,
    UNIQUE (event_id, stage, sha256)
);
CREATE INDEX mobile_photo_path ON mobile_photo USING gist (path);
CREATE INDEX mobile_photo_uploader ON mobile_photo (uploaded_by, uploaded_at);
SELECT gridgov_meta.enable_scope_rls('mobile_photo');

-- 通知公告: a message from a command centre to every worker at or under a region.
CREATE TABLE broadcast (
    id          bigserial PRIMARY KEY,
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 100),
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 4000),
    region_code text NOT NULL,
    path        ltree NOT NULL,
    sent_by     bigint REFERENCES app_user(id) ON DELETE SET NULL,
    sender_name text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    CHECK (expires_at IS NULL OR expires_at > sent_at)
);
CREATE INDEX broadcast_path ON broadcast USING gist (path);
CREATE INDEX broadcast_sent ON broadcast (sent_at);
-- Unlike located data, a broadcast is read *below* where it is sent: a grid worker reads what
-- the township sent. Reading: sent to the caller's jurisdiction, above it or inside it.
-- Writing: only inside it.
ALTER TABLE broadcast ENABLE ROW LEVEL SECURITY;
CREATE POLICY scope ON broadcast
    USING (path <@ ANY ((SELECT gridgov_meta.scope())) OR path @> ANY ((SELECT gridgov_meta.scope())))
    WITH CHECK (path <@ ANY ((SELECT gridgov_meta.scope())));

CREATE TABLE broadcast_read (
    broadcast_id bigint NOT NULL REFERENCES broadcast(id) ON DELETE CASCADE,
    user_id      bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    read_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broadcast_id, user_id)
);
-- A receipt is visible (and writable) with the broadcast it belongs to.
ALTER TABLE broadcast_read ENABLE ROW LEVEL SECURITY;
CREATE POLICY scope ON broadcast_read
    USING (EXISTS (SELECT 1 FROM broadcast b WHERE b.id = broadcast_id));

INSERT INTO permission (name, description) VALUES
    ('broadcast.send', '发布通知公告')
ON CONFLICT DO NOTHING;

INSERT INTO role_permission (role_id, permission)
SELECT r.id, 'broadcast.send' FROM role r
WHERE r.name IN ('city_commander', 'county_commander', 'township_commander')
ON CONFLICT DO NOTHING;
