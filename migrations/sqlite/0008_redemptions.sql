-- Points redemption: validation codes (stored only as salted SHA-256 hashes) with their
-- validity window and attempt count, every send of a code, and the redemptions themselves
-- (what a REDEEM ledger entry took, so that it can be read and reversed exactly once).

CREATE TABLE points_validation_codes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    customer_id     BIGINT NOT NULL REFERENCES customers (id),
    -- Points the code was issued for, in ten-thousandths.
    points          BIGINT NOT NULL,
    salt            TEXT NOT NULL,
    code_hash       TEXT NOT NULL,
    -- Wrong tries so far; the code is dead once this reaches the limit.
    attempts        INTEGER NOT NULL DEFAULT 0,
    used_at         BIGINT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX points_validation_codes_customer
    ON points_validation_codes (org_id, customer_id, id);

-- Each time a code was handed to delivery (comms once it lands; the outbox for now).
CREATE TABLE points_validation_code_sends (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    code_id         BIGINT NOT NULL REFERENCES points_validation_codes (id),
    channel         TEXT NOT NULL,
    event_id        BIGINT,
    message_id      BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX points_validation_code_sends_code ON points_validation_code_sends (org_id, code_id);

CREATE TABLE points_redemptions (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id               BIGINT NOT NULL REFERENCES orgs (id),
    customer_id          BIGINT NOT NULL REFERENCES customers (id),
    program_id           BIGINT NOT NULL REFERENCES programs (id),
    points               BIGINT NOT NULL,
    bill_number          TEXT NOT NULL DEFAULT '',
    external_reference   TEXT NOT NULL DEFAULT '',
    notes                TEXT NOT NULL DEFAULT '',
    till_id              BIGINT,
    -- CODE (checked), SKIPPED (skip_validation) or NOT_REQUIRED (program says never).
    validation           TEXT NOT NULL,
    validation_code_id   BIGINT REFERENCES points_validation_codes (id),
    entry_id             BIGINT NOT NULL REFERENCES ledger_entries (id),
    reversed             BOOLEAN NOT NULL DEFAULT FALSE,
    reversal_entry_id    BIGINT REFERENCES ledger_entries (id),
    reversed_points      BIGINT NOT NULL DEFAULT 0,
    reversed_at          BIGINT,
    created_at           BIGINT NOT NULL
);
CREATE INDEX points_redemptions_customer ON points_redemptions (org_id, customer_id, id);
