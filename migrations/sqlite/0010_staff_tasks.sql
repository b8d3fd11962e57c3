-- Store operations: staff accounts (associates and cashiers of a store, zone or concept) with
-- their one-time codes and access tokens; store tasks with one entry per executor, the org's
-- status mapping, the log of every status change, and reminders with the record of each send.
-- Instants are BIGINT millis (UTC).

-- A staff account. `scope_type` says which of store_id/zone_id/concept_id places it. The
-- account is PENDING until every identifier it was given (mobile, e-mail) is verified by OTP,
-- then ACTIVE; REMOVED accounts are kept (tasks name them) but free their username and
-- identifiers. `credential_version` goes up on a password change, ending older tokens.
CREATE TABLE staff (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id             BIGINT NOT NULL REFERENCES orgs (id),
    username           TEXT NOT NULL,
    password_hash      TEXT NOT NULL,
    first_name         TEXT NOT NULL DEFAULT '',
    last_name          TEXT NOT NULL DEFAULT '',
    title              TEXT NOT NULL DEFAULT '',
    staff_type         TEXT NOT NULL,
    mobile             TEXT,
    email              TEXT,
    mobile_verified    BOOLEAN NOT NULL DEFAULT 0,
    email_verified     BOOLEAN NOT NULL DEFAULT 0,
    scope_type         TEXT NOT NULL,
    store_id           BIGINT REFERENCES stores (id),
    zone_id            BIGINT REFERENCES zones (id),
    concept_id         BIGINT REFERENCES concepts (id),
    status             TEXT NOT NULL,
    credential_version BIGINT NOT NULL DEFAULT 1,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE UNIQUE INDEX staff_username ON staff (org_id, username) WHERE status <> 'REMOVED';
CREATE UNIQUE INDEX staff_mobile ON staff (org_id, mobile)
    WHERE mobile IS NOT NULL AND status <> 'REMOVED';
CREATE UNIQUE INDEX staff_email ON staff (org_id, email)
    WHERE email IS NOT NULL AND status <> 'REMOVED';
CREATE INDEX staff_store ON staff (org_id, store_id);

-- One-time codes sent to verify a staff identifier (purpose VERIFY) or a new one
-- (CHANGE_IDENTIFIER). Only a salted SHA-256 of the code is kept.
CREATE TABLE staff_otps (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id           BIGINT NOT NULL REFERENCES orgs (id),
    staff_id         BIGINT NOT NULL REFERENCES staff (id),
    purpose          TEXT NOT NULL,
    identifier_type  TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    code_salt        TEXT NOT NULL,
    code_hash        TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    expires_at       BIGINT NOT NULL,
    used_at          BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX staff_otps_staff ON staff_otps (org_id, staff_id, identifier_type, id);

-- Staff access tokens (`X-CAP-API-ACCESS-TOKEN`), kept as the SHA-256 of the token.
CREATE TABLE staff_tokens (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id             BIGINT NOT NULL REFERENCES orgs (id),
    staff_id           BIGINT NOT NULL REFERENCES staff (id),
    token_hash         TEXT NOT NULL UNIQUE,
    credential_version BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    revoked_at         BIGINT,
    created_at         BIGINT NOT NULL
);
CREATE INDEX staff_tokens_staff ON staff_tokens (org_id, staff_id);

-- A store task. `expires_at` is expiry_date, or end_date when no expiry_date was given: after
-- it the task is expired and its pending reminders are cancelled.
CREATE TABLE store_tasks (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id             BIGINT NOT NULL REFERENCES orgs (id),
    store_id           BIGINT NOT NULL REFERENCES stores (id),
    till_id            BIGINT REFERENCES tills (id),
    local_id           TEXT,
    title              TEXT NOT NULL,
    body               TEXT NOT NULL DEFAULT '',
    task_type          TEXT NOT NULL,
    action_type        TEXT,
    action_template    TEXT,
    creator_type       TEXT NOT NULL,
    creator_staff_id   BIGINT REFERENCES staff (id),
    execute_by_all     BOOLEAN NOT NULL DEFAULT 0,
    executable_by_type TEXT NOT NULL,
    possible_statuses  TEXT NOT NULL DEFAULT '',
    tags               TEXT NOT NULL DEFAULT '',
    start_at           BIGINT NOT NULL,
    end_at             BIGINT NOT NULL,
    expiry_at          BIGINT,
    expires_at         BIGINT NOT NULL,
    created_by_type    TEXT NOT NULL,
    created_by_id      BIGINT,
    created_by_name    TEXT NOT NULL DEFAULT '',
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX store_tasks_store ON store_tasks (org_id, store_id, id);

-- A task's status for one executor: a staff member (ASSOCIATE, CASHIER) or a customer.
-- `status` is what the client sent; `internal_status` (OPEN, IN_PROGRESS, CLOSED) is what it
-- meant when it was set.
CREATE TABLE task_entries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    task_id         BIGINT NOT NULL REFERENCES store_tasks (id),
    executor_type   TEXT NOT NULL,
    executor_id     BIGINT NOT NULL,
    status          TEXT NOT NULL,
    internal_status TEXT NOT NULL,
    remarks         TEXT NOT NULL DEFAULT '',
    updated_by_type TEXT NOT NULL,
    updated_by_id   BIGINT,
    updated_by_name TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (task_id, executor_type, executor_id)
);
CREATE INDEX task_entries_executor ON task_entries (org_id, executor_type, executor_id);

-- Every status an entry ever had: created (old_status NULL) and each change.
CREATE TABLE task_logs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    task_id         BIGINT NOT NULL REFERENCES store_tasks (id),
    entry_id        BIGINT NOT NULL REFERENCES task_entries (id),
    executor_type   TEXT NOT NULL,
    executor_id     BIGINT NOT NULL,
    old_status      TEXT,
    new_status      TEXT NOT NULL,
    remarks         TEXT NOT NULL DEFAULT '',
    updated_by_type TEXT NOT NULL,
    updated_by_id   BIGINT,
    updated_by_name TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL
);
CREATE INDEX task_logs_task ON task_logs (org_id, task_id, id);

-- The org's display statuses and the internal status each stands for.
CREATE TABLE task_status_mappings (
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    status          TEXT NOT NULL,
    internal_status TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (org_id, status)
);

-- A reminder fires once at remind_at: PENDING, then SENT (`late` when it fired well after its
-- time, e.g. after the server was down) or CANCELLED (task closed or expired, or by the client).
CREATE TABLE task_reminders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    task_id         BIGINT NOT NULL REFERENCES store_tasks (id),
    remind_at       BIGINT NOT NULL,
    template        TEXT NOT NULL,
    status          TEXT NOT NULL,
    late            BOOLEAN NOT NULL DEFAULT 0,
    fired_at        BIGINT,
    cancel_reason   TEXT,
    created_by_type TEXT NOT NULL,
    created_by_id   BIGINT,
    created_by_name TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX task_reminders_due ON task_reminders (remind_at, id) WHERE status = 'PENDING';
CREATE INDEX task_reminders_task ON task_reminders (org_id, task_id, id);

-- One row per (reminder, entry): written in the transaction that records the message, so a
-- reminder reaches each executor at most once, across restarts and instances.
CREATE TABLE task_reminder_sends (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id        BIGINT NOT NULL REFERENCES orgs (id),
    reminder_id   BIGINT NOT NULL REFERENCES task_reminders (id),
    entry_id      BIGINT NOT NULL REFERENCES task_entries (id),
    executor_type TEXT NOT NULL,
    executor_id   BIGINT NOT NULL,
    channel       TEXT,
    message_id    BIGINT REFERENCES messages (id),
    status        TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '',
    late          BOOLEAN NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    UNIQUE (reminder_id, entry_id)
);
CREATE INDEX task_reminder_sends_reminder ON task_reminder_sends (org_id, reminder_id, id);
