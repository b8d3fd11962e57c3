-- Customer loyalty views and alternate currencies.
--
-- Manual tier holds: a tier set by hand that the engine keeps until it expires, or re-assesses
-- on the customer's next activity.
CREATE TABLE tier_manual_holds (
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    customer_id     BIGINT NOT NULL REFERENCES customers (id),
    program_id      BIGINT NOT NULL REFERENCES programs (id),
    -- TRUE: the next activity re-evaluates the tier from the metrics (and ends the hold).
    reassess        BOOLEAN NOT NULL DEFAULT FALSE,
    -- Until when the tier is held without re-assessment (NULL: until the tier itself expires).
    held_until      BIGINT,
    reason          TEXT NOT NULL DEFAULT '',
    tier_change_id  BIGINT REFERENCES tier_changes (id),
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (customer_id, program_id)
);
CREATE INDEX tier_manual_holds_org ON tier_manual_holds (org_id, customer_id);

-- The org's alternate currencies ("stars", "miles"). A currency is one more dimension of the
-- ledger: its lots and entries carry its id, and its balances live in `currency_balances`.
-- Currency 0 is the program's points, whose balances stay in `loyalty_accounts`.
CREATE TABLE currencies (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id       BIGINT NOT NULL REFERENCES orgs (id),
    name         TEXT NOT NULL,
    -- Lower-cased name: names are unique per org regardless of case.
    name_key     TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    -- The expiry rule of awards (the program document's `expiry` shape, JSON); NULL: the
    -- awarding program's own expiry.
    expiry       TEXT,
    active       BOOLEAN NOT NULL DEFAULT TRUE,
    version      BIGINT NOT NULL DEFAULT 1,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (org_id, name_key)
);

ALTER TABLE point_lots ADD COLUMN currency_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger_entries ADD COLUMN currency_id BIGINT NOT NULL DEFAULT 0;
CREATE INDEX point_lots_currency ON point_lots (org_id, customer_id, program_id, currency_id, expires_at);
CREATE INDEX ledger_entries_currency ON ledger_entries (org_id, customer_id, program_id, currency_id, id);

-- The balance projection of an alternate currency: always equal to the sums of its entries.
CREATE TABLE currency_balances (
    org_id           BIGINT NOT NULL REFERENCES orgs (id),
    customer_id      BIGINT NOT NULL REFERENCES customers (id),
    program_id       BIGINT NOT NULL REFERENCES programs (id),
    currency_id      BIGINT NOT NULL REFERENCES currencies (id),
    current_points   BIGINT NOT NULL DEFAULT 0,
    promised_points  BIGINT NOT NULL DEFAULT 0,
    lifetime_points  BIGINT NOT NULL DEFAULT 0,
    redeemed_points  BIGINT NOT NULL DEFAULT 0,
    expired_points   BIGINT NOT NULL DEFAULT 0,
    returned_points  BIGINT NOT NULL DEFAULT 0,
    adjusted_points  BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (customer_id, program_id, currency_id)
);
CREATE INDEX currency_balances_org ON currency_balances (org_id, customer_id);

-- A redemption of an alternate currency is a redemption row of that currency (0: points), so
-- that reversal gives it back exactly once like any other.
ALTER TABLE points_redemptions ADD COLUMN currency_id BIGINT NOT NULL DEFAULT 0;

-- Dual eligibility: with the org config on, several customers may share a secondary identifier
-- (any but the org's primary one) in a source account; such rows are `shared`. Identifiers that
-- are not shared stay unique within their source account, and a customer holds a value once.
-- SQLite cannot drop a table constraint, so the table is rebuilt with the same rows and ids.
CREATE TABLE customer_identifiers_rebuilt (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      BIGINT NOT NULL REFERENCES orgs (id),
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    source      TEXT NOT NULL,
    account_id  TEXT NOT NULL DEFAULT '',
    type        TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    shared      BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO customer_identifiers_rebuilt (id, org_id, customer_id, source, account_id, type, value, created_at)
    SELECT id, org_id, customer_id, source, account_id, type, value, created_at FROM customer_identifiers;
DROP TABLE customer_identifiers;
ALTER TABLE customer_identifiers_rebuilt RENAME TO customer_identifiers;
CREATE UNIQUE INDEX customer_identifiers_unique
    ON customer_identifiers (org_id, source, account_id, type, value) WHERE shared = FALSE;
CREATE UNIQUE INDEX customer_identifiers_holder
    ON customer_identifiers (org_id, source, account_id, type, value, customer_id);
CREATE INDEX customer_identifiers_lookup ON customer_identifiers (org_id, type, value);
CREATE INDEX customer_identifiers_customer ON customer_identifiers (customer_id);
