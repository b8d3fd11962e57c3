-- Foundation: installation secrets, the org hierarchy, credentials, audit log and idempotency keys.
-- Instants are BIGINT milliseconds since the Unix epoch (UTC); booleans are INTEGER 0/1.

CREATE TABLE installation (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE orgs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_id         BIGINT REFERENCES orgs (id),
    name              TEXT NOT NULL,
    timezone          TEXT NOT NULL,
    currency          TEXT NOT NULL,
    language          TEXT NOT NULL,
    fiscal_year_start BIGINT NOT NULL DEFAULT 1,
    address           TEXT,
    phone             TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE access_groups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE concepts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    parent_id   BIGINT REFERENCES concepts (id),
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    is_active   BOOLEAN NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, code)
);

CREATE TABLE zones (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    parent_id   BIGINT REFERENCES zones (id),
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    is_active   BOOLEAN NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, code)
);

CREATE TABLE stores (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id        BIGINT NOT NULL REFERENCES orgs (id),
    zone_id       BIGINT NOT NULL REFERENCES zones (id),
    concept_id    BIGINT NOT NULL REFERENCES concepts (id),
    code          TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    admin_type    TEXT NOT NULL DEFAULT 'GENERAL',
    is_active     BOOLEAN NOT NULL DEFAULT 1,
    timezone      TEXT,
    currency      TEXT,
    language      TEXT,
    time_zone_id  BIGINT,
    currency_id   BIGINT,
    language_id   BIGINT,
    email         TEXT,
    mobile        TEXT,
    landline      TEXT,
    latitude      TEXT,
    longitude     TEXT,
    address       TEXT,
    city_id       BIGINT,
    area_id       BIGINT,
    external_ids  TEXT NOT NULL DEFAULT '[]',
    custom_fields TEXT NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (org_id, code)
);

-- Till codes are login names for Basic auth, which carries no org: unique across the installation.
CREATE TABLE tills (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id              BIGINT NOT NULL REFERENCES orgs (id),
    store_id            BIGINT NOT NULL REFERENCES stores (id),
    access_group_id     BIGINT NOT NULL REFERENCES access_groups (id),
    code                TEXT NOT NULL UNIQUE,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    admin_type          TEXT NOT NULL DEFAULT 'GENERAL',
    billable            BOOLEAN NOT NULL DEFAULT 1,
    is_active           BOOLEAN NOT NULL DEFAULT 1,
    is_default          BOOLEAN NOT NULL DEFAULT 0,
    password_hash       TEXT NOT NULL,
    credential_version  BIGINT NOT NULL DEFAULT 1,
    custom_fields       TEXT NOT NULL DEFAULT '{}',
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX tills_org_store ON tills (org_id, store_id);

CREATE TABLE oauth_clients (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id            BIGINT NOT NULL REFERENCES orgs (id),
    access_group_id   BIGINT NOT NULL REFERENCES access_groups (id),
    default_till_id   BIGINT REFERENCES tills (id),
    name              TEXT NOT NULL,
    client_key        TEXT NOT NULL UNIQUE,
    secret_hash       TEXT NOT NULL,
    token_ttl_seconds BIGINT NOT NULL,
    is_active         BOOLEAN NOT NULL DEFAULT 1,
    created_at        BIGINT NOT NULL
);

CREATE TABLE admin_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id     BIGINT NOT NULL REFERENCES orgs (id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id         BIGINT NOT NULL REFERENCES orgs (id),
    occurred_at    BIGINT NOT NULL,
    request_id     TEXT,
    principal_type TEXT NOT NULL,
    principal_id   BIGINT,
    entity_type    TEXT NOT NULL,
    entity_id      BIGINT NOT NULL,
    action         TEXT NOT NULL,
    before_state   TEXT,
    after_state    TEXT
);
CREATE INDEX audit_log_entity ON audit_log (org_id, entity_type, entity_id);

CREATE TABLE idempotency_keys (
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    api_key         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response_status BIGINT,
    content_type    TEXT,
    response_body   BLOB,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    PRIMARY KEY (org_id, api_key, idempotency_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
