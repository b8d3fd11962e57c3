-- Org configs (key/value settings), custom field definitions and values, and the extended fields
-- each org has enabled. Instants are BIGINT milliseconds since the Unix epoch (UTC); booleans are
-- INTEGER 0/1; lists and free-form attributes are JSON text.

CREATE TABLE org_configs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id     BIGINT NOT NULL REFERENCES orgs (id),
    key_name   TEXT NOT NULL,
    value      TEXT NOT NULL,
    scope      TEXT NOT NULL DEFAULT 'ORG',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (org_id, key_name)
);

-- Names are unique within an org across every scope (spec 85-org, "Create a Custom Field").
CREATE TABLE custom_fields (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id        BIGINT NOT NULL REFERENCES orgs (id),
    scope         TEXT NOT NULL,
    name          TEXT NOT NULL,
    label         TEXT NOT NULL,
    field_type    TEXT NOT NULL,
    data_type     TEXT NOT NULL,
    default_value TEXT,
    regex         TEXT,
    is_compulsory BOOLEAN NOT NULL DEFAULT 0,
    is_updatable  BOOLEAN NOT NULL DEFAULT 1,
    is_disabled   BOOLEAN NOT NULL DEFAULT 0,
    options       TEXT,
    position      BIGINT NOT NULL DEFAULT 0,
    attributes    TEXT NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX custom_fields_scope ON custom_fields (org_id, scope);

CREATE TABLE custom_field_values (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id     BIGINT NOT NULL REFERENCES orgs (id),
    scope      TEXT NOT NULL,
    entity_id  BIGINT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (org_id, scope, entity_id, name)
);

CREATE TABLE extended_fields (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    entity_type     TEXT NOT NULL,
    name            TEXT NOT NULL,
    label           TEXT NOT NULL,
    data_type       TEXT NOT NULL,
    possible_values TEXT NOT NULL DEFAULT '[]',
    created_by      BIGINT NOT NULL DEFAULT -1,
    modified_by     BIGINT NOT NULL DEFAULT -1,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (org_id, entity_type, name)
);
