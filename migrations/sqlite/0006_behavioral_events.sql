-- Behavioral events: the org's event definitions (their typed fields as JSON), every event posted
-- against them, the de-duplication keys, and the attribute index that event search filters on.
-- Instants are BIGINT milliseconds since the Unix epoch (UTC); booleans are BOOLEAN (0/1).

-- `event_id` is the public id (32 hex characters); names are unique within an org.
CREATE TABLE behavioral_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    event_id    TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    actions     TEXT NOT NULL,
    fields      TEXT NOT NULL,
    is_active   BOOLEAN NOT NULL DEFAULT 1,
    version     BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

-- One posted event. `event_id` is generated per event; `request_id` is the caller's
-- X-CAP-REQUEST-ID (else the request's own id) and may repeat. `attributes` holds the validated,
-- normalised values; `psi_attributes` those of fields marked isPsiData; `input_request` the body
-- as received; `states` the processing steps shown by the running-status API.
CREATE TABLE behavioral_event_data (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id            BIGINT NOT NULL REFERENCES orgs (id),
    definition_id     BIGINT NOT NULL REFERENCES behavioral_events (id),
    event_name        TEXT NOT NULL,
    event_id          TEXT NOT NULL UNIQUE,
    request_id        TEXT NOT NULL,
    customer_id       BIGINT REFERENCES customers (id),
    source            TEXT NOT NULL,
    account_id        TEXT NOT NULL DEFAULT '',
    till_code         TEXT,
    webhook_id        TEXT,
    external_event_id TEXT,
    attributes        TEXT NOT NULL,
    psi_attributes    TEXT NOT NULL DEFAULT '{}',
    input_request     TEXT NOT NULL,
    is_duplicate      BOOLEAN NOT NULL,
    status            TEXT NOT NULL,
    message           TEXT NOT NULL,
    states            TEXT NOT NULL,
    event_at          BIGINT NOT NULL,
    received_at       BIGINT NOT NULL,
    response_ms       BIGINT NOT NULL
);
CREATE INDEX behavioral_event_data_request ON behavioral_event_data (org_id, request_id);
CREATE INDEX behavioral_event_data_customer ON behavioral_event_data (org_id, customer_id, event_at);
CREATE INDEX behavioral_event_data_time ON behavioral_event_data (org_id, event_at);
CREATE INDEX behavioral_event_data_received ON behavioral_event_data (org_id, received_at);
CREATE INDEX behavioral_event_data_definition
    ON behavioral_event_data (org_id, definition_id, received_at);

-- The first event of each de-duplication key (a hash of the event name and its unique key);
-- a later event with the same key is stored as a duplicate.
CREATE TABLE behavioral_event_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id     BIGINT NOT NULL REFERENCES orgs (id),
    key_hash   TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, key_hash)
);

-- Each non-PSI attribute of a posted event as text, for search by attribute name and value.
CREATE TABLE behavioral_event_attributes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id        BIGINT NOT NULL REFERENCES orgs (id),
    event_data_id BIGINT NOT NULL REFERENCES behavioral_event_data (id),
    name          TEXT NOT NULL,
    value         TEXT NOT NULL
);
CREATE INDEX behavioral_event_attributes_value
    ON behavioral_event_attributes (org_id, name, value, event_data_id);
