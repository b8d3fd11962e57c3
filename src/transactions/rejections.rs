//! Transaction rejection (the sanity queue): with `CONF_TRANSACTION_REJECTION_ENABLED`, a bill
//! that names master data the org has not registered is not processed. It is kept in
//! `rejected_transactions` as `PENDING` (re-processable once the org fixes its data) or `FAILED`
//! (never), with a `transaction.rejected` event; a re-trigger replays the stored request through
//! the add pipeline. This file holds the rules, the SQL and the state changes; the wire side is
//! `routes_rejections`.
//!
//! Checks Perks can decide today: payment modes outside `CONF_TRANSACTION_ALLOWED_PAYMENT_MODES`
//! (re-processable) and bill extended fields of `CONF_TRANSACTION_REQUIRED_EXTENDED_FIELDS` that
//! the bill lacks (re-processable only when every missing field is an enum field). There is no
//! product master yet, so unknown line items are never rejected.

use serde_json::{Map, Value, json};

use super::model::{BillInput, TransactionError};
use super::service::{AddRequest, Evaluation};
use super::time;
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::{Connection, Db, DbError};
use crate::dispatch;
use crate::error::{ApiError, Code};
use crate::events::{self, NewEvent};
use crate::fields::model::{ExtendedDataType, ExtendedEntityType};
use crate::org::model::OrgId;

/// Turns rejection on (`true`/`1`/`yes`); off by default.
pub const ENABLED_KEY: &str = "CONF_TRANSACTION_REJECTION_ENABLED";
/// Comma-separated payment modes the org accepts; unset or empty accepts every mode.
pub const ALLOWED_PAYMENT_MODES_KEY: &str = "CONF_TRANSACTION_ALLOWED_PAYMENT_MODES";
/// Comma-separated bill extended field names every bill must carry.
pub const REQUIRED_EXTENDED_FIELDS_KEY: &str = "CONF_TRANSACTION_REQUIRED_EXTENDED_FIELDS";

/// Ids per re-trigger or markFailed request.
pub const IDS_MAX: usize = 100;
/// A re-trigger that has not settled its row after this long (its instance died) gives it up,
/// and the row can be re-triggered again.
pub const RETRIGGER_LEASE_MS: i64 = 5 * 60_000;
/// Names read from one config list: a bound on work per bill.
const CONFIG_LIST_MAX: usize = 200;
/// The audit entity type of a queued bill.
const AUDIT_ENTITY: &str = "REJECTED_TRANSACTION";

/// What a rejected bill referenced that the org's master data lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionType {
    /// A line item missing from the product master (not produced yet: no product master).
    ItemNotFound,
    PaymentModeNotFound,
    /// An unknown store (not produced: bills naming an unknown store are refused by auth).
    StoreNotFound,
    TransactionExtendedFieldMissing,
    /// A missing customer extended field (not produced yet).
    CustomerExtendedFieldMissing,
}

impl RejectionType {
    pub const ALL: [RejectionType; 5] = [
        RejectionType::ItemNotFound,
        RejectionType::PaymentModeNotFound,
        RejectionType::StoreNotFound,
        RejectionType::TransactionExtendedFieldMissing,
        RejectionType::CustomerExtendedFieldMissing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectionType::ItemNotFound => "ITEM_NOT_FOUND",
            RejectionType::PaymentModeNotFound => "PAYMENT_MODE_NOT_FOUND",
            RejectionType::StoreNotFound => "STORE_NOT_FOUND",
            RejectionType::TransactionExtendedFieldMissing => "TRANSACTION_EXTENDED_FIELD_MISSING",
            RejectionType::CustomerExtendedFieldMissing => "CUSTOMER_EXTENDED_FIELD_MISSING",
        }
    }

    /// Case-insensitive.
    pub fn parse(value: &str) -> Option<RejectionType> {
        let value = value.trim();
        RejectionType::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(value))
    }
}

/// Where a queued bill stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionStatus {
    /// Waiting for the org to fix its data and re-trigger it.
    Pending,
    /// A re-trigger is replaying it right now.
    Retrying,
    /// A re-trigger added it: `result` holds the transaction id.
    Processed,
    /// Never to be processed (not re-processable, a replay failed for good, or markFailed).
    Failed,
}

impl RejectionStatus {
    pub const ALL: [RejectionStatus; 4] = [
        RejectionStatus::Pending,
        RejectionStatus::Retrying,
        RejectionStatus::Processed,
        RejectionStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectionStatus::Pending => "PENDING",
            RejectionStatus::Retrying => "RETRYING",
            RejectionStatus::Processed => "PROCESSED",
            RejectionStatus::Failed => "FAILED",
        }
    }

    /// Case-insensitive.
    pub fn parse(value: &str) -> Option<RejectionStatus> {
        let value = value.trim();
        RejectionStatus::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(value))
    }
}

/// Why a bill is rejected, and whether fixing master data can ever let it through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionType,
    pub reason: String,
    pub reprocessable: bool,
}

impl Rejection {
    /// The status a bill rejected for this reason is queued with.
    pub fn status(&self) -> RejectionStatus {
        if self.reprocessable { RejectionStatus::Pending } else { RejectionStatus::Failed }
    }

    /// The error the client of the add gets, naming the queued row.
    pub fn error(&self, id: i64) -> TransactionError {
        let (code, what) = if self.reprocessable {
            (Code::TransactionRejected, "queued for re-processing as PENDING")
        } else {
            (Code::TransactionRejectedPermanently, "stored as FAILED (not re-processable)")
        };
        TransactionError::coded(
            code,
            format!(
                "Transaction rejected ({}): {}; {what}, rejected transaction id {id}",
                self.kind.as_str(),
                self.reason
            ),
        )
    }
}

/// The org's rejection settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RejectionRules {
    pub enabled: bool,
    /// `None`: every payment mode is accepted.
    pub allowed_payment_modes: Option<Vec<String>>,
    pub required_extended_fields: Vec<String>,
}

impl RejectionRules {
    pub async fn load(c: &mut impl Connection, org: OrgId) -> Result<RejectionRules, DbError> {
        let keys = [ENABLED_KEY, ALLOWED_PAYMENT_MODES_KEY, REQUIRED_EXTENDED_FIELDS_KEY];
        let values = super::store::configs(c, org, &keys).await?;
        Ok(RejectionRules::from_configs(&values))
    }

    /// The rules from the org's config values (key, value).
    pub fn from_configs(values: &[(String, String)]) -> RejectionRules {
        let get = |key: &str| values.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let list = |key: &str| -> Vec<String> {
            get(key)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .take(CONFIG_LIST_MAX)
                .map(str::to_string)
                .collect()
        };
        let enabled = get(ENABLED_KEY).is_some_and(|v| {
            matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
        });
        let allowed = list(ALLOWED_PAYMENT_MODES_KEY);
        RejectionRules {
            enabled,
            allowed_payment_modes: if allowed.is_empty() { None } else { Some(allowed) },
            required_extended_fields: list(REQUIRED_EXTENDED_FIELDS_KEY),
        }
    }
}

/// The bill's payment modes that are not in `allowed` (case-insensitive), each once, in bill
/// order. A payment without a mode names nothing to check.
pub fn unregistered_payment_modes(payment_modes: &Value, allowed: &[String]) -> Vec<String> {
    let mut unknown: Vec<String> = Vec::new();
    for payment in payment_modes.as_array().map(Vec::as_slice).unwrap_or_default() {
        let mode = ["mode", "name"]
            .iter()
            .find_map(|k| payment.get(*k).and_then(Value::as_str))
            .map(str::trim)
            .filter(|m| !m.is_empty());
        let Some(mode) = mode else { continue };
        let known = allowed.iter().any(|a| a.eq_ignore_ascii_case(mode));
        if !known && !unknown.iter().any(|u| u.eq_ignore_ascii_case(mode)) {
            unknown.push(mode.to_string());
        }
    }
    unknown
}

/// The required fields the bill lacks: absent, `null` or blank text.
pub fn missing_fields(fields: &Map<String, Value>, required: &[String]) -> Vec<String> {
    required
        .iter()
        .filter(|name| match fields.get(name.as_str()) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(_) => false,
        })
        .cloned()
        .collect()
}

/// One rejection from several failed checks: a non-re-processable one decides the type and
/// status (the bill can never pass), and the reason names every failure.
pub fn combine(found: Vec<Rejection>) -> Option<Rejection> {
    let lead = found.iter().find(|r| !r.reprocessable).or_else(|| found.first())?;
    Some(Rejection {
        kind: lead.kind,
        reprocessable: found.iter().all(|r| r.reprocessable),
        reason: found.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>().join("; "),
    })
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}

/// Runs the org's checks over a bill; `None` when rejection is off or the bill passes. Returns
/// are never rejected: they refer to a sale that was already accepted.
pub async fn check(
    c: &mut impl Connection,
    org: OrgId,
    input: &BillInput,
) -> Result<Option<Rejection>, DbError> {
    if input.kind.is_return() {
        return Ok(None);
    }
    let rules = RejectionRules::load(c, org).await?;
    if !rules.enabled {
        return Ok(None);
    }
    let mut found = Vec::new();
    if let Some(allowed) = &rules.allowed_payment_modes {
        let unknown = unregistered_payment_modes(&input.payment_modes, allowed);
        if !unknown.is_empty() {
            found.push(Rejection {
                kind: RejectionType::PaymentModeNotFound,
                reason: format!(
                    "payment mode {} is not registered for the org ({ALLOWED_PAYMENT_MODES_KEY})",
                    quoted(&unknown)
                ),
                reprocessable: true,
            });
        }
    }
    let missing = missing_fields(&input.extended_fields, &rules.required_extended_fields);
    if !missing.is_empty() {
        // Enum fields can be fixed in master data (their allowed values); others cannot.
        let mut all_enums = true;
        for name in &missing {
            let field = crate::fields::store::find_extended_field(
                c,
                org,
                ExtendedEntityType::Transaction,
                name,
            )
            .await?;
            all_enums &= field.is_some_and(|f| f.data_type() == ExtendedDataType::StandardEnum);
        }
        found.push(Rejection {
            kind: RejectionType::TransactionExtendedFieldMissing,
            reason: format!(
                "required transaction extended field {} is missing ({REQUIRED_EXTENDED_FIELDS_KEY})",
                quoted(&missing)
            ),
            reprocessable: all_enums,
        });
    }
    Ok(combine(found))
}

/// Where a bill came from, kept so that a re-trigger can replay it.
#[derive(Clone, Debug)]
pub struct Intake<'a> {
    /// The API it came through (see `routes_rejections::API_*`).
    pub api: &'static str,
    /// The query parameters a replay needs (identifier, source, account, evaluation mode).
    pub query: Value,
    /// The request headers a replay needs.
    pub headers: Value,
    /// The bill as the client sent it.
    pub body: &'a Value,
    pub identifier_name: &'a str,
    pub identifier_value: &'a str,
}

/// With rejection enabled, checks a bill about to be added: a failing bill is queued (row,
/// event and audit in one transaction) and the returned error names it. `Ok` lets it through.
/// Imports (`SKIP-DOWNSTREAM`, no loyalty and no events) and simulations are not screened.
#[tracing::instrument(skip_all, fields(org = principal.org.0, bill = %request.input.bill_number))]
pub async fn screen(
    db: &Db,
    principal: &Principal,
    request: &AddRequest,
    intake: Intake<'_>,
    now: i64,
) -> Result<(), TransactionError> {
    if matches!(request.evaluation, Evaluation::Skip | Evaluation::Simulate) {
        return Ok(());
    }
    let mut conn = db.read().await?;
    let rejection = check(&mut conn, principal.org, &request.input).await?;
    drop(conn);
    let Some(rejection) = rejection else { return Ok(()) };
    let new = NewRejected {
        api: intake.api,
        // The original request, copied only now that it is kept.
        request_body:
            json!({"query": intake.query, "headers": intake.headers, "body": intake.body})
                .to_string(),
        bill_number: &request.input.bill_number,
        identifier_name: intake.identifier_name.trim(),
        identifier_value: intake.identifier_value.trim(),
        source: &request.source,
        store_id: principal.store.map(|s| s.0),
        till_id: principal.till.map(|t| t.0),
        rejection: &rejection,
        now,
    };
    let mut tx = db.begin_write().await?;
    let id = insert_rejected(&mut tx, principal.org, &new).await?;
    let row = get_rejected(&mut tx, principal.org, id)
        .await?
        .ok_or_else(|| TransactionError::code(Code::Internal))?;
    raise_rejected(&mut tx, principal, &row, now).await?;
    audit::record(
        &mut tx,
        principal.org,
        &AuditActor::from(principal),
        Change {
            entity_type: AUDIT_ENTITY,
            entity_id: id,
            action: "REJECT",
            before: None,
            after: Some(summary(&row)),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(rejected = id, kind = rejection.kind.as_str(), "transaction rejected");
    Err(rejection.error(id))
}

/// The `transaction.rejected` event of a row as it now stands.
async fn raise_rejected(
    c: &mut impl Connection,
    principal: &Principal,
    row: &RejectedRow,
    now: i64,
) -> Result<(), DbError> {
    let payload = json!({
        "eventName": "transaction.rejected",
        "time": time::iso_utc(now),
        "rejectedTransactionId": row.id,
        "billNumber": row.bill_number,
        "customer": {"identifierName": row.identifier_name, "identifierValue": row.identifier_value},
        "rejectionType": row.rejection_type,
        "reprocessable": row.reprocessable,
        "reason": row.reason,
        "status": row.status,
        "source": row.source,
    });
    events::raise(
        c,
        principal.org,
        Some(principal),
        NewEvent {
            event_type: "transaction.rejected",
            entity_type: AUDIT_ENTITY,
            entity_id: row.id,
            payload,
        },
    )
    .await?;
    Ok(())
}

/// The audited state of a row.
fn summary(row: &RejectedRow) -> Value {
    json!({"billNumber": row.bill_number, "rejectionType": row.rejection_type, "reason": row.reason,
        "reprocessable": row.reprocessable, "status": row.status, "result": row.result,
        "retriggerRequestId": row.retrigger_request})
}

/// The outcome of claiming a row for a re-trigger.
#[derive(Debug)]
pub enum Claim {
    /// The row, as it was before the claim.
    Claimed(Box<RejectedRow>),
    NotFound,
    /// The row is not `PENDING` (its status).
    NotPending(String),
}

/// Claims a `PENDING` row (or one whose re-trigger lease ran out) for the re-trigger
/// `request_id`: it becomes `RETRYING` so that no one else replays it meanwhile.
pub async fn claim(
    db: &Db,
    org: OrgId,
    id: i64,
    request_id: &str,
    now: i64,
) -> Result<Claim, DbError> {
    let mut tx = db.begin_write().await?;
    let Some(row) = get_rejected(&mut tx, org, id).await? else { return Ok(Claim::NotFound) };
    let claimed = dispatch!(&mut tx, |e| sqlx::query(
        "UPDATE rejected_transactions SET status = 'RETRYING', retrigger_request = $3, \
         updated_at = $4 WHERE org_id = $1 AND id = $2 \
         AND (status = 'PENDING' OR (status = 'RETRYING' AND updated_at < $5))"
    )
    .bind(org.0)
    .bind(id)
    .bind(request_id)
    .bind(now)
    .bind(now - RETRIGGER_LEASE_MS)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    tx.commit().await?;
    Ok(if claimed == 1 { Claim::Claimed(Box::new(row)) } else { Claim::NotPending(row.status) })
}

/// What replaying a queued bill did.
#[derive(Clone, Debug)]
pub enum Replay {
    /// Added as this transaction.
    Added(i64),
    /// Rejected again (the org's data still lacks something).
    Rejected(Rejection),
    /// Refused for good (for example 604, the customer is gone, or the request cannot be read).
    Failed(String),
    /// An internal or transient failure: the row stays `PENDING`.
    Transient(String),
}

impl Replay {
    /// An error of the add pipeline: server-side trouble is transient, anything else final.
    pub fn from_error(e: &ApiError) -> Replay {
        let message = format!("{} ({})", e.message, e.code.info().code);
        if matches!(e.code, Code::Internal | Code::Unavailable) {
            Replay::Transient(message)
        } else {
            Replay::Failed(message)
        }
    }
}

/// Records the outcome of a claimed row's replay (and audits it; a new rejection raises
/// `transaction.rejected` again). Answers the row as it now stands.
pub async fn settle(
    db: &Db,
    principal: &Principal,
    before: &RejectedRow,
    replay: Replay,
    now: i64,
) -> Result<RejectedRow, DbError> {
    let org = principal.org;
    let (status, kind, reason, reprocessable, result) = match &replay {
        Replay::Added(id) => (
            RejectionStatus::Processed,
            before.rejection_type.clone(),
            before.reason.clone(),
            before.reprocessable,
            Some(id.to_string()),
        ),
        Replay::Rejected(r) => {
            (r.status(), r.kind.as_str().to_string(), r.reason.clone(), r.reprocessable, None)
        }
        Replay::Failed(message) => {
            (RejectionStatus::Failed, before.rejection_type.clone(), message.clone(), false, None)
        }
        Replay::Transient(message) => (
            RejectionStatus::Pending,
            before.rejection_type.clone(),
            message.clone(),
            before.reprocessable,
            None,
        ),
    };
    let mut tx = db.begin_write().await?;
    dispatch!(&mut tx, |e| sqlx::query(
        "UPDATE rejected_transactions SET status = $3, rejection_type = $4, reason = $5, \
         reprocessable = $6, result = $7, updated_at = $8 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(before.id)
    .bind(status.as_str())
    .bind(&kind)
    .bind(&reason)
    .bind(reprocessable)
    .bind(&result)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    let row = get_rejected(&mut tx, org, before.id)
        .await?
        .ok_or(DbError::Sqlx(sqlx::Error::RowNotFound))?;
    if matches!(replay, Replay::Rejected(_)) {
        raise_rejected(&mut tx, principal, &row, now).await?;
    }
    audit::record(
        &mut tx,
        org,
        &AuditActor::from(principal),
        Change {
            entity_type: AUDIT_ENTITY,
            entity_id: before.id,
            action: "RETRIGGER",
            before: Some(summary(before)),
            after: Some(summary(&row)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// The outcome of marking one row failed.
#[derive(Debug, PartialEq, Eq)]
pub enum MarkFailed {
    Done,
    NotFound,
    /// The row is not `PENDING` (its status).
    NotPending(String),
}

/// Moves `PENDING` rows to `FAILED` (no further re-triggers), each audited; one transaction.
pub async fn mark_failed(
    db: &Db,
    principal: &Principal,
    ids: &[i64],
    now: i64,
) -> Result<Vec<(i64, MarkFailed)>, DbError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids.iter().take(IDS_MAX) {
        let Some(before) = get_rejected(&mut tx, org, id).await? else {
            out.push((id, MarkFailed::NotFound));
            continue;
        };
        let changed = dispatch!(&mut tx, |e| sqlx::query(
            "UPDATE rejected_transactions SET status = 'FAILED', updated_at = $3 \
             WHERE org_id = $1 AND id = $2 AND status = 'PENDING'"
        )
        .bind(org.0)
        .bind(id)
        .bind(now)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
        if changed != 1 {
            out.push((id, MarkFailed::NotPending(before.status)));
            continue;
        }
        let mut after = summary(&before);
        after["status"] = json!(RejectionStatus::Failed.as_str());
        audit::record(
            &mut tx,
            org,
            &AuditActor::from(principal),
            Change {
                entity_type: AUDIT_ENTITY,
                entity_id: id,
                action: "MARK_FAILED",
                before: Some(summary(&before)),
                after: Some(after),
            },
        )
        .await?;
        out.push((id, MarkFailed::Done));
    }
    tx.commit().await?;
    Ok(out)
}

// ---------------------------------------------------------------- SQL

/// A stored rejected bill.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RejectedRow {
    pub id: i64,
    pub api: String,
    pub request_body: String,
    pub bill_number: String,
    pub identifier_name: String,
    pub identifier_value: String,
    pub source: String,
    pub store_id: Option<i64>,
    pub till_id: Option<i64>,
    pub rejection_type: String,
    pub reason: String,
    pub reprocessable: bool,
    pub status: String,
    pub retrigger_request: Option<String>,
    pub result: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, api, request_body, bill_number, identifier_name, identifier_value, \
    source, store_id, till_id, rejection_type, reason, reprocessable, status, retrigger_request, \
    result, created_at, updated_at";

/// A rejected bill about to be stored.
#[derive(Clone, Debug)]
pub struct NewRejected<'a> {
    pub api: &'a str,
    pub request_body: String,
    pub bill_number: &'a str,
    pub identifier_name: &'a str,
    pub identifier_value: &'a str,
    pub source: &'a str,
    pub store_id: Option<i64>,
    pub till_id: Option<i64>,
    pub rejection: &'a Rejection,
    pub now: i64,
}

pub async fn insert_rejected(
    c: &mut impl Connection,
    org: OrgId,
    r: &NewRejected<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO rejected_transactions (org_id, api, request_body, bill_number, \
         identifier_name, identifier_value, source, store_id, till_id, rejection_type, reason, \
         reprocessable, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) RETURNING id"
    )
    .bind(org.0)
    .bind(r.api)
    .bind(&r.request_body)
    .bind(r.bill_number)
    .bind(r.identifier_name)
    .bind(r.identifier_value)
    .bind(r.source)
    .bind(r.store_id)
    .bind(r.till_id)
    .bind(r.rejection.kind.as_str())
    .bind(&r.rejection.reason)
    .bind(r.rejection.reprocessable)
    .bind(r.rejection.status().as_str())
    .bind(r.now)
    .fetch_one(e)
    .await)?)
}

pub async fn get_rejected(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<RejectedRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM rejected_transactions WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, RejectedRow>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// Filters of the rejected-bill list; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct RejectedFilter {
    pub rejection_type: Option<RejectionType>,
    pub status: Option<RejectionStatus>,
    /// Compared case-insensitively.
    pub identifier_name: Option<String>,
    pub identifier_value: Option<String>,
    /// Upper case.
    pub source: Option<String>,
}

/// A page of the org's rejected bills, newest first, and how many match in all.
pub async fn list_rejected(
    c: &mut impl Connection,
    org: OrgId,
    filter: &RejectedFilter,
    offset: i64,
    limit: i64,
) -> Result<(Vec<RejectedRow>, i64), DbError> {
    let conditions = "org_id = $1 AND (CAST($2 AS TEXT) IS NULL OR rejection_type = $2) \
        AND (CAST($3 AS TEXT) IS NULL OR status = $3) \
        AND (CAST($4 AS TEXT) IS NULL OR LOWER(identifier_name) = LOWER($4)) \
        AND (CAST($5 AS TEXT) IS NULL OR identifier_value = $5) \
        AND (CAST($6 AS TEXT) IS NULL OR source = $6)";
    let kind = filter.rejection_type.map(RejectionType::as_str);
    let status = filter.status.map(RejectionStatus::as_str);
    let page_sql = format!(
        "SELECT {COLUMNS} FROM rejected_transactions WHERE {conditions} \
         ORDER BY id DESC LIMIT $7 OFFSET $8"
    );
    let rows = dispatch!(c, |e| sqlx::query_as::<_, RejectedRow>(&page_sql)
        .bind(org.0)
        .bind(kind)
        .bind(status)
        .bind(&filter.identifier_name)
        .bind(&filter.identifier_value)
        .bind(&filter.source)
        .bind(limit)
        .bind(offset)
        .fetch_all(e)
        .await)?;
    let count_sql = format!("SELECT COUNT(*) FROM rejected_transactions WHERE {conditions}");
    let total: i64 = dispatch!(c, |e| sqlx::query_scalar(&count_sql)
        .bind(org.0)
        .bind(kind)
        .bind(status)
        .bind(&filter.identifier_name)
        .bind(&filter.identifier_value)
        .bind(&filter.source)
        .fetch_one(e)
        .await)?;
    Ok((rows, total))
}

/// The rows a re-trigger request claimed (each row reports under its latest re-trigger).
pub async fn of_retrigger(
    c: &mut impl Connection,
    org: OrgId,
    request_id: &str,
) -> Result<Vec<RejectedRow>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rejected_transactions WHERE org_id = $1 AND retrigger_request = $2 \
         ORDER BY id LIMIT $3"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, RejectedRow>(&sql)
        .bind(org.0)
        .bind(request_id)
        .bind(IDS_MAX as i64)
        .fetch_all(e)
        .await)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn rules_are_off_by_default_and_lists_are_trimmed() {
        assert_eq!(RejectionRules::from_configs(&[]), RejectionRules::default());
        let rules = RejectionRules::from_configs(&configs(&[
            (ENABLED_KEY, "TRUE"),
            (ALLOWED_PAYMENT_MODES_KEY, " Cash, CardPayment ,,"),
            (REQUIRED_EXTENDED_FIELDS_KEY, ""),
        ]));
        assert!(rules.enabled);
        assert_eq!(rules.allowed_payment_modes, Some(vec!["Cash".into(), "CardPayment".into()]));
        assert!(rules.required_extended_fields.is_empty());
        let blank = RejectionRules::from_configs(&configs(&[(ALLOWED_PAYMENT_MODES_KEY, " , ")]));
        assert_eq!(blank.allowed_payment_modes, None);
    }

    #[test]
    fn payment_modes_are_compared_case_insensitively_and_reported_once() {
        let allowed = vec!["Cash".to_string(), "CardPayment".to_string()];
        let modes = json!([{"mode": "cash"}, {"mode": "Bitcoin"}, {"mode": "BITCOIN"},
            {"value": 10}, {"name": "Voucher"}]);
        assert_eq!(unregistered_payment_modes(&modes, &allowed), vec!["Bitcoin", "Voucher"]);
        assert!(unregistered_payment_modes(&json!([]), &allowed).is_empty());
    }

    #[test]
    fn blank_and_null_fields_count_as_missing() {
        let fields = json!({"a": "x", "b": "  ", "c": null, "d": 0}).as_object().cloned().unwrap();
        let required: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(missing_fields(&fields, &required), vec!["b", "c", "e"]);
    }

    #[test]
    fn a_permanent_failure_wins_when_combined() {
        let pending = Rejection {
            kind: RejectionType::PaymentModeNotFound,
            reason: "mode".into(),
            reprocessable: true,
        };
        let failed = Rejection {
            kind: RejectionType::TransactionExtendedFieldMissing,
            reason: "field".into(),
            reprocessable: false,
        };
        assert_eq!(combine(Vec::new()), None);
        assert_eq!(combine(vec![pending.clone()]), Some(pending.clone()));
        let both = combine(vec![pending, failed]).unwrap();
        assert_eq!(both.kind, RejectionType::TransactionExtendedFieldMissing);
        assert!(!both.reprocessable);
        assert_eq!(both.status(), RejectionStatus::Failed);
        assert_eq!(both.reason, "mode; field");
    }

    #[test]
    fn names_parse_in_any_case() {
        assert_eq!(
            RejectionType::parse("payment_mode_not_found"),
            Some(RejectionType::PaymentModeNotFound)
        );
        assert_eq!(RejectionStatus::parse("pending"), Some(RejectionStatus::Pending));
        assert_eq!(RejectionStatus::parse("done"), None);
    }
}
