//! Coupon rules: series (create, update), issuance (limits, pool codes, generated codes, the
//! issue message), redemption and its check, reactivation, revocation, expiry updates, bill data
//! added to redemptions, and the coupons' state as reads show it.
//!
//! Every write runs in one write transaction with its audit record and outbox event. A check and
//! the write it allows happen in the same transaction: on PostgreSQL the coupon row is locked and
//! the customer's standing in the series is serialised by an advisory lock; the series counters
//! move by conditional UPDATEs, last, so that `maxCreate` and `maxRedeem` are never passed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::model::{
    CouponError, SeriesConfig, UPDATE_REQUIRED, code_key, days_ms, effective_expiry, limit,
};
use super::store::{
    self, CouponRow, NewCoupon, NewRedemption, PoolIssue, RedemptionRow, SeriesRow, SeriesWrite,
};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::customers::model::{CustomerId, Identifier};
use crate::customers::store::CustomerRow;
use crate::db::{Connection, Db, DbError, Tx};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;

/// Org config: most series the org may create in one day (its local day); unset = no cap.
pub const SERIES_DAILY_CAP_CONFIG: &str = "CONF_COUPON_SERIES_MAX_PER_DAY";
/// Org config: `true` makes a transaction number mandatory on every redemption (718).
pub const TRANSACTION_NUMBER_REQUIRED_CONFIG: &str = "CONF_COUPON_REDEEM_TXN_NUMBER_MANDATORY";
/// Tries at a fresh random code before an issue gives up (the code space may be exhausted).
const CODE_ATTEMPTS_MAX: usize = 16;
/// Most coupons one issue request may create, and most codes one redemption may take.
pub const ISSUE_COUNT_MAX: i64 = 500;
pub const REDEEM_CODES_MAX: usize = 50;
/// Most unredeemed coupons a by-customer revocation handles.
pub const REVOKE_BY_CUSTOMER_MAX: usize = 100;
/// Most of a customer's coupons the reads consider (newest first).
pub const CUSTOMER_COUPONS_MAX: i64 = 1_000;
/// Most redemptions shown per read.
const REDEMPTIONS_SHOWN_MAX: i64 = 5_000;

/// A series with its parsed document.
#[derive(Clone, Debug)]
pub struct Series {
    pub row: SeriesRow,
    pub config: SeriesConfig,
}

impl Series {
    fn from_row(row: SeriesRow) -> Result<Series, CouponError> {
        let config = serde_json::from_str(&row.config)
            .map_err(|e| CouponError::Db(DbError::Sqlx(sqlx::Error::Decode(Box::new(e)))))?;
        Ok(Series { row, config })
    }

    pub fn id(&self) -> i64 {
        self.row.id
    }

    /// The wire form with the read-only counters (`CouponSeriesV2` as reads show it).
    pub fn render(&self) -> Value {
        let mut map = self.config.to_wire();
        let r = &self.row;
        map.insert("id".into(), json!(r.id));
        map.insert("orgId".into(), json!(r.org_id));
        map.insert("numIssued".into(), json!(r.num_issued));
        map.insert("numRedeemed".into(), json!(r.num_redeemed));
        map.insert("createdBy".into(), json!(r.created_by));
        map.insert("createdOn".into(), json!(crate::transactions::time::iso_utc(r.created_at)));
        map.insert(
            "lastUsed".into(),
            json!(r.last_used_at.map(crate::transactions::time::iso_utc)),
        );
        Value::Object(map)
    }
}

/// Loads a series of the org (707 when there is none).
pub async fn load_series(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Series, CouponError> {
    let row = store::get_series(c, org, id).await?.ok_or(CouponError::SeriesNotFound(id))?;
    Series::from_row(row)
}

/// The org's time zone (UTC when unset or unknown).
pub async fn org_zone(c: &mut impl Connection, org: OrgId) -> Result<Tz, DbError> {
    Ok(crate::org::store::get_org(c, org)
        .await?
        .and_then(|o| o.timezone.parse().ok())
        .unwrap_or(chrono_tz::UTC))
}

fn actor_of(principal: Option<&Principal>) -> AuditActor {
    principal.map(AuditActor::from).unwrap_or_else(AuditActor::system)
}

// ---------------------------------------------------------------- series

/// Checks that the stores, tills, zones and concepts a series names are the org's, and that the
/// series it excludes exist.
async fn check_references(
    c: &mut impl Connection,
    org: OrgId,
    config: &SeriesConfig,
    own_id: Option<i64>,
) -> Result<(), CouponError> {
    use crate::org::model::{ConceptId, StoreId, ZoneId};
    for entity in &config.redemption_org_entities {
        let exists = match entity.kind.as_str() {
            "STORE" => crate::org::store::get_store(c, org, StoreId(entity.id)).await?.is_some(),
            "TILL" => crate::org::store::find_till(
                c,
                org,
                &crate::org::store::TillLookup { id: Some(entity.id), code: None, name: None },
            )
            .await?
            .is_some(),
            "ZONE" => crate::org::store::zone_exists(c, org, ZoneId(entity.id)).await?,
            _ => crate::org::store::concept_exists(c, org, ConceptId(entity.id)).await?,
        };
        if !exists {
            return Err(CouponError::invalid(format!(
                "redemptionOrgEntityDetails: {} {} is not an entity of the org",
                entity.kind, entity.id
            )));
        }
    }
    for id in &config.mutual_exclusive_series_ids {
        if Some(*id) != own_id && store::get_series(c, org, *id).await?.is_none() {
            return Err(CouponError::invalid(format!(
                "mutualExclusiveSeriesIds: series {id} does not exist"
            )));
        }
    }
    Ok(())
}

fn write_of<'a>(config: &'a SeriesConfig, json: &'a str) -> SeriesWrite<'a> {
    SeriesWrite {
        description: &config.description,
        discount_code: &config.discount_code,
        series_code: &config.series_code,
        any_user: config.any_user,
        valid_till_at: config.valid_till,
        max_create: config.max_create,
        max_redeem: config.max_redeem,
        config: json,
    }
}

/// Creates a series from a `CouponSeriesV2` body.
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn create_series(
    db: &Db,
    principal: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Series, CouponError> {
    let org = principal.org;
    if let Some(given) = body.get("orgId").filter(|v| !v.is_null())
        && given.as_i64() != Some(org.0)
        && given.as_str().and_then(|s| s.trim().parse::<i64>().ok()) != Some(org.0)
    {
        return Err(CouponError::invalid("orgId must be the caller's org (or be left out)"));
    }
    let mut tx = db.begin_write().await?;
    let tz = org_zone(&mut tx, org).await?;
    let config = SeriesConfig::parse(body, tz, true)?;
    if config.valid_till <= now {
        return Err(CouponError::invalid("validTillDate must be in the future"));
    }
    check_references(&mut tx, org, &config, None).await?;
    let cap = crate::fields::store::config_value(&mut tx, org, SERIES_DAILY_CAP_CONFIG)
        .await?
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|cap| *cap > 0);
    if let Some(cap) = cap {
        let today = start_of_local_day(now, tz);
        if store::count_series_since(&mut tx, org, today).await? >= cap {
            return Err(CouponError::invalid(format!(
                "The org may create at most {cap} coupon series a day ({SERIES_DAILY_CAP_CONFIG})"
            )));
        }
    }
    let json = serde_json::to_string(&config).map_err(|e| CouponError::invalid(e.to_string()))?;
    let actor = AuditActor::from(principal);
    let id = store::insert_series(
        &mut tx,
        org,
        &write_of(&config, &json),
        (actor.principal_type, actor.principal_id),
        now,
    )
    .await?;
    let series = load_series(&mut tx, org, id).await?;
    audit::record(
        &mut tx,
        org,
        &actor,
        Change {
            entity_type: "COUPON_SERIES",
            entity_id: id,
            action: "CREATE",
            before: None,
            after: Some(Value::Object(series.config.to_wire())),
        },
    )
    .await?;
    events::raise(
        &mut tx,
        org,
        Some(principal),
        NewEvent {
            event_type: "coupon_series.created",
            entity_type: "COUPON_SERIES",
            entity_id: id,
            payload: json!({"seriesId": id, "description": series.config.description,
            "discountCode": series.config.discount_code}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(series)
}

fn start_of_local_day(now: i64, tz: Tz) -> i64 {
    chrono::DateTime::from_timestamp_millis(now)
        .and_then(|t| t.with_timezone(&tz).date_naive().and_hms_opt(0, 0, 0))
        .map(|local| crate::transactions::time::local_to_millis(local, tz))
        .unwrap_or(now)
}

/// Updates a series: the mandatory keys must be sent, other keys overwrite when present.
#[tracing::instrument(skip_all, fields(org = principal.org.0, series = id))]
pub async fn update_series(
    db: &Db,
    principal: &Principal,
    id: i64,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Series, CouponError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let before = load_series(&mut tx, org, id).await?;
    for key in UPDATE_REQUIRED {
        if body.get(key).is_none_or(Value::is_null) {
            return Err(CouponError::invalid(format!("{key} is required on update")));
        }
    }
    let tz = org_zone(&mut tx, org).await?;
    let mut merged = before.config.to_wire();
    for (key, value) in body {
        const READ_ONLY: [&str; 8] =
            ["id", "orgId", "numIssued", "numRedeemed", "createdBy", "createdOn", "lastUsed", ""];
        if !READ_ONLY.contains(&key.as_str()) {
            merged.insert(key.clone(), value.clone());
        }
    }
    let config = SeriesConfig::parse(&merged, tz, false)?;
    check_references(&mut tx, org, &config, Some(id)).await?;
    let json = serde_json::to_string(&config).map_err(|e| CouponError::invalid(e.to_string()))?;
    if !store::update_series(&mut tx, org, id, &write_of(&config, &json), now).await? {
        return Err(CouponError::SeriesNotFound(id));
    }
    let after = load_series(&mut tx, org, id).await?;
    audit::record(
        &mut tx,
        org,
        &AuditActor::from(principal),
        Change {
            entity_type: "COUPON_SERIES",
            entity_id: id,
            action: "UPDATE",
            before: Some(Value::Object(before.config.to_wire())),
            after: Some(Value::Object(after.config.to_wire())),
        },
    )
    .await?;
    events::raise(
        &mut tx,
        org,
        Some(principal),
        NewEvent {
            event_type: "coupon_series.updated",
            entity_type: "COUPON_SERIES",
            entity_id: id,
            payload: json!({"seriesId": id}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

// ---------------------------------------------------------------- customers

/// How a request names a customer.
#[derive(Clone, Debug)]
pub enum CustomerRef {
    Id(i64),
    Identifier(Identifier),
}

/// The org's customer a reference names (701 otherwise; another org's customer is not found).
pub async fn find_customer(
    c: &mut impl Connection,
    org: OrgId,
    reference: &CustomerRef,
) -> Result<CustomerRow, CouponError> {
    let id = match reference {
        CustomerRef::Id(id) => CustomerId(*id),
        CustomerRef::Identifier(identifier) => {
            crate::customers::store::find_owner(c, org, None, identifier)
                .await?
                .ok_or(CouponError::CustomerNotFound)?
        }
    };
    crate::customers::store::get_customer(c, org, id).await?.ok_or(CouponError::CustomerNotFound)
}

/// Fraud statuses that block coupons (Capillary's `MARKED`, `CONFIRMED`, `RECONFIRMED`).
fn check_customer_valid(customer: &CustomerRow) -> Result<(), CouponError> {
    let fraud = customer.fraud_status.as_deref().is_some_and(|s| {
        matches!(s.trim().to_ascii_uppercase().as_str(), "MARKED" | "CONFIRMED" | "RECONFIRMED")
    });
    if fraud {
        return Err(CouponError::CustomerInvalid(
            "Customer is marked as fraud and cannot be issued or redeem coupons".into(),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- issuance

/// Where an issue comes from and what to record with it.
#[derive(Clone, Debug)]
pub struct IssueContext<'a> {
    pub principal: Option<&'a Principal>,
    /// `API`, `PROGRAM` or `UPLOAD`.
    pub source: &'a str,
    pub transaction_id: Option<i64>,
    pub metadata: Map<String, Value>,
    pub store_id: Option<i64>,
    pub till_id: Option<i64>,
    /// False when the issue must not send the series' message (uploads).
    pub send_message: bool,
}

impl<'a> IssueContext<'a> {
    /// An API issue by `principal`, from its store and till.
    pub fn api(principal: &'a Principal, metadata: Map<String, Value>) -> IssueContext<'a> {
        IssueContext {
            principal: Some(principal),
            source: "API",
            transaction_id: None,
            metadata,
            store_id: principal.store.map(|s| s.0),
            till_id: principal.till.map(|t| t.0),
            send_message: true,
        }
    }
}

/// A non-fatal note on an issue or redemption (`{code, message}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub code: u32,
    pub message: String,
}

impl Warning {
    pub fn to_json(&self) -> Value {
        json!({"status": false, "code": self.code, "message": self.message})
    }
}

/// One coupon an issue handed out.
#[derive(Clone, Debug)]
pub struct Issued {
    pub coupon: CouponRow,
    /// True when the customer's existing coupon was returned instead of a new one.
    pub existing: bool,
}

/// What an issue request came to.
#[derive(Clone, Debug)]
pub struct IssueOutcome {
    pub series: Series,
    pub customer: CustomerRow,
    pub coupons: Vec<Issued>,
    pub warnings: Vec<Warning>,
}

/// Issues `count` coupons of `series` to `customer` inside the caller's transaction, enforcing
/// every issue limit; nothing is written when it fails before the counters, and the caller rolls
/// back otherwise.
#[allow(clippy::too_many_arguments)]
pub async fn issue_in(
    tx: &mut Tx,
    org: OrgId,
    series: &Series,
    customer: &CustomerRow,
    count: i64,
    ctx: &IssueContext<'_>,
    tz: Tz,
    now: i64,
) -> Result<(Vec<Issued>, Vec<Warning>), CouponError> {
    let config = &series.config;
    let series_id = series.id();
    if series.row.valid_till_at <= now {
        return Err(CouponError::SeriesExpired(series_id));
    }
    check_customer_valid(customer)?;
    if !(1..=ISSUE_COUNT_MAX).contains(&count) {
        return Err(CouponError::invalid(format!("count must be 1 to {ISSUE_COUNT_MAX}")));
    }
    store::lock_customer_series(tx, org, series_id, customer.id).await?;
    let (held, last_issued) = store::customer_holdings(tx, org, series_id, customer.id).await?;
    let mut warnings = Vec::new();
    if !config.multiple_vouchers_per_user_allowed && held > 0 {
        // One coupon per customer: hand back the one they hold while it can still be used.
        let existing = store::coupons_of_customer(tx, org, customer.id, Some(series_id), 1)
            .await?
            .into_iter()
            .find(|c| !c.is_revoked() && state_of(c, series, now).redeemable);
        return match existing {
            Some(coupon) if count == 1 => {
                if !config.do_not_resend_existing_voucher && ctx.send_message {
                    send_issue_message(tx, org, series, customer, &coupon, ctx, tz, &mut warnings)
                        .await?;
                }
                warnings.push(Warning {
                    code: crate::error::Code::CouponIssueFailed.info().code,
                    message: "The customer already holds a coupon of this series: it is returned"
                        .into(),
                });
                Ok((vec![Issued { coupon, existing: true }], warnings))
            }
            _ => Err(CouponError::IssueRefused(
                "the series allows one coupon per customer and the customer already holds one"
                    .into(),
            )),
        };
    }
    if !config.multiple_vouchers_per_user_allowed && count > 1 {
        return Err(CouponError::IssueRefused("the series allows one coupon per customer".into()));
    }
    if let Some(max) = limit(config.max_vouchers_per_user)
        && held + count > max
    {
        return Err(CouponError::IssueRefused(format!(
            "the customer holds {held} coupon(s) of the series; at most {max} are allowed"
        )));
    }
    if let Some(days) = limit(config.min_days_between_vouchers).filter(|d| *d > 0) {
        let too_soon = last_issued.is_some_and(|last| now < last + days_ms(days));
        if too_soon || count > 1 {
            return Err(CouponError::IssueRefused(format!(
                "at least {days} day(s) must pass between two coupons of the series"
            )));
        }
    }
    let expires_at = config.coupon_expiry(now, tz);
    let metadata = Value::Object(ctx.metadata.clone()).to_string();
    let mut issued = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let coupon =
            new_coupon(tx, org, series, customer.id, expires_at, &metadata, ctx, now).await?;
        if ctx.send_message {
            send_issue_message(tx, org, series, customer, &coupon, ctx, tz, &mut warnings).await?;
        }
        events::raise(tx, org, ctx.principal, NewEvent {
            event_type: "coupon.issued",
            entity_type: "COUPON",
            entity_id: coupon.id,
            payload: json!({"couponId": coupon.id, "seriesId": series_id, "customerId": customer.id,
                "source": ctx.source, "transactionId": ctx.transaction_id,
                "expiresAt": effective_expiry(coupon.expires_at, series.row.valid_till_at)}),
        })
        .await?;
        audit::record(
            tx,
            org,
            &actor_of(ctx.principal),
            Change {
                entity_type: "COUPON",
                entity_id: coupon.id,
                action: "ISSUE",
                before: None,
                after: Some(json!({"seriesId": series_id, "customerId": customer.id,
                "source": ctx.source, "transactionId": ctx.transaction_id})),
            },
        )
        .await?;
        issued.push(Issued { coupon, existing: false });
    }
    // Last, so that the series row is held (PostgreSQL) only until the commit that follows.
    if !store::count_issued(tx, org, series_id, count, now).await? {
        return Err(CouponError::IssueRefused(format!(
            "the series has issued its maximum of {} coupons",
            config.max_create
        )));
    }
    Ok((issued, warnings))
}

/// A code for the customer: the oldest uploaded code waiting in the pool, else a new random one.
#[allow(clippy::too_many_arguments)]
async fn new_coupon(
    tx: &mut Tx,
    org: OrgId,
    series: &Series,
    customer: i64,
    expires_at: Option<i64>,
    metadata: &str,
    ctx: &IssueContext<'_>,
    now: i64,
) -> Result<CouponRow, CouponError> {
    let series_id = series.id();
    if let Some(pooled) = store::pool_code(tx, org, series_id).await? {
        let issue = PoolIssue {
            customer_id: customer,
            issued_at: now,
            expires_at,
            store_id: ctx.store_id,
            till_id: ctx.till_id,
            source: ctx.source,
            transaction_id: ctx.transaction_id,
            metadata,
        };
        if store::issue_pool_code(tx, org, pooled, &issue).await?
            && let Some(row) = store::coupon_by_id(tx, org, pooled, false).await?
        {
            return Ok(row);
        }
    }
    for _ in 0..CODE_ATTEMPTS_MAX {
        let code = series.config.generate_code(&mut rand::thread_rng());
        let key = code.to_uppercase();
        let new = NewCoupon {
            series_id,
            code: &code,
            code_key: &key,
            customer_id: Some(customer),
            issued_at: Some(now),
            expires_at,
            issued_store_id: ctx.store_id,
            issued_till_id: ctx.till_id,
            source: ctx.source,
            transaction_id: ctx.transaction_id,
            upload_job_id: None,
            metadata,
        };
        if let Some(id) = store::insert_coupon(tx, org, &new, now).await?
            && let Some(row) = store::coupon_by_id(tx, org, id, false).await?
        {
            return Ok(row);
        }
    }
    Err(CouponError::IssueRefused(
        "no unused code could be generated: the series' code space may be exhausted".into(),
    ))
}

/// Queues the series' message (`smsTemplate`) to the customer unless the series is silent; a
/// message that cannot be queued is a warning (704), never a failed issue.
#[allow(clippy::too_many_arguments)]
async fn send_issue_message(
    tx: &mut Tx,
    org: OrgId,
    series: &Series,
    customer: &CustomerRow,
    coupon: &CouponRow,
    ctx: &IssueContext<'_>,
    tz: Tz,
    warnings: &mut Vec<Warning>,
) -> Result<(), CouponError> {
    use crate::comms::{self, Channel, CommsError, Recipient, SendRequest, TemplateRef};
    let config = &series.config;
    if config.sms_disabled || config.sms_template.trim().is_empty() {
        return Ok(());
    }
    let valid_till = effective_expiry(coupon.expires_at, series.row.valid_till_at);
    let mut request = SendRequest::new(
        Channel::Sms,
        Recipient::Customer(CustomerId(customer.id)),
        TemplateRef::Inline { subject: None, body: config.sms_template.clone() },
        actor_of(ctx.principal),
    )
    .value("voucher", coupon.code.clone())
    .value("coupon_code", coupon.code.clone())
    .value("valid_till", crate::transactions::time::v1_time(valid_till, tz))
    .value("discount_code", config.discount_code.clone())
    .value("description", config.description.clone());
    request.purpose = "COUPON".into();
    match comms::send(tx, org, request).await {
        Ok(_) => Ok(()),
        Err(CommsError::Db(e)) => Err(CouponError::Db(e)),
        Err(e) => {
            warnings.push(Warning {
                code: crate::error::Code::CouponSmsFailed.info().code,
                message: format!("Coupon issued but its message was not sent: {e}"),
            });
            Ok(())
        }
    }
}

/// Issues coupons of one series to one customer in one transaction (single and multiple issue).
#[tracing::instrument(skip_all, fields(org = ctx.principal.map(|p| p.org.0), series = series_id))]
pub async fn issue(
    db: &Db,
    org: OrgId,
    series_id: i64,
    customer: &CustomerRef,
    count: i64,
    ctx: &IssueContext<'_>,
    now: i64,
) -> Result<IssueOutcome, CouponError> {
    let mut tx = db.begin_write().await?;
    let series = load_series(&mut tx, org, series_id).await?;
    let customer = find_customer(&mut tx, org, customer).await?;
    let tz = org_zone(&mut tx, org).await?;
    let (coupons, warnings) =
        issue_in(&mut tx, org, &series, &customer, count, ctx, tz, now).await?;
    tx.commit().await?;
    // The counters moved: show the series as it is now.
    let mut conn = db.read().await?;
    let series = load_series(&mut conn, org, series_id).await.unwrap_or(series);
    Ok(IssueOutcome { series, customer, coupons, warnings })
}

/// Issues a coupon of `series_id` as a bill's side effect, inside the bill's transaction. A
/// refused issue (expired series, a limit) is rolled back to a savepoint and reported; the bill
/// goes on.
pub async fn issue_for_bill(
    tx: &mut Tx,
    org: OrgId,
    series_id: i64,
    customer: i64,
    ctx: &IssueContext<'_>,
    now: i64,
) -> Result<Result<(Series, CouponRow), CouponError>, DbError> {
    savepoint(tx, "SAVEPOINT coupon_issue").await?;
    let result = async {
        let series = load_series(tx, org, series_id).await?;
        let customer = crate::customers::store::get_customer(tx, org, CustomerId(customer))
            .await?
            .ok_or(CouponError::CustomerNotFound)?;
        let tz = org_zone(tx, org).await?;
        let (mut coupons, _warnings) =
            issue_in(tx, org, &series, &customer, 1, ctx, tz, now).await?;
        let coupon = coupons
            .pop()
            .map(|i| i.coupon)
            .ok_or_else(|| CouponError::IssueRefused("no coupon was issued".into()))?;
        Ok::<_, CouponError>((series, coupon))
    }
    .await;
    match result {
        Ok(done) => {
            savepoint(tx, "RELEASE SAVEPOINT coupon_issue").await?;
            Ok(Ok(done))
        }
        Err(CouponError::Db(e)) => Err(e),
        Err(refused) => {
            savepoint(tx, "ROLLBACK TO SAVEPOINT coupon_issue").await?;
            savepoint(tx, "RELEASE SAVEPOINT coupon_issue").await?;
            Ok(Err(refused))
        }
    }
}

async fn savepoint(tx: &mut Tx, statement: &'static str) -> Result<(), DbError> {
    crate::dispatch!(tx, |e| sqlx::query(statement).execute(e).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Sends a coupon's message again to the customer it was issued to (704 when no SMS can go to
/// the customer, 724 when the message cannot be built).
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn resend(
    db: &Db,
    principal: &Principal,
    code: &CodeRef,
    customer: &CustomerRef,
    ctx: &IssueContext<'_>,
    now: i64,
) -> Result<(CouponRow, CustomerRow), CouponError> {
    use crate::comms::{self, Channel, CommsError, Recipient, SendRequest, TemplateRef};
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let customer = find_customer(&mut tx, org, customer).await?;
    let coupon = resolve_coupon(&mut tx, org, code, false).await?;
    if coupon.customer_id != Some(customer.id) {
        return Err(CouponError::NotIssued(coupon.code.clone()));
    }
    if coupon.is_revoked() {
        return Err(CouponError::Revoked(coupon.code.clone()));
    }
    let series = load_series(&mut tx, org, coupon.series_id).await?;
    let tz = org_zone(&mut tx, org).await?;
    let template = if series.config.sms_template.trim().is_empty() {
        "Your coupon code is {voucher}, valid till {valid_till}.".to_string()
    } else {
        series.config.sms_template.clone()
    };
    let valid_till = effective_expiry(coupon.expires_at, series.row.valid_till_at);
    let mut request = SendRequest::new(
        Channel::Sms,
        Recipient::Customer(CustomerId(customer.id)),
        TemplateRef::Inline { subject: None, body: template },
        actor_of(ctx.principal),
    )
    .value("voucher", coupon.code.clone())
    .value("coupon_code", coupon.code.clone())
    .value("valid_till", crate::transactions::time::v1_time(valid_till, tz))
    .value("discount_code", series.config.discount_code.clone())
    .value("description", series.config.description.clone());
    request.purpose = "COUPON".into();
    let sent = match comms::send(&mut tx, org, request).await {
        Ok(sent) => sent,
        Err(CommsError::Db(e)) => return Err(e.into()),
        Err(e @ (CommsError::NoAddress(_) | CommsError::InvalidAddress { .. })) => {
            return Err(CouponError::SmsNotSent(format!("Could not send the coupon by SMS: {e}")));
        }
        Err(e) => return Err(CouponError::MessageNotSent(format!("Unable to send message: {e}"))),
    };
    events::raise(&mut tx, org, Some(principal), NewEvent {
        event_type: "coupon.resent",
        entity_type: "COUPON",
        entity_id: coupon.id,
        payload: json!({"couponId": coupon.id, "customerId": customer.id, "messageId": sent.id.0}),
    })
    .await?;
    audit::record(
        &mut tx,
        org,
        &AuditActor::from(principal),
        Change {
            entity_type: "COUPON",
            entity_id: coupon.id,
            action: "RESEND",
            before: None,
            after: Some(json!({"messageId": sent.id.0, "at": now})),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((coupon, customer))
}

// ---------------------------------------------------------------- state

/// What a coupon is at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CouponState {
    pub expired: bool,
    pub redeemed: bool,
    /// Issued, not revoked, not expired, open for redemption and with redemptions left.
    pub redeemable: bool,
}

/// The state of a coupon of `series` at `now`.
pub fn state_of(coupon: &CouponRow, series: &Series, now: i64) -> CouponState {
    let expires = effective_expiry(coupon.expires_at, series.row.valid_till_at);
    let expired = expires <= now;
    let redeemed = coupon.redemption_count > 0;
    let per_code_left =
        series.config.redemptions_per_code().is_none_or(|max| coupon.redemption_count < max);
    let open = series.config.redemption_valid_from.is_none_or(|from| from <= now);
    let series_left = limit(series.row.max_redeem).is_none_or(|max| series.row.num_redeemed < max);
    let redeemable = !expired
        && !coupon.is_revoked()
        && coupon.issued_at.is_some()
        && per_code_left
        && open
        && series_left;
    CouponState { expired, redeemed, redeemable }
}

// ---------------------------------------------------------------- redemption

/// A coupon as a request names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeRef {
    Code(String),
    Id(i64),
}

impl CodeRef {
    pub fn shown(&self) -> String {
        match self {
            CodeRef::Code(c) => c.clone(),
            CodeRef::Id(id) => id.to_string(),
        }
    }
}

/// Where and for what a redemption happens.
#[derive(Clone, Debug, Default)]
pub struct RedeemContext {
    /// When the redemption happens (now; the redeemed date for imported ones).
    pub at: i64,
    pub store_id: Option<i64>,
    pub till_id: Option<i64>,
    pub transaction_number: String,
    pub bill_amount: Option<i64>,
    pub bill_id: String,
    /// Redemption custom fields as a JSON object.
    pub custom_fields: Map<String, Value>,
    pub details: String,
    /// `API` or `UPLOAD`.
    pub source: &'static str,
    pub upload_job_id: Option<i64>,
    /// False for checks made without a bill (is_redeemable): the series' bill amount window is
    /// then left for the redemption.
    pub check_bill_amount: bool,
    /// True when the request redeems several coupons (even one per item, as v1.1 batches do):
    /// only single-coupon requests are the VoucherRedemption notification.
    pub bulk: bool,
    /// Set by a caller that redeems many rows in one transaction (the upload job) and moves the
    /// series counter itself, once, after its rows: the redemptions of the series it has made
    /// so far and not yet counted. The series row is then not locked row after row, which would
    /// hold it while later rows wait for coupons that live redemptions hold (a deadlock).
    pub deferred_series_count: Option<i64>,
    /// v1.1 redemptions: the `validation_code` sent (empty when none), checked for series that
    /// require one (`isValidationRequired`). `None` (v2, uploads): no validation code applies.
    pub validation_code: Option<String>,
}

/// One code of a redemption (or of its check), as checked.
#[derive(Clone, Debug)]
pub struct Quote {
    pub coupon: CouponRow,
    pub series: Arc<Series>,
    /// Redemptions left for this customer and code (`None`: unlimited).
    pub redemptions_left: Option<i64>,
    /// This customer's live redemptions of the code.
    pub redemptions_by_customer: i64,
}

/// One redemption made.
#[derive(Clone, Debug)]
pub struct Redeemed {
    pub quote: Quote,
    pub redemption_id: i64,
}

/// Finds the coupon a request names: 702 malformed, 715 another org's code, 719 unknown.
async fn resolve_coupon(
    c: &mut impl Connection,
    org: OrgId,
    code: &CodeRef,
    lock: bool,
) -> Result<CouponRow, CouponError> {
    match code {
        CodeRef::Code(raw) => {
            let key = code_key(raw)?;
            match store::coupon_by_key(c, org, &key, lock).await? {
                Some(row) => Ok(row),
                None if store::code_in_other_org(c, org, &key).await? => {
                    Err(CouponError::OtherOrg(raw.trim().to_string()))
                }
                None => Err(CouponError::CodeNotFound(raw.trim().to_string())),
            }
        }
        CodeRef::Id(id) => store::coupon_by_id(c, org, *id, lock)
            .await?
            .ok_or_else(|| CouponError::CodeNotFound(id.to_string())),
    }
}

/// Whether the principal's store (or till) is one the series names.
async fn store_allowed(
    c: &mut impl Connection,
    org: OrgId,
    config: &SeriesConfig,
    store_id: Option<i64>,
    till_id: Option<i64>,
) -> Result<bool, DbError> {
    if config.redemption_org_entities.is_empty() {
        return Ok(true);
    }
    let store = match store_id {
        Some(id) => crate::org::store::get_store(c, org, crate::org::model::StoreId(id)).await?,
        None => None,
    };
    Ok(config.redemption_org_entities.iter().any(|e| match e.kind.as_str() {
        "STORE" => store_id == Some(e.id),
        "TILL" => till_id == Some(e.id),
        "ZONE" => store.as_ref().is_some_and(|s| s.zone_id == e.id),
        _ => store.as_ref().is_some_and(|s| s.concept_id == e.id),
    }))
}

/// Checks one coupon against its series at `ctx.at`, `pending` being the redemptions of it
/// already counted in this request.
fn check_coupon(
    coupon: &CouponRow,
    series: &Series,
    customer: i64,
    ctx: &RedeemContext,
    pending: i64,
) -> Result<(), CouponError> {
    let config = &series.config;
    let code = coupon.code.clone();
    if coupon.is_revoked() {
        return Err(CouponError::Revoked(code));
    }
    if coupon.issued_at.is_none() {
        return Err(CouponError::NotIssued(code));
    }
    if coupon.customer_id != Some(customer) && !config.any_user {
        return Err(CouponError::NotForCustomer(code));
    }
    if let Some(from) = config.redemption_valid_from
        && ctx.at < from
    {
        return Err(CouponError::NotYetValid {
            code,
            from: crate::transactions::time::iso_utc(from),
        });
    }
    if series.row.valid_till_at <= ctx.at {
        return Err(CouponError::SeriesExpired(series.id()));
    }
    if coupon.expires_at.is_some_and(|own| own <= ctx.at) {
        return Err(CouponError::Expired(code));
    }
    if let Some(max) = config.redemptions_per_code()
        && coupon.redemption_count + pending >= max
    {
        return Err(CouponError::AlreadyRedeemed(code));
    }
    if let Some(min) = config.min_bill_amount
        && ctx.check_bill_amount
        && ctx.bill_amount.is_none_or(|amount| amount < min)
    {
        return Err(CouponError::RedemptionRefused(format!(
            "Coupon code '{code}' needs a bill amount of at least {}",
            crate::points::model::Fixed(min).to_f64()
        )));
    }
    if let Some(max) = config.max_bill_amount
        && ctx.bill_amount.is_some_and(|amount| amount > max)
    {
        return Err(CouponError::RedemptionRefused(format!(
            "Coupon code '{code}' allows a bill amount of at most {}",
            crate::points::model::Fixed(max).to_f64()
        )));
    }
    Ok(())
}

/// Checks a whole redemption (all codes for one customer) and, when `commit`, makes it: every
/// code passes or nothing is written. The error carries the index of the code that failed.
#[allow(clippy::too_many_arguments)]
pub async fn redeem_in(
    c: &mut impl Connection,
    org: OrgId,
    principal: Option<&Principal>,
    codes: &[CodeRef],
    customer: &CustomerRow,
    ctx: &RedeemContext,
    commit: bool,
) -> Result<Vec<Redeemed>, (usize, CouponError)> {
    let at = |i: usize| move |e: CouponError| (i, e);
    if codes.is_empty() {
        return Err((0, CouponError::invalid("at least one coupon code is required")));
    }
    check_customer_valid(customer).map_err(at(0))?;
    if commit && ctx.source == "API" && ctx.transaction_number.trim().is_empty() {
        let required =
            crate::fields::store::config_value(c, org, TRANSACTION_NUMBER_REQUIRED_CONFIG)
                .await
                .map_err(|e| (0, e.into()))?
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if required {
            return Err((0, CouponError::TransactionNumberRequired));
        }
    }
    // Find the coupons; with several, lock them in id order so that two requests naming the same
    // codes in different orders cannot deadlock.
    let mut rows: Vec<CouponRow> = Vec::with_capacity(codes.len());
    if codes.len() == 1 {
        rows.push(resolve_coupon(c, org, &codes[0], commit).await.map_err(at(0))?);
    } else {
        for (i, code) in codes.iter().enumerate() {
            rows.push(resolve_coupon(c, org, code, false).await.map_err(at(i))?);
        }
        if commit {
            let mut order: Vec<usize> = (0..rows.len()).collect();
            order.sort_by_key(|i| rows[*i].id);
            for i in order {
                let id = rows[i].id;
                rows[i] = store::coupon_by_id(c, org, id, true)
                    .await
                    .map_err(|e| (i, e.into()))?
                    .ok_or_else(|| (i, CouponError::CodeNotFound(codes[i].shown())))?;
            }
        }
    }
    let mut series_of: HashMap<i64, Arc<Series>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(slot) = series_of.entry(row.series_id) {
            slot.insert(Arc::new(load_series(c, org, row.series_id).await.map_err(at(i))?));
        }
    }
    // Series that exclude each other cannot be redeemed together.
    let in_request: BTreeSet<i64> = rows.iter().map(|r| r.series_id).collect();
    for (i, row) in rows.iter().enumerate() {
        let series = &series_of[&row.series_id];
        if let Some(other) = series
            .config
            .mutual_exclusive_series_ids
            .iter()
            .find(|id| **id != row.series_id && in_request.contains(id))
        {
            return Err((
                i,
                CouponError::RedemptionRefused(format!(
                    "Coupon series {} cannot be redeemed together with series {other}",
                    row.series_id
                )),
            ));
        }
    }
    let mut pending_coupon: HashMap<i64, i64> = HashMap::new();
    let mut quotes = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let series = series_of[&row.series_id].clone();
        let pending = pending_coupon.get(&row.id).copied().unwrap_or(0);
        check_coupon(row, &series, customer.id, ctx, pending).map_err(at(i))?;
        if commit
            && series.config.validation_required
            && let Some(code) = &ctx.validation_code
        {
            check_validation_code(c, org, customer.id, code, ctx.at).await.map_err(at(i))?;
        }
        if !store_allowed(c, org, &series.config, ctx.store_id, ctx.till_id)
            .await
            .map_err(|e| (i, e.into()))?
        {
            return Err((i, CouponError::StoreNotAllowed(row.code.clone())));
        }
        *pending_coupon.entry(row.id).or_default() += 1;
        quotes.push((i, series));
    }
    // The customer's standing in each series, serialised per (series, customer).
    let mut pending_series: BTreeMap<i64, i64> = BTreeMap::new();
    for row in &rows {
        *pending_series.entry(row.series_id).or_default() += 1;
    }
    if commit {
        for series_id in pending_series.keys() {
            store::lock_customer_series(c, org, *series_id, customer.id)
                .await
                .map_err(|e| (0, e.into()))?;
        }
    }
    let mut standing: HashMap<i64, (i64, Option<i64>)> = HashMap::new();
    for series_id in pending_series.keys() {
        let s = store::customer_redemptions(c, org, *series_id, customer.id)
            .await
            .map_err(|e| (0, e.into()))?;
        standing.insert(*series_id, s);
    }
    let mut counted_series: HashMap<i64, i64> = HashMap::new();
    let mut counted_by_customer: HashMap<i64, i64> = HashMap::new();
    let mut out: Vec<Quote> = Vec::with_capacity(rows.len());
    for (row, (i, series)) in rows.iter().zip(quotes) {
        let config = &series.config;
        let (in_series, last) = standing.get(&row.series_id).copied().unwrap_or((0, None));
        let before_in_series = counted_series.get(&row.series_id).copied().unwrap_or(0);
        let by_customer = store::customer_redemptions_of_coupon(c, org, row.id, customer.id)
            .await
            .map_err(|e| (i, e.into()))?;
        let before_of_coupon = counted_by_customer.get(&row.id).copied().unwrap_or(0);
        if !config.same_user_multiple_redeem && by_customer + before_of_coupon > 0 {
            return Err((i, CouponError::RedeemedByCustomer(row.code.clone())));
        }
        if let Some(max) = limit(config.max_redemptions_in_series_per_user)
            && in_series + before_in_series >= max
        {
            return Err((
                i,
                CouponError::CustomerLimit(format!(
                    "The customer has made {} redemption(s) in coupon series {}; at most {max} are allowed",
                    in_series + before_in_series,
                    row.series_id
                )),
            ));
        }
        if let Some(days) = limit(config.min_days_between_redemption).filter(|d| *d > 0) {
            let too_soon =
                last.is_some_and(|last| ctx.at < last + days_ms(days)) || before_in_series > 0;
            if too_soon {
                return Err((
                    i,
                    CouponError::RedemptionRefused(format!(
                        "At least {days} day(s) must pass between two redemptions in coupon series {}",
                        row.series_id
                    )),
                ));
            }
        }
        let pending_here = pending_series.get(&row.series_id).copied().unwrap_or(1)
            + ctx.deferred_series_count.unwrap_or(0);
        if (!commit || ctx.deferred_series_count.is_some())
            && let Some(max) = limit(series.row.max_redeem)
            && series.row.num_redeemed + pending_here > max
        {
            return Err((i, CouponError::SeriesRedemptionsExhausted(row.series_id)));
        }
        *counted_series.entry(row.series_id).or_default() += 1;
        *counted_by_customer.entry(row.id).or_default() += 1;
        let left = [
            config.redemptions_per_code().map(|m| m - row.redemption_count - before_of_coupon),
            limit(config.max_redemptions_in_series_per_user)
                .map(|m| m - in_series - before_in_series),
            limit(series.row.max_redeem).map(|m| m - series.row.num_redeemed),
            (!config.same_user_multiple_redeem).then_some(1 - by_customer - before_of_coupon),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|l| l.max(0));
        out.push(Quote {
            coupon: row.clone(),
            series: series.clone(),
            redemptions_left: left,
            redemptions_by_customer: by_customer,
        });
    }
    if !commit {
        return Ok(out.into_iter().map(|quote| Redeemed { quote, redemption_id: 0 }).collect());
    }
    let now = crate::db::now_millis();
    let custom = Value::Object(ctx.custom_fields.clone()).to_string();
    let actor = actor_of(principal);
    let mut done = Vec::with_capacity(out.len());
    for (i, quote) in out.into_iter().enumerate() {
        let row = &quote.coupon;
        let redemption = NewRedemption {
            coupon_id: row.id,
            series_id: row.series_id,
            customer_id: customer.id,
            redeemed_at: ctx.at,
            store_id: ctx.store_id,
            till_id: ctx.till_id,
            transaction_number: &ctx.transaction_number,
            bill_amount: ctx.bill_amount,
            bill_id: &ctx.bill_id,
            custom_fields: &custom,
            details: &ctx.details,
            source: ctx.source,
            upload_job_id: ctx.upload_job_id,
        };
        let id = store::insert_redemption(c, org, &redemption, now)
            .await
            .map_err(|e| (i, e.into()))?
            .ok_or_else(|| {
                (
                    i,
                    CouponError::RedemptionRefused(format!(
                        "The redemption of coupon code '{}' at this instant was already imported",
                        row.code
                    )),
                )
            })?;
        store::count_coupon_redemption(c, org, row.id, 1, ctx.at.max(now))
            .await
            .map_err(|e| (i, e.into()))?;
        events::raise(
            c,
            org,
            principal,
            NewEvent {
                event_type: "coupon.redeemed",
                entity_type: "COUPON",
                entity_id: row.id,
                payload: json!({"couponId": row.id, "redemptionId": id, "seriesId": row.series_id,
                "customerId": customer.id, "transactionNumber": ctx.transaction_number,
                "source": ctx.source, "bulk": ctx.bulk || codes.len() > 1}),
            },
        )
        .await
        .map_err(|e| (i, e.into()))?;
        audit::record(
            c,
            org,
            &actor,
            Change {
                entity_type: "COUPON",
                entity_id: row.id,
                action: "REDEEM",
                before: Some(json!({"redemptionCount": row.redemption_count})),
                after: Some(
                    json!({"redemptionCount": row.redemption_count + 1, "redemptionId": id,
                "customerId": customer.id, "transactionNumber": ctx.transaction_number}),
                ),
            },
        )
        .await
        .map_err(|e| (i, e.into()))?;
        done.push(Redeemed { quote, redemption_id: id });
    }
    if ctx.deferred_series_count.is_some() {
        return Ok(done);
    }
    // Last, in series order: the series rows are held (PostgreSQL) only until the commit.
    for (series_id, n) in &pending_series {
        let counted =
            store::count_redeemed(c, org, *series_id, *n, now).await.map_err(|e| (0, e.into()))?;
        if !counted {
            let index = rows.iter().position(|r| r.series_id == *series_id).unwrap_or(0);
            return Err((index, CouponError::SeriesRedemptionsExhausted(*series_id)));
        }
    }
    Ok(done)
}

/// Redeems codes for a customer in one transaction (all or nothing).
pub async fn redeem(
    db: &Db,
    principal: &Principal,
    codes: &[CodeRef],
    customer: &CustomerRef,
    ctx: &RedeemContext,
) -> Result<(CustomerRow, Vec<Redeemed>), (usize, CouponError)> {
    let org = principal.org;
    let mut tx = db.begin_write().await.map_err(|e| (0, e.into()))?;
    let customer = find_customer(&mut tx, org, customer).await.map_err(|e| (0, e))?;
    let done = redeem_in(&mut tx, org, Some(principal), codes, &customer, ctx, true).await?;
    tx.commit().await.map_err(|e| (0, e.into()))?;
    Ok((customer, done))
}

/// Checks codes without redeeming them (reads only, no locks).
pub async fn check(
    db: &Db,
    principal: &Principal,
    codes: &[CodeRef],
    customer: &CustomerRow,
    ctx: &RedeemContext,
) -> Result<Vec<Quote>, (usize, CouponError)> {
    let mut conn = db.read().await.map_err(|e| (0, e.into()))?;
    let done =
        redeem_in(&mut conn, principal.org, Some(principal), codes, customer, ctx, false).await?;
    Ok(done.into_iter().map(|r| r.quote).collect())
}

// ---------------------------------------------------------------- reactivation

/// What a reactivation reversed.
#[derive(Clone, Debug)]
pub struct Reactivated {
    pub coupon: CouponRow,
    pub series: Series,
    pub redemption: RedemptionRow,
}

/// Reverses one redemption of a coupon (the one named, else its latest live one) so that the
/// coupon can be redeemed again; the counters go back by one.
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn reactivate(
    db: &Db,
    principal: &Principal,
    code: &CodeRef,
    customer: Option<&CustomerRef>,
    redemption_id: Option<i64>,
    now: i64,
) -> Result<Reactivated, CouponError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let customer = match customer {
        Some(r) => Some(find_customer(&mut tx, org, r).await?),
        None => None,
    };
    let coupon = resolve_coupon(&mut tx, org, code, true).await?;
    let series = load_series(&mut tx, org, coupon.series_id).await?;
    if let Some(customer) = &customer
        && coupon.customer_id != Some(customer.id)
        && !series.config.any_user
    {
        return Err(CouponError::NotIssued(coupon.code.clone()));
    }
    let redemption = match redemption_id {
        Some(id) => store::get_redemption(&mut tx, org, id, true)
            .await?
            .filter(|r| r.coupon_id == coupon.id && !r.reversed)
            .filter(|r| customer.as_ref().is_none_or(|c| c.id == r.customer_id))
            .ok_or(CouponError::InvalidRedemptionId(id))?,
        None => store::latest_redemption(&mut tx, org, coupon.id, customer.as_ref().map(|c| c.id))
            .await?
            .ok_or(CouponError::NoRedemptionId)?,
    };
    store::lock_customer_series(&mut tx, org, coupon.series_id, redemption.customer_id).await?;
    if !store::reverse_redemption(&mut tx, org, redemption.id, now).await? {
        return Err(CouponError::InvalidRedemptionId(redemption.id));
    }
    store::count_coupon_redemption(&mut tx, org, coupon.id, -1, now).await?;
    events::raise(
        &mut tx,
        org,
        Some(principal),
        NewEvent {
            event_type: "coupon.reactivated",
            entity_type: "COUPON",
            entity_id: coupon.id,
            payload: json!({"couponId": coupon.id, "redemptionId": redemption.id,
            "seriesId": coupon.series_id, "customerId": redemption.customer_id}),
        },
    )
    .await?;
    audit::record(
        &mut tx,
        org,
        &AuditActor::from(principal),
        Change {
            entity_type: "COUPON",
            entity_id: coupon.id,
            action: "REACTIVATE",
            before: Some(
                json!({"redemptionCount": coupon.redemption_count, "redemptionId": redemption.id}),
            ),
            after: Some(json!({"redemptionCount": coupon.redemption_count - 1})),
        },
    )
    .await?;
    store::count_redeemed(&mut tx, org, coupon.series_id, -1, now).await?;
    let coupon = store::coupon_by_id(&mut tx, org, coupon.id, false)
        .await?
        .ok_or_else(|| CouponError::CodeNotFound(coupon.code.clone()))?;
    let redemption = store::get_redemption(&mut tx, org, redemption.id, false)
        .await?
        .ok_or(CouponError::InvalidRedemptionId(redemption.id))?;
    let series = load_series(&mut tx, org, coupon.series_id).await?;
    tx.commit().await?;
    Ok(Reactivated { coupon, series, redemption })
}

// ---------------------------------------------------------------- revocation

/// What a revocation did.
#[derive(Debug, Default)]
pub struct Revocation {
    pub revoked: Vec<CouponRow>,
    /// The code asked for and why it was not revoked.
    pub failed: Vec<(String, CouponError)>,
}

/// Revokes unredeemed coupons: the codes named, or (without codes) the customer's unredeemed
/// coupons of the series (at most [`REVOKE_BY_CUSTOMER_MAX`]). Codes that cannot be revoked are
/// listed with their reason; the others are revoked.
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn revoke(
    db: &Db,
    principal: &Principal,
    series_id: Option<i64>,
    customer: Option<&CustomerRef>,
    codes: &[String],
    now: i64,
) -> Result<Revocation, CouponError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let series = match series_id {
        Some(id) => Some(load_series(&mut tx, org, id).await?),
        None => None,
    };
    let customer = match customer {
        Some(r) => Some(find_customer(&mut tx, org, r).await?),
        None => None,
    };
    if series.as_ref().is_some_and(|s| s.config.any_user) && customer.is_none() {
        return Err(CouponError::invalid(
            "customer is required to revoke coupons of a generic (anyUser) series",
        ));
    }
    let mut outcome = Revocation::default();
    let mut candidates: Vec<CouponRow> = Vec::new();
    if codes.is_empty() {
        let (Some(customer), Some(series)) = (&customer, &series) else {
            return Err(CouponError::invalid(
                "couponCodes, or couponSeriesId with a customer, are required",
            ));
        };
        let held = store::coupons_of_customer(
            &mut tx,
            org,
            customer.id,
            Some(series.id()),
            CUSTOMER_COUPONS_MAX,
        )
        .await?;
        let unredeemed: Vec<CouponRow> =
            held.into_iter().filter(|c| !c.is_revoked() && c.redemption_count == 0).collect();
        if unredeemed.len() > REVOKE_BY_CUSTOMER_MAX {
            return Err(CouponError::invalid(format!(
                "The customer holds {} unredeemed coupons of the series; at most {REVOKE_BY_CUSTOMER_MAX} can be revoked at once: name the codes",
                unredeemed.len()
            )));
        }
        candidates = unredeemed;
    } else {
        for code in codes {
            match resolve_coupon(&mut tx, org, &CodeRef::Code(code.clone()), false).await {
                Ok(row) => candidates.push(row),
                Err(CouponError::Db(e)) => return Err(e.into()),
                Err(e) => outcome.failed.push((code.clone(), e)),
            }
        }
    }
    candidates.sort_by_key(|c| c.id);
    candidates.dedup_by_key(|c| c.id);
    let actor = AuditActor::from(principal);
    for candidate in candidates {
        let Some(row) = store::coupon_by_id(&mut tx, org, candidate.id, true).await? else {
            continue;
        };
        let refusal = if series.as_ref().is_some_and(|s| s.id() != row.series_id) {
            Some(CouponError::invalid(format!(
                "Coupon code '{}' is not of coupon series {}",
                row.code,
                series_id.unwrap_or_default()
            )))
        } else if customer.as_ref().is_some_and(|c| row.customer_id != Some(c.id)) {
            Some(CouponError::NotIssued(row.code.clone()))
        } else if row.is_revoked() {
            Some(CouponError::Revoked(row.code.clone()))
        } else if row.redemption_count > 0 {
            Some(CouponError::AlreadyRedeemed(row.code.clone()))
        } else {
            None
        };
        if let Some(e) = refusal {
            outcome.failed.push((row.code.clone(), e));
            continue;
        }
        if !store::revoke_coupon(&mut tx, org, row.id, now).await? {
            outcome.failed.push((row.code.clone(), CouponError::AlreadyRedeemed(row.code.clone())));
            continue;
        }
        events::raise(
            &mut tx,
            org,
            Some(principal),
            NewEvent {
                event_type: "coupon.revoked",
                entity_type: "COUPON",
                entity_id: row.id,
                payload: json!({"couponId": row.id, "seriesId": row.series_id,
                "customerId": row.customer_id}),
            },
        )
        .await?;
        audit::record(
            &mut tx,
            org,
            &actor,
            Change {
                entity_type: "COUPON",
                entity_id: row.id,
                action: "REVOKE",
                before: Some(json!({"status": row.status})),
                after: Some(json!({"status": "REVOKED"})),
            },
        )
        .await?;
        let mut revoked = row;
        revoked.status = "REVOKED".into();
        revoked.revoked_at = Some(now);
        outcome.revoked.push(revoked);
    }
    tx.commit().await?;
    Ok(outcome)
}

// ---------------------------------------------------------------- expiry updates

/// Sets the expiry of coupons of a series (each code on its own; one transaction). A new date
/// may be earlier or later, revives an expired coupon, and never passes the series end.
#[tracing::instrument(skip_all, fields(org = principal.org.0, series = series_id))]
pub async fn update_expiry(
    db: &Db,
    principal: &Principal,
    series_id: i64,
    customer: Option<&CustomerRef>,
    items: &[(String, Result<i64, CouponError>)],
    now: i64,
) -> Result<Vec<Result<i64, CouponError>>, CouponError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let series = load_series(&mut tx, org, series_id).await?;
    let customer = match customer {
        Some(r) => Some(find_customer(&mut tx, org, r).await?),
        None => None,
    };
    if series.config.any_user && customer.is_none() {
        return Err(CouponError::invalid(
            "customer is required to update coupons of a generic (anyUser) series",
        ));
    }
    let actor = AuditActor::from(principal);
    let mut results = Vec::with_capacity(items.len());
    for (code, expiry) in items {
        let result: Result<i64, CouponError> = async {
            let expiry = match expiry {
                Ok(t) => *t,
                Err(e) => return Err(CouponError::invalid(e.to_string())),
            };
            let row = resolve_coupon(&mut tx, org, &CodeRef::Code(code.clone()), true).await?;
            if row.series_id != series_id {
                return Err(CouponError::invalid(format!(
                    "Coupon code '{code}' is not of coupon series {series_id}"
                )));
            }
            if customer.as_ref().is_some_and(|c| row.customer_id != Some(c.id)) {
                return Err(CouponError::NotIssued(row.code.clone()));
            }
            if row.is_revoked() {
                return Err(CouponError::Revoked(row.code.clone()));
            }
            if expiry > series.row.valid_till_at {
                return Err(CouponError::invalid(format!(
                    "expiryDate of '{code}' is after the series end {}",
                    crate::transactions::time::iso_utc(series.row.valid_till_at)
                )));
            }
            store::set_coupon_expiry(&mut tx, org, row.id, expiry, now).await?;
            events::raise(&mut tx, org, Some(principal), NewEvent {
                event_type: "coupon.expiry_updated",
                entity_type: "COUPON",
                entity_id: row.id,
                payload: json!({"couponId": row.id, "seriesId": series_id, "expiresAt": expiry}),
            })
            .await?;
            audit::record(&mut tx, org, &actor, Change {
                entity_type: "COUPON",
                entity_id: row.id,
                action: "UPDATE_EXPIRY",
                before: Some(json!({"expiresAt": effective_expiry(row.expires_at, series.row.valid_till_at)})),
                after: Some(json!({"expiresAt": expiry})),
            })
            .await?;
            Ok(expiry)
        }
        .await;
        if let Err(CouponError::Db(e)) = result {
            return Err(e.into());
        }
        results.push(result);
    }
    tx.commit().await?;
    Ok(results)
}

// ---------------------------------------------------------------- redemption bill data

/// Bill data for one earlier redemption.
#[derive(Clone, Debug)]
pub struct RedemptionUpdate {
    pub redemption_id: Option<i64>,
    pub bill_amount: Option<i64>,
    pub transaction_number: Option<String>,
    pub bill_id: Option<String>,
    pub custom_fields: Option<Map<String, Value>>,
}

/// Adds transaction data to redemptions made before the bill existed; each on its own (one
/// transaction).
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn update_redemptions(
    db: &Db,
    principal: &Principal,
    customer: Option<&CustomerRef>,
    updates: &[RedemptionUpdate],
    now: i64,
) -> Result<Vec<Result<i64, CouponError>>, CouponError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let customer = match customer {
        Some(r) => Some(find_customer(&mut tx, org, r).await?),
        None => None,
    };
    let actor = AuditActor::from(principal);
    let mut results = Vec::with_capacity(updates.len());
    for update in updates {
        let result: Result<i64, CouponError> = async {
            let id = update.redemption_id.ok_or(CouponError::NoRedemptionId)?;
            let amount = update
                .bill_amount
                .ok_or_else(|| CouponError::invalid(format!("billAmount of redemption {id} is required")))?;
            let row = store::get_redemption(&mut tx, org, id, true)
                .await?
                .filter(|r| customer.as_ref().is_none_or(|c| c.id == r.customer_id))
                .ok_or(CouponError::InvalidRedemptionId(id))?;
            let custom = update.custom_fields.as_ref().map(|m| {
                let mut merged: Map<String, Value> =
                    serde_json::from_str(&row.custom_fields).unwrap_or_default();
                merged.extend(m.clone());
                Value::Object(merged).to_string()
            });
            store::update_redemption_bill(
                &mut tx,
                org,
                id,
                amount,
                update.transaction_number.as_deref(),
                update.bill_id.as_deref(),
                custom.as_deref(),
                now,
            )
            .await?;
            audit::record(&mut tx, org, &actor, Change {
                entity_type: "COUPON_REDEMPTION",
                entity_id: id,
                action: "UPDATE",
                before: Some(json!({"billAmount": row.bill_amount.map(|a| crate::points::model::Fixed(a).to_f64()),
                    "transactionNumber": row.transaction_number, "billId": row.bill_id})),
                after: Some(json!({"billAmount": crate::points::model::Fixed(amount).to_f64(),
                    "transactionNumber": update.transaction_number, "billId": update.bill_id})),
            })
            .await?;
            events::raise(&mut tx, org, Some(principal), NewEvent {
                event_type: "coupon.redemption_updated",
                entity_type: "COUPON",
                entity_id: row.coupon_id,
                payload: json!({"couponId": row.coupon_id, "redemptionId": id}),
            })
            .await?;
            Ok(id)
        }
        .await;
        if let Err(CouponError::Db(e)) = result {
            return Err(e.into());
        }
        results.push(result);
    }
    tx.commit().await?;
    Ok(results)
}

// ---------------------------------------------------------------- reads

/// A coupon with its series and redemptions, for reads.
#[derive(Clone, Debug)]
pub struct CouponDetails {
    pub coupon: CouponRow,
    pub series: Arc<Series>,
    pub redemptions: Vec<RedemptionRow>,
    pub state: CouponState,
}

/// The series and redemptions of coupons (in their order).
pub async fn details(
    c: &mut impl Connection,
    org: OrgId,
    coupons: Vec<CouponRow>,
    now: i64,
) -> Result<Vec<CouponDetails>, CouponError> {
    let mut series_of: HashMap<i64, Arc<Series>> = HashMap::new();
    for row in &coupons {
        if let std::collections::hash_map::Entry::Vacant(slot) = series_of.entry(row.series_id) {
            slot.insert(Arc::new(load_series(c, org, row.series_id).await?));
        }
    }
    let ids: Vec<i64> = coupons.iter().map(|c| c.id).collect();
    let redemptions = store::redemptions_of(c, org, &ids, REDEMPTIONS_SHOWN_MAX).await?;
    Ok(coupons
        .into_iter()
        .map(|coupon| {
            let series = series_of[&coupon.series_id].clone();
            let state = state_of(&coupon, &series, now);
            let redemptions =
                redemptions.iter().filter(|r| r.coupon_id == coupon.id).cloned().collect();
            CouponDetails { coupon, series, redemptions, state }
        })
        .collect())
}

// ---------------------------------------------------------------- expiry announcements

/// Raises `coupon.expired` once for each coupon that lapsed (its own expiry, or its series'
/// end), at most `batch` coupons per call; the number announced.
pub async fn announce_expired(db: &Db, now: i64, batch: i64) -> Result<usize, DbError> {
    // Look first with a read, so that an idle server does not open write transactions.
    {
        let mut conn = db.read().await?;
        let lapsed = store::lapsed_coupons(&mut conn, now, 1).await?;
        let ended = store::ended_series(&mut conn, now, 1).await?;
        if lapsed.is_empty() && ended.is_empty() {
            return Ok(0);
        }
    }
    let mut tx = db.begin_write().await?;
    let mut announced = 0;
    for row in store::lapsed_coupons(&mut tx, now, batch).await? {
        // Revoked and pool coupons are marked too (so that the next run does not meet them
        // again), but only issued, active ones are announced.
        if store::mark_expiry_raised(&mut tx, OrgId(row.org_id), row.id).await? {
            if row.status == "ACTIVE" && row.issued_at.is_some() {
                raise_expired(&mut tx, &row).await?;
            }
            announced += 1;
        }
    }
    let room = batch - announced as i64;
    if room > 0 {
        for (org, series) in store::ended_series(&mut tx, now, 10).await? {
            let org = OrgId(org);
            let rows = store::unannounced_of_series(&mut tx, org, series, room).await?;
            let exhausted = (rows.len() as i64) < room;
            for row in rows {
                if store::mark_expiry_raised(&mut tx, org, row.id).await? {
                    if row.status == "ACTIVE" && row.issued_at.is_some() {
                        raise_expired(&mut tx, &row).await?;
                    }
                    announced += 1;
                }
            }
            if exhausted {
                store::mark_series_swept(&mut tx, org, series).await?;
            } else {
                break;
            }
        }
    }
    tx.commit().await?;
    Ok(announced)
}

async fn raise_expired(tx: &mut Tx, row: &CouponRow) -> Result<(), DbError> {
    events::raise(
        tx,
        OrgId(row.org_id),
        None,
        NewEvent {
            event_type: "coupon.expired",
            entity_type: "COUPON",
            entity_id: row.id,
            payload: json!({"couponId": row.id, "seriesId": row.series_id,
            "customerId": row.customer_id, "redeemed": row.redemption_count > 0}),
        },
    )
    .await?;
    Ok(())
}

/// A series that requires a validation code (`isValidationRequired`) takes the customer's live
/// redemption code, the one `GET /v1.1/points/validationcode` sends (an OTP): 705 when it is
/// missing, wrong, expired or used up.
async fn check_validation_code(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    code: &str,
    now: i64,
) -> Result<(), CouponError> {
    use crate::points::redemption::{CodePurpose, PointsError, check_code};
    let code = code.trim();
    if code.is_empty() {
        return Err(CouponError::ValidationCodeInvalid);
    }
    match check_code(
        c,
        org,
        customer,
        crate::points::model::Fixed(0),
        code,
        CodePurpose::Redeem,
        now,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(PointsError::Db(e)) => Err(CouponError::Db(e)),
        Err(_) => Err(CouponError::ValidationCodeInvalid),
    }
}
