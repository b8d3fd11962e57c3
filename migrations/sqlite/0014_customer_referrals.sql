-- Referrals recorded at registration: the new customer (referee) registered with the referral
-- code of an existing customer (referrer). A customer is referred at most once. Referral codes
-- are derived from the referrer's id, so they need no table of their own.
CREATE TABLE customer_referrals (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id         BIGINT NOT NULL REFERENCES orgs (id),
    referee_id     BIGINT NOT NULL REFERENCES customers (id),
    referrer_id    BIGINT NOT NULL REFERENCES customers (id),
    referral_code  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (org_id, referee_id)
);
CREATE INDEX customer_referrals_referrer ON customer_referrals (org_id, referrer_id, id);
