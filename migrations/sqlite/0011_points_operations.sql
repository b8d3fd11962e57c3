-- Points operations: partial reversals of redemptions (and the share of each lot every reversal
-- restored or found expired), redemption metadata updates, validation codes per purpose,
-- transfers between customers, manual deductions, manual allocations linked to a bill (revoked
-- when the bill is returned), and pending goodwill requests.

-- What reversals have taken care of so far (restored plus lapsed): at most `points`.
ALTER TABLE points_redemptions ADD COLUMN reversal_claimed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE points_redemptions ADD COLUMN bill_id BIGINT;
ALTER TABLE points_redemptions ADD COLUMN purpose TEXT NOT NULL DEFAULT '';
ALTER TABLE points_redemptions ADD COLUMN custom_fields TEXT NOT NULL DEFAULT '{}';
ALTER TABLE points_redemptions ADD COLUMN updated_at BIGINT;
UPDATE points_redemptions SET reversal_claimed = points WHERE reversed;

-- REDEEM (redemptions) or TRANSFER (points transfers): a code is only good for its purpose.
ALTER TABLE points_validation_codes ADD COLUMN purpose TEXT NOT NULL DEFAULT 'REDEEM';

CREATE TABLE points_redemption_reversals (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    redemption_id   BIGINT NOT NULL REFERENCES points_redemptions (id),
    customer_id     BIGINT NOT NULL REFERENCES customers (id),
    -- Points of the redemption this reversal took care of: restored + lapsed.
    points          BIGINT NOT NULL,
    restored        BIGINT NOT NULL,
    lapsed          BIGINT NOT NULL,
    -- The REDEEM_REVERSAL entry (none when every lot had expired).
    entry_id        BIGINT REFERENCES ledger_entries (id),
    till_id         BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX points_redemption_reversals_redemption
    ON points_redemption_reversals (org_id, redemption_id, id);

-- Per reversal and lot: points put back into the lot, and points of the lot not restored
-- because it had expired.
CREATE TABLE points_redemption_reversal_lots (
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    reversal_id     BIGINT NOT NULL REFERENCES points_redemption_reversals (id),
    lot_id          BIGINT NOT NULL REFERENCES point_lots (id),
    restored        BIGINT NOT NULL,
    lapsed          BIGINT NOT NULL,
    PRIMARY KEY (reversal_id, lot_id)
);

CREATE TABLE points_transfers (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id             BIGINT NOT NULL REFERENCES orgs (id),
    program_id         BIGINT NOT NULL REFERENCES programs (id),
    from_customer_id   BIGINT NOT NULL REFERENCES customers (id),
    to_customer_id     BIGINT NOT NULL REFERENCES customers (id),
    points             BIGINT NOT NULL,
    -- The sender's TRANSFER_OUT and the receiver's TRANSFER_IN entries.
    out_entry_id       BIGINT NOT NULL REFERENCES ledger_entries (id),
    in_entry_id        BIGINT NOT NULL REFERENCES ledger_entries (id),
    notes              TEXT NOT NULL DEFAULT '',
    till_id            BIGINT,
    created_at         BIGINT NOT NULL
);
CREATE INDEX points_transfers_from ON points_transfers (org_id, from_customer_id, id);
CREATE INDEX points_transfers_to ON points_transfers (org_id, to_customer_id, id);

-- Manual deductions (negative points adjustments).
CREATE TABLE points_adjustments (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id                  BIGINT NOT NULL REFERENCES orgs (id),
    customer_id             BIGINT NOT NULL REFERENCES customers (id),
    program_id              BIGINT NOT NULL REFERENCES programs (id),
    points                  BIGINT NOT NULL,
    -- What the lots gave; the rest (points - taken) drove the balance below zero.
    taken                   BIGINT NOT NULL,
    reason                  TEXT NOT NULL,
    category                TEXT NOT NULL DEFAULT 'REGULAR',
    target_lot_id           BIGINT REFERENCES point_lots (id),
    promotion_id            BIGINT,
    promotion_identifier    TEXT,
    entry_id                BIGINT NOT NULL REFERENCES ledger_entries (id),
    till_id                 BIGINT,
    created_at              BIGINT NOT NULL
);
CREATE INDEX points_adjustments_customer ON points_adjustments (org_id, customer_id, id);

-- Points issued by hand (manualCurrencyAllocate), linked to the event they reward.
CREATE TABLE points_manual_allocations (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id               BIGINT NOT NULL REFERENCES orgs (id),
    customer_id          BIGINT NOT NULL REFERENCES customers (id),
    program_id           BIGINT NOT NULL REFERENCES programs (id),
    event_name           TEXT NOT NULL,
    event_source_id      TEXT NOT NULL,
    -- The bill, for TransactionAdd: its return revokes the allocation.
    transaction_id       BIGINT REFERENCES transactions (id),
    currency_type        TEXT NOT NULL,
    award_strategy_id    BIGINT,
    expiry_strategy_id   BIGINT,
    source_value         BIGINT NOT NULL,
    points               BIGINT NOT NULL,
    lot_id               BIGINT NOT NULL REFERENCES point_lots (id),
    entry_id             BIGINT NOT NULL REFERENCES ledger_entries (id),
    revoked_at           BIGINT,
    revoked_points       BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL
);
CREATE INDEX points_manual_allocations_transaction
    ON points_manual_allocations (org_id, transaction_id);
CREATE INDEX points_manual_allocations_customer
    ON points_manual_allocations (org_id, customer_id, id);

-- Goodwill points asked for a customer: PENDING until approved or rejected (the requests
-- workflow credits approved ones).
CREATE TABLE goodwill_requests (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id               BIGINT NOT NULL REFERENCES orgs (id),
    customer_id          BIGINT NOT NULL REFERENCES customers (id),
    program_id           BIGINT NOT NULL REFERENCES programs (id),
    base_type            TEXT NOT NULL,
    points               BIGINT NOT NULL,
    reason               TEXT NOT NULL DEFAULT '',
    comments             TEXT NOT NULL DEFAULT '',
    request_comments     TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL,
    approved_points      BIGINT,
    updated_comments     TEXT NOT NULL DEFAULT '',
    added_by_type        TEXT NOT NULL,
    added_by_id          BIGINT,
    updated_by_type      TEXT,
    updated_by_id        BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX goodwill_requests_customer ON goodwill_requests (org_id, customer_id, id);
