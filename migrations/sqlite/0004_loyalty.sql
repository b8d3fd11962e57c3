-- Loyalty core: programs (one JSON document each, versioned), the points ledger (lots, append-only
-- entries, the lots each entry moved, and the balance projection per customer and program),
-- transactions with their line items, currency ratios, and rejected transactions.
-- Money and points are BIGINT in ten-thousandths (12.5 points = 125000); quantities likewise.

CREATE TABLE programs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    is_default  BOOLEAN NOT NULL DEFAULT FALSE,
    version     BIGINT NOT NULL DEFAULT 1,
    document    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

-- The balance projection: always equal to the sums of the customer's ledger entries.
CREATE TABLE loyalty_accounts (
    org_id              BIGINT NOT NULL REFERENCES orgs (id),
    customer_id         BIGINT NOT NULL REFERENCES customers (id),
    program_id          BIGINT NOT NULL REFERENCES programs (id),
    tier_number         INTEGER NOT NULL DEFAULT 1,
    tier_since          BIGINT NOT NULL,
    tier_expires_at     BIGINT,
    current_points      BIGINT NOT NULL DEFAULT 0,
    promised_points     BIGINT NOT NULL DEFAULT 0,
    lifetime_points     BIGINT NOT NULL DEFAULT 0,
    redeemed_points     BIGINT NOT NULL DEFAULT 0,
    expired_points      BIGINT NOT NULL DEFAULT 0,
    returned_points     BIGINT NOT NULL DEFAULT 0,
    adjusted_points     BIGINT NOT NULL DEFAULT 0,
    lifetime_purchases  BIGINT NOT NULL DEFAULT 0,
    visits              BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (customer_id, program_id)
);
CREATE INDEX loyalty_accounts_tier_expiry ON loyalty_accounts (org_id, tier_expires_at);

CREATE TABLE transactions (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id                BIGINT NOT NULL REFERENCES orgs (id),
    customer_id           BIGINT REFERENCES customers (id),
    program_id            BIGINT REFERENCES programs (id),
    store_id              BIGINT NOT NULL REFERENCES stores (id),
    till_id               BIGINT REFERENCES tills (id),
    source                TEXT NOT NULL DEFAULT 'INSTORE',
    account_id            TEXT NOT NULL DEFAULT '',
    type                  TEXT NOT NULL,
    bill_number           TEXT NOT NULL,
    billing_at            BIGINT NOT NULL,
    billing_offset        TEXT NOT NULL DEFAULT '+00:00',
    amount                BIGINT NOT NULL DEFAULT 0,
    gross_amount          BIGINT NOT NULL DEFAULT 0,
    discount              BIGINT NOT NULL DEFAULT 0,
    note                  TEXT NOT NULL DEFAULT '',
    delivery_status       TEXT NOT NULL DEFAULT '',
    outlier_status        TEXT NOT NULL DEFAULT 'NORMAL',
    not_interested_reason TEXT NOT NULL DEFAULT '',
    return_type           TEXT,
    parent_id             BIGINT REFERENCES transactions (id),
    returned_amount       BIGINT NOT NULL DEFAULT 0,
    return_state          TEXT,
    currency_code         TEXT,
    local_amount          BIGINT,
    payment_modes         TEXT NOT NULL DEFAULT '[]',
    extended_fields       TEXT NOT NULL DEFAULT '{}',
    custom_fields         TEXT NOT NULL DEFAULT '{}',
    loyalty_status        TEXT NOT NULL DEFAULT 'DONE',
    points                BIGINT NOT NULL DEFAULT 0,
    side_effects          TEXT NOT NULL DEFAULT '[]',
    evaluation_log        TEXT NOT NULL DEFAULT '[]',
    api_version           TEXT NOT NULL DEFAULT 'v2',
    created_by_till_id    BIGINT,
    modified_by_till_id   BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX transactions_org_bill ON transactions (org_id, bill_number, billing_at);
CREATE INDEX transactions_org_customer ON transactions (org_id, customer_id, billing_at);
CREATE INDEX transactions_org_parent ON transactions (org_id, parent_id);
CREATE INDEX transactions_org_pending ON transactions (org_id, loyalty_status);

CREATE TABLE transaction_line_items (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id           BIGINT NOT NULL REFERENCES orgs (id),
    transaction_id   BIGINT NOT NULL REFERENCES transactions (id),
    serial           BIGINT NOT NULL,
    type             TEXT NOT NULL DEFAULT 'REGULAR',
    item_code        TEXT NOT NULL DEFAULT '',
    description      TEXT NOT NULL DEFAULT '',
    qty              BIGINT NOT NULL DEFAULT 0,
    rate             BIGINT NOT NULL DEFAULT 0,
    value            BIGINT NOT NULL DEFAULT 0,
    discount         BIGINT NOT NULL DEFAULT 0,
    amount           BIGINT NOT NULL DEFAULT 0,
    returned_qty     BIGINT NOT NULL DEFAULT 0,
    returned_amount  BIGINT NOT NULL DEFAULT 0,
    parent_line_id   BIGINT REFERENCES transaction_line_items (id),
    attributes       TEXT NOT NULL DEFAULT '[]',
    extended_fields  TEXT NOT NULL DEFAULT '{}',
    custom_fields    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX transaction_line_items_txn ON transaction_line_items (org_id, transaction_id);

-- A lot is one award with its own expiry; `remaining` falls as entries consume it.
CREATE TABLE point_lots (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    customer_id     BIGINT NOT NULL REFERENCES customers (id),
    program_id      BIGINT NOT NULL REFERENCES programs (id),
    kind            TEXT NOT NULL DEFAULT 'REGULAR',
    source          TEXT NOT NULL,
    rule            TEXT NOT NULL DEFAULT '',
    transaction_id  BIGINT REFERENCES transactions (id),
    line_item_id    BIGINT REFERENCES transaction_line_items (id),
    awarded         BIGINT NOT NULL,
    remaining       BIGINT NOT NULL,
    -- What returns of the lot's bill have taken back on this lot's account so far (the points
    -- themselves may have come from other lots if this one was already spent).
    reversed        BIGINT NOT NULL DEFAULT 0,
    awarded_at      BIGINT NOT NULL,
    unlock_at       BIGINT,
    expires_at      BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX point_lots_customer ON point_lots (org_id, customer_id, program_id, expires_at);
CREATE INDEX point_lots_transaction ON point_lots (org_id, transaction_id);
CREATE INDEX point_lots_expiry ON point_lots (org_id, expires_at) WHERE remaining > 0;
CREATE INDEX point_lots_unlock ON point_lots (org_id, unlock_at) WHERE kind = 'PROMISED';

-- Append-only: every movement of points. The deltas say what the entry did to each balance.
CREATE TABLE ledger_entries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id           BIGINT NOT NULL REFERENCES orgs (id),
    customer_id      BIGINT NOT NULL REFERENCES customers (id),
    program_id       BIGINT NOT NULL REFERENCES programs (id),
    kind             TEXT NOT NULL,
    current_delta    BIGINT NOT NULL DEFAULT 0,
    promised_delta   BIGINT NOT NULL DEFAULT 0,
    transaction_id   BIGINT REFERENCES transactions (id),
    reference        TEXT NOT NULL DEFAULT '',
    rule             TEXT NOT NULL DEFAULT '',
    note             TEXT NOT NULL DEFAULT '',
    till_id          BIGINT,
    created_at       BIGINT NOT NULL,
    effective_at     BIGINT NOT NULL
);
CREATE INDEX ledger_entries_customer ON ledger_entries (org_id, customer_id, program_id, id);
CREATE INDEX ledger_entries_transaction ON ledger_entries (org_id, transaction_id);

-- Which lots an entry moved and by how much (negative = taken from the lot).
CREATE TABLE ledger_lot_movements (
    org_id     BIGINT NOT NULL REFERENCES orgs (id),
    entry_id   BIGINT NOT NULL REFERENCES ledger_entries (id),
    lot_id     BIGINT NOT NULL REFERENCES point_lots (id),
    delta      BIGINT NOT NULL,
    PRIMARY KEY (entry_id, lot_id)
);
CREATE INDEX ledger_lot_movements_lot ON ledger_lot_movements (org_id, lot_id);

-- Every tier move of a customer in a program, with what caused it.
CREATE TABLE tier_changes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    customer_id     BIGINT NOT NULL REFERENCES customers (id),
    program_id      BIGINT NOT NULL REFERENCES programs (id),
    change_type     TEXT NOT NULL,
    from_tier       INTEGER NOT NULL,
    to_tier         INTEGER NOT NULL,
    transaction_id  BIGINT REFERENCES transactions (id),
    expires_at      BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX tier_changes_customer ON tier_changes (org_id, customer_id, program_id, id);

CREATE TABLE currency_ratios (
    org_id         BIGINT NOT NULL REFERENCES orgs (id),
    currency_code  TEXT NOT NULL,
    ratio          TEXT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (org_id, currency_code)
);

CREATE TABLE rejected_transactions (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id             BIGINT NOT NULL REFERENCES orgs (id),
    api                TEXT NOT NULL,
    request_body       TEXT NOT NULL,
    bill_number        TEXT NOT NULL DEFAULT '',
    identifier_name    TEXT NOT NULL DEFAULT '',
    identifier_value   TEXT NOT NULL DEFAULT '',
    source             TEXT NOT NULL DEFAULT '',
    store_id           BIGINT,
    till_id            BIGINT,
    rejection_type     TEXT NOT NULL,
    reason             TEXT NOT NULL,
    reprocessable      BOOLEAN NOT NULL,
    status             TEXT NOT NULL,
    retrigger_request  TEXT,
    result             TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX rejected_transactions_org_status ON rejected_transactions (org_id, status, id);
CREATE INDEX rejected_transactions_retrigger ON rejected_transactions (org_id, retrigger_request);
