-- Webhooks: subscriptions (outbound HTTP callbacks, and the inbound integrations of
-- `POST /v2/events/webhook`), one delivery per (subscription, event), and every attempt made.
-- Instants are BIGINT milliseconds since the Unix epoch (UTC); booleans are INTEGER 0/1.

-- The fan-out marks each outbox event once it has been turned into deliveries. A per-event mark,
-- not an id cursor: on PostgreSQL ids are handed out at insert but become visible at commit, so
-- a cursor over ids would skip an event whose transaction commits after a later one's.
ALTER TABLE domain_events ADD COLUMN webhooks_fanned_out_at BIGINT;
CREATE INDEX domain_events_fanout_due ON domain_events (id) WHERE webhooks_fanned_out_at IS NULL;

CREATE TABLE webhook_subscriptions (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id               BIGINT NOT NULL REFERENCES orgs (id),
    -- OUTBOUND: Perks POSTs events to `url`. INBOUND: an integration of Add Webhook, whose `url`
    -- is the generated address third parties post behavioral events to (`webhook_key` in it).
    kind                 TEXT NOT NULL,
    name                 TEXT NOT NULL,
    url                  TEXT NOT NULL,
    -- JSON list of event-type patterns: "customer.created", "customer.*" or "*".
    event_types          TEXT NOT NULL,
    -- The shared HMAC secret: kept in clear because signing needs it; never shown after create/rotate.
    secret               TEXT NOT NULL,
    source               TEXT,
    till_code            TEXT,
    webhook_key          TEXT UNIQUE,
    is_active            BOOLEAN NOT NULL DEFAULT 1,
    -- The circuit: failures in a row, and until when deliveries wait after too many.
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    paused_until         BIGINT,
    deleted_at           BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX webhook_subscriptions_org ON webhook_subscriptions (org_id, id);

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id           BIGINT NOT NULL REFERENCES orgs (id),
    subscription_id  BIGINT NOT NULL REFERENCES webhook_subscriptions (id),
    event_id         BIGINT NOT NULL REFERENCES domain_events (id),
    -- Copied from the event for the logs' filters: type, the API request that raised it, and
    -- the id of the entity it is about.
    event_type       TEXT NOT NULL,
    request_id       TEXT,
    ref_id           TEXT NOT NULL,
    -- PENDING (never tried) | FAILED (will retry) | DELIVERED | DEAD (gave up)
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    last_http_status BIGINT,
    last_error       TEXT,
    last_duration_ms BIGINT,
    delivered_at     BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('PENDING', 'FAILED');
CREATE INDEX webhook_deliveries_org_request ON webhook_deliveries (org_id, request_id);
CREATE INDEX webhook_deliveries_org_ref ON webhook_deliveries (org_id, ref_id);
CREATE INDEX webhook_deliveries_org_event ON webhook_deliveries (org_id, event_id);
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, id);
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at)
    WHERE status IN ('DELIVERED', 'DEAD');

CREATE TABLE webhook_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id       BIGINT NOT NULL REFERENCES orgs (id),
    delivery_id  BIGINT NOT NULL REFERENCES webhook_deliveries (id),
    attempt      BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    http_status  BIGINT,
    error        TEXT,
    -- SUCCESS | HTTP_ERROR | TIMEOUT | NETWORK_ERROR
    outcome      TEXT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
