-- Communications: the org's message templates and the message log every send writes to.
-- A message is QUEUED (or SCHEDULED until scheduled_at) until the delivery worker claims it by
-- setting claim_token/claimed_until (a lease, so several instances never send one twice), then
-- SENT, FAILED (after its last attempt) or SKIPPED_OPTED_OUT. Instants are BIGINT millis (UTC).

CREATE TABLE message_templates (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    channel     TEXT NOT NULL,
    subject     TEXT,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE messages (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id            BIGINT NOT NULL REFERENCES orgs (id),
    customer_id       BIGINT REFERENCES customers (id),
    channel           TEXT NOT NULL,
    recipient         TEXT NOT NULL,
    sender            TEXT,
    cc                TEXT NOT NULL DEFAULT '',
    bcc               TEXT NOT NULL DEFAULT '',
    subject           TEXT,
    body              TEXT NOT NULL,
    template_id       BIGINT REFERENCES message_templates (id),
    purpose           TEXT NOT NULL,
    priority          TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    provider          TEXT,
    provider_response TEXT,
    scheduled_at      BIGINT,
    next_attempt_at   BIGINT NOT NULL,
    claim_token       TEXT,
    claimed_until     BIGINT,
    sent_at           BIGINT,
    resent_from       BIGINT REFERENCES messages (id),
    request_id        TEXT,
    requested_by_type TEXT NOT NULL,
    requested_by_id   BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX messages_due ON messages (status, next_attempt_at);
CREATE INDEX messages_customer ON messages (org_id, customer_id, id);
