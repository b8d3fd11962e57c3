-- Alternate currencies in manual deductions and allocations: the currency each row moved
-- (0: the program's points; else the id of one of the org's currencies). The lots and entries
-- carry their currency already; these columns keep the rows readable on their own.
ALTER TABLE points_adjustments ADD COLUMN currency_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE points_manual_allocations ADD COLUMN currency_id BIGINT NOT NULL DEFAULT 0;
