-- Partner platforms (接口管理): 110 linkage (风动/警综, non-police matters), the 12345 hotline and
-- the provincial 矛调 platform. They report events into gridgov, query them, act on events
-- that are theirs, and receive every status change back through a transactional outbox.
--
-- Requests are HMAC-signed with a per-partner key (two may be active while a key rotates); the
-- secret is stored encrypted with the personal-data cipher, because HMAC needs it in clear.
-- Nonces are kept while a timestamp could still be accepted (replays refused) and also count
-- the partner's requests per minute (rate limit). Idempotency keys keep the first response.
--
-- Partners, their keys, nonces and idempotency records are city-wide configuration read
-- before any scope is known (like api_token): no region path, no RLS, written only through
-- services that check partner.manage or a valid signature. Links and outbox rows belong to an
-- event and carry its path under RLS.

CREATE TABLE partner (
    id                      bigserial PRIMARY KEY,
    code                    text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_]{1,31}$'),
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- police_110 110联动 (风动/警综), hotline_12345 12345热线, mediation 省矛调 (矛盾纠纷调处化解).
    kind                    text NOT NULL CHECK (kind IN ('police_110', 'hotline_12345', 'mediation')),
    active                  boolean NOT NULL DEFAULT true,
    -- Where status changes are POSTed (signed like the partner's own requests).
    callback_url            text CHECK (callback_url IS NULL OR (callback_url ~ '^https?://[^\s]+$'
                                AND length(callback_url) <= 500)),
    rate_limit_per_minute   integer NOT NULL DEFAULT 120 CHECK (rate_limit_per_minute BETWEEN 1 AND 100000),
    -- The partner as a handling unit: events dispatched to this org unit become the partner's.
    org_unit_id             bigint REFERENCES org_unit(id) ON DELETE SET NULL,
    -- The service account the partner acts as (no password: it cannot log in); history and
    -- audit rows name it, and it is the member of org_unit_id that signs and handles.
    user_id                 bigint REFERENCES app_user(id) ON DELETE SET NULL,
    note                    text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    version                 integer NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX partner_org_unit ON partner (org_unit_id) WHERE org_unit_id IS NOT NULL;

-- The regions a partner may report into and read (its jurisdiction; by code, paths current).
CREATE TABLE partner_scope (
    partner_id  bigint NOT NULL REFERENCES partner(id) ON DELETE CASCADE,
    region_code text NOT NULL,
    PRIMARY KEY (partner_id, region_code)
);

-- Signing keys. The key id is public (sent in X-Gridgov-Key); the secret is shown once.
CREATE TABLE partner_key (
    key_id          text PRIMARY KEY CHECK (key_id ~ '^[A-Za-z0-9_-]{8,64}$'),
    partner_id      bigint NOT NULL REFERENCES partner(id) ON DELETE CASCADE,
    secret_enc      bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      bigint,
    revoked_at      timestamptz,
    last_used_at    timestamptz
);
CREATE INDEX partner_key_active ON partner_key (partner_id, created_at) WHERE revoked_at IS NULL;

-- Nonces of accepted signatures, kept while their timestamp could still pass the window. The
-- ones that count towards the rate limit also measure the partner's requests per minute.
CREATE TABLE partner_nonce (
    partner_id  bigint NOT NULL REFERENCES partner(id) ON DELETE CASCADE,
    nonce       text NOT NULL CHECK (nonce ~ '^[A-Za-z0-9_-]{16,64}$'),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    counted     boolean NOT NULL DEFAULT true,
    PRIMARY KEY (partner_id, nonce)
);
CREATE INDEX partner_nonce_rate ON partner_nonce (partner_id, seen_at) WHERE counted;
CREATE INDEX partner_nonce_seen ON partner_nonce (seen_at);

-- Idempotency (Idempotency-Key): the first response to a key, with a hash of the request that
-- made it. The same key with the same request gets that response again; with another, 409.
CREATE TABLE partner_idempotency (
    partner_id      bigint NOT NULL REFERENCES partner(id) ON DELETE CASCADE,
    idempotency_key text NOT NULL CHECK (idempotency_key ~ '^[A-Za-z0-9_.:-]{8,128}$'),
    request_hash    text NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
    status          integer NOT NULL CHECK (status BETWEEN 200 AND 599),
    body            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, idempotency_key)
);
CREATE INDEX partner_idempotency_created ON partner_idempotency (created_at);

-- Partner ↔ event: the partner's own number for the event (its 警情号, 工单号) and how the
-- event became the partner's: it reported it, or it was dispatched to the partner's unit.
CREATE TABLE partner_event (
    partner_id  bigint NOT NULL REFERENCES partner(id) ON DELETE RESTRICT,
    event_id    bigint NOT NULL REFERENCES event(id) ON DELETE CASCADE,
    partner_ref text CHECK (partner_ref IS NULL OR partner_ref ~ '^[A-Za-z0-9_.:/-]{1,64}$'),
    origin      text NOT NULL CHECK (origin IN ('reported', 'assigned')),
    path        ltree NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, event_id)
);
CREATE UNIQUE INDEX partner_event_ref ON partner_event (partner_id, partner_ref)
    WHERE partner_ref IS NOT NULL;
CREATE INDEX partner_event_event ON partner_event (event_id);
CREATE INDEX partner_event_path ON partner_event USING gist (path);
CREATE TRIGGER partner_event_path BEFORE INSERT ON partner_event
    FOR EACH ROW EXECUTE FUNCTION gridgov_meta.event_child_path();
SELECT gridgov_meta.enable_scope_rls('partner_event');

-- The transactional outbox: one row per status change of a partner's event, written by a
-- trigger on event_history in the transaction that made the change, so no path that changes
-- an event (API, phone, jobs, merges) can forget the push, and a rolled-back change pushes
-- nothing. Delivered in order per (partner, event); retried with back-off; dead after N tries.
CREATE TABLE partner_outbox (
    id              bigserial PRIMARY KEY,
    partner_id      bigint NOT NULL REFERENCES partner(id) ON DELETE CASCADE,
    event_id        bigint NOT NULL REFERENCES event(id) ON DELETE CASCADE,
    history_id      bigint NOT NULL,
    path            ltree NOT NULL,
    payload         jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text CHECK (last_error IS NULL OR length(last_error) <= 2000),
    delivered_at    timestamptz,
    dead            boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT (dead AND delivered_at IS NOT NULL))
);
CREATE INDEX partner_outbox_due ON partner_outbox (next_attempt_at, id)
    WHERE delivered_at IS NULL AND NOT dead;
CREATE INDEX partner_outbox_pending ON partner_outbox (partner_id, event_id, id)
    WHERE delivered_at IS NULL AND NOT dead;
CREATE INDEX partner_outbox_partner ON partner_outbox (partner_id, id);
CREATE INDEX partner_outbox_dead ON partner_outbox (partner_id, id) WHERE dead;
CREATE INDEX partner_outbox_path ON partner_outbox USING gist (path);
SELECT gridgov_meta.enable_scope_rls('partner_outbox');

-- History rows → outbox rows for every active partner linked to the event with a callback.
-- Statement-level with a transition table: a bulk load of history (the demo's year of
-- events) costs one join per statement, not one lookup per row. SECURITY DEFINER because
-- the actor (a commander, the SLA job) acts on the event, not on the partner's tables; the
-- partner's own actions are not echoed back to it.
CREATE FUNCTION gridgov_meta.partner_enqueue_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO partner_outbox (partner_id, event_id, history_id, path, payload)
    SELECT l.partner_id, h.event_id, h.id, h.path, jsonb_build_object(
        'event_id', e.id, 'event_code', e.code, 'partner_ref', l.partner_ref,
        'origin', l.origin, 'history_id', h.id, 'action', h.action,
        'from_state', h.from_state, 'to_state', h.to_state, 'at', h.at,
        'version', h.event_version, 'note', h.note, 'result', h.data->>'result',
        'event', jsonb_build_object(
            'type_code', t.code, 'type_name', t.name, 'severity', e.severity,
            'title', e.title, 'description', e.description, 'address', e.address,
            'lon', ST_X(e.geom), 'lat', ST_Y(e.geom), 'crs', 'CGCS2000',
            'grid_code', e.grid_code, 'reported_at', e.reported_at))
    FROM new_history h
    JOIN partner_event l ON l.event_id = h.event_id
    JOIN partner p ON p.id = l.partner_id
    JOIN event e ON e.id = h.event_id
    JOIN event_type t ON t.id = e.event_type_id
    WHERE p.active AND p.callback_url IS NOT NULL
      AND h.actor_user_id IS DISTINCT FROM p.user_id
    ORDER BY h.id, l.partner_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER event_history_partner_outbox AFTER INSERT ON event_history
    REFERENCING NEW TABLE AS new_history
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_meta.partner_enqueue_history();

-- An event dispatched (主办 or 协办) to a partner's unit becomes the partner's event: the
-- dispatch written next to the history is then pushed to it as its work order.
CREATE FUNCTION gridgov_meta.partner_link_assignment() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO partner_event (partner_id, event_id, origin, path)
    SELECT DISTINCT p.id, a.event_id, 'assigned', a.path
    FROM new_assignment a JOIN partner p ON p.org_unit_id = a.org_unit_id
    WHERE p.active
    ON CONFLICT (partner_id, event_id) DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER event_assignment_partner_link AFTER INSERT ON event_assignment
    REFERENCING NEW TABLE AS new_assignment
    FOR EACH STATEMENT EXECUTE FUNCTION gridgov_meta.partner_link_assignment();

REVOKE ALL ON FUNCTION gridgov_meta.partner_enqueue_history(),
    gridgov_meta.partner_link_assignment() FROM PUBLIC;

INSERT INTO permission (name, description) VALUES
    ('partner.manage', '接口管理: 对接平台、签名密钥、状态推送与死信重发')
ON CONFLICT (name) DO NOTHING;

INSERT INTO role_permission (role_id, permission)
SELECT r.id, 'partner.manage' FROM role r WHERE r.name = 'admin'
ON CONFLICT DO NOTHING;
