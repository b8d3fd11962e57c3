-- Customers: the person, one profile per source account, identifiers unique within a source
-- account, status and subscription logs, notes, labels, images, and the domain-event outbox.

CREATE TABLE customers (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id              BIGINT NOT NULL REFERENCES orgs (id),
    first_name          TEXT NOT NULL DEFAULT '',
    last_name           TEXT NOT NULL DEFAULT '',
    search_name         TEXT NOT NULL DEFAULT '',
    loyalty_type        TEXT NOT NULL DEFAULT 'loyalty',
    status              TEXT NOT NULL DEFAULT 'ACTIVE',
    status_label        TEXT NOT NULL DEFAULT 'Active',
    fraud_status        TEXT,
    registered_at       BIGINT NOT NULL,
    registered_store_id BIGINT REFERENCES stores (id),
    registered_till_id  BIGINT REFERENCES tills (id),
    extended_fields     TEXT NOT NULL DEFAULT '{}',
    custom_fields       TEXT NOT NULL DEFAULT '{}',
    preferences         TEXT NOT NULL DEFAULT '{}',
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX customers_org_search_name ON customers (org_id, search_name);
CREATE INDEX customers_org_registered ON customers (org_id, registered_at);

CREATE TABLE customer_profiles (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id              BIGINT NOT NULL REFERENCES orgs (id),
    customer_id         BIGINT NOT NULL REFERENCES customers (id),
    source              TEXT NOT NULL,
    account_id          TEXT NOT NULL DEFAULT '',
    first_name          TEXT NOT NULL DEFAULT '',
    last_name           TEXT NOT NULL DEFAULT '',
    fields              TEXT NOT NULL DEFAULT '{}',
    comm_channels       TEXT NOT NULL DEFAULT '[]',
    created_by_till_id  BIGINT,
    created_by_store_id BIGINT,
    modified_by_till_id BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (org_id, customer_id, source, account_id)
);

-- Values are normalised (mobile digits, lower-case email) and compared byte-wise, so that a
-- range scan on (org_id, type, value) is an exact prefix search on both backends.
CREATE TABLE customer_identifiers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    source      TEXT NOT NULL,
    account_id  TEXT NOT NULL DEFAULT '',
    type        TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (org_id, source, account_id, type, value)
);
CREATE INDEX customer_identifiers_lookup ON customer_identifiers (org_id, type, value);
CREATE INDEX customer_identifiers_customer ON customer_identifiers (customer_id);

CREATE TABLE customer_status_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    customer_id     BIGINT NOT NULL REFERENCES customers (id),
    status          TEXT NOT NULL,
    label           TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    created_by_type TEXT NOT NULL,
    created_by_id   BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX customer_status_log_customer ON customer_status_log (org_id, customer_id, id);

CREATE TABLE customer_subscriptions (
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    source      TEXT NOT NULL,
    account_id  TEXT NOT NULL DEFAULT '',
    channel     TEXT NOT NULL,
    priority    TEXT NOT NULL,
    type        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, customer_id, source, account_id, channel, priority)
);

CREATE TABLE customer_subscription_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    customer_id     BIGINT NOT NULL REFERENCES customers (id),
    source          TEXT NOT NULL,
    account_id      TEXT NOT NULL DEFAULT '',
    channel         TEXT NOT NULL,
    priority        TEXT NOT NULL,
    type            TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    created_by_type TEXT NOT NULL,
    created_by_id   BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX customer_subscription_log_customer ON customer_subscription_log (org_id, customer_id, id);

CREATE TABLE customer_notes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    customer_id     BIGINT NOT NULL REFERENCES customers (id),
    noted_at        BIGINT NOT NULL,
    description     TEXT NOT NULL,
    created_by_type TEXT NOT NULL,
    created_by_id   BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX customer_notes_customer ON customer_notes (org_id, customer_id, id);

CREATE TABLE labels (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    name            TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    is_active       BOOLEAN NOT NULL DEFAULT 1,
    last_updated_by BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE customer_labels (
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    label_id    BIGINT NOT NULL REFERENCES labels (id),
    tagged_at   BIGINT NOT NULL,
    PRIMARY KEY (org_id, customer_id, label_id)
);
CREATE INDEX customer_labels_label ON customer_labels (org_id, label_id);

CREATE TABLE customer_images (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id       BIGINT NOT NULL REFERENCES orgs (id),
    customer_id  BIGINT NOT NULL REFERENCES customers (id),
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    data         BLOB NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX customer_images_customer ON customer_images (org_id, customer_id, id);

-- The outbox: every domain event is written in the same transaction as the change it reports.
CREATE TABLE domain_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    event_type  TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id   BIGINT NOT NULL,
    payload     TEXT NOT NULL,
    request_id  TEXT,
    occurred_at BIGINT NOT NULL
);
CREATE INDEX domain_events_org ON domain_events (org_id, id);
