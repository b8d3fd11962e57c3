-- Coupons: series (the offer: discount, validity, code generation, limits), the coupons drawn from
-- them (usually tagged to one customer), their redemptions, and CSV upload jobs with their staged
-- rows. Money is BIGINT in ten-thousandths; instants are BIGINT UTC millis; -1 means unlimited on
-- every limit.

CREATE TABLE coupon_series (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          BIGINT NOT NULL REFERENCES orgs (id),
    description     TEXT NOT NULL,
    discount_code   TEXT NOT NULL,
    series_code     TEXT NOT NULL DEFAULT '',
    any_user        BOOLEAN NOT NULL DEFAULT FALSE,
    -- End of the series: no coupon of it is valid after this instant.
    valid_till_at   BIGINT NOT NULL,
    -- Counted by conditional UPDATEs, so that a limit is never passed under concurrency.
    max_create      BIGINT NOT NULL DEFAULT -1,
    max_redeem      BIGINT NOT NULL DEFAULT -1,
    num_issued      BIGINT NOT NULL DEFAULT 0,
    num_redeemed    BIGINT NOT NULL DEFAULT 0,
    -- The series document (CouponSeriesV2 as accepted, normalised JSON).
    config          TEXT NOT NULL,
    -- TRUE once coupon.expired was raised for every coupon of the ended series.
    expiry_swept    BOOLEAN NOT NULL DEFAULT FALSE,
    created_by_type TEXT NOT NULL DEFAULT 'SYSTEM',
    created_by      BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_used_at    BIGINT
);
CREATE INDEX coupon_series_org ON coupon_series (org_id, created_at);
CREATE INDEX coupon_series_ended ON coupon_series (valid_till_at) WHERE expiry_swept = FALSE;

CREATE TABLE coupons (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id            BIGINT NOT NULL REFERENCES orgs (id),
    series_id         BIGINT NOT NULL REFERENCES coupon_series (id),
    -- The code as generated or uploaded, and its upper-case key (codes match ignoring case).
    code              TEXT NOT NULL,
    code_key          TEXT NOT NULL,
    customer_id       BIGINT REFERENCES customers (id),
    -- ACTIVE or REVOKED; redeemed and expired are read from the counts and the dates.
    status            TEXT NOT NULL DEFAULT 'ACTIVE',
    -- NULL: an uploaded code waiting in the series' pool, not issued to anyone yet.
    issued_at         BIGINT,
    -- The coupon's own expiry (strategy or a bulk expiry update); NULL means the series end.
    expires_at        BIGINT,
    redemption_count  BIGINT NOT NULL DEFAULT 0,
    last_redeemed_at  BIGINT,
    issued_store_id   BIGINT,
    issued_till_id    BIGINT,
    -- API, PROGRAM or UPLOAD.
    source            TEXT NOT NULL,
    transaction_id    BIGINT,
    upload_job_id     BIGINT,
    metadata          TEXT NOT NULL DEFAULT '{}',
    expiry_raised     BOOLEAN NOT NULL DEFAULT FALSE,
    revoked_at        BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX coupons_code ON coupons (org_id, code_key);
CREATE INDEX coupons_code_any_org ON coupons (code_key);
CREATE INDEX coupons_customer ON coupons (org_id, customer_id, series_id);
CREATE INDEX coupons_pool ON coupons (series_id, id) WHERE issued_at IS NULL;
CREATE INDEX coupons_expiry ON coupons (expires_at) WHERE expiry_raised = FALSE;
CREATE INDEX coupons_series_unraised ON coupons (series_id, id) WHERE expiry_raised = FALSE;

CREATE TABLE coupon_redemptions (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id              BIGINT NOT NULL REFERENCES orgs (id),
    coupon_id           BIGINT NOT NULL REFERENCES coupons (id),
    series_id           BIGINT NOT NULL REFERENCES coupon_series (id),
    customer_id         BIGINT NOT NULL REFERENCES customers (id),
    redeemed_at         BIGINT NOT NULL,
    store_id            BIGINT,
    till_id             BIGINT,
    transaction_number  TEXT NOT NULL DEFAULT '',
    bill_amount         BIGINT,
    bill_id             TEXT NOT NULL DEFAULT '',
    custom_fields       TEXT NOT NULL DEFAULT '{}',
    details             TEXT NOT NULL DEFAULT '',
    -- API or UPLOAD.
    source              TEXT NOT NULL,
    upload_job_id       BIGINT,
    reversed            BOOLEAN NOT NULL DEFAULT FALSE,
    reversed_at         BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX coupon_redemptions_coupon ON coupon_redemptions (org_id, coupon_id, id);
CREATE INDEX coupon_redemptions_customer ON coupon_redemptions (org_id, customer_id, series_id);
-- A redemption made elsewhere is imported once, however often its file is uploaded.
CREATE UNIQUE INDEX coupon_redemptions_imported
    ON coupon_redemptions (coupon_id, redeemed_at) WHERE source = 'UPLOAD';

CREATE TABLE coupon_upload_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id           BIGINT NOT NULL REFERENCES orgs (id),
    series_id        BIGINT NOT NULL REFERENCES coupon_series (id),
    -- CODES (pre-made codes) or REDEMPTIONS (redemptions made elsewhere).
    kind             TEXT NOT NULL,
    -- UPLOADING, STARTED, PROCESSING, COMPLETED or FAILED.
    status           TEXT NOT NULL,
    file_name        TEXT NOT NULL DEFAULT '',
    file_sha256      TEXT NOT NULL DEFAULT '',
    -- How to read the rows (identifier kinds, column indexes, notes), JSON.
    settings         TEXT NOT NULL DEFAULT '{}',
    total_rows       BIGINT NOT NULL DEFAULT 0,
    processed_rows   BIGINT NOT NULL DEFAULT 0,
    success_count    BIGINT NOT NULL DEFAULT 0,
    error_count      BIGINT NOT NULL DEFAULT 0,
    failure_reason   TEXT NOT NULL DEFAULT '',
    lease_token      TEXT,
    lease_until      BIGINT,
    created_by_type  TEXT NOT NULL DEFAULT 'SYSTEM',
    created_by       BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX coupon_upload_jobs_series ON coupon_upload_jobs (org_id, series_id, kind, id);
CREATE INDEX coupon_upload_jobs_due ON coupon_upload_jobs (status, id);

-- The rows of an uploaded file, stored as they stream in and processed in bounded batches.
CREATE TABLE coupon_upload_rows (
    org_id         BIGINT NOT NULL REFERENCES orgs (id),
    job_id         BIGINT NOT NULL REFERENCES coupon_upload_jobs (id),
    row_number     BIGINT NOT NULL,
    line           TEXT NOT NULL,
    -- PENDING, OK or ERROR.
    status         TEXT NOT NULL DEFAULT 'PENDING',
    error_code     INTEGER,
    error_message  TEXT,
    PRIMARY KEY (job_id, row_number)
);
CREATE INDEX coupon_upload_rows_errors ON coupon_upload_rows (job_id, row_number) WHERE status = 'ERROR';
