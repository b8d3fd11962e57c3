//! Points transfers between two customers of one org: the org's switch, the checks (same
//! customer, fraud, transferable points), an optional validation code, and the atomic move of
//! lots through the ledger with both accounts locked.

use super::ledger::{self, EntryMeta, LedgerError, Scope};
use super::model::Fixed;
use super::redemption::{self, CodePurpose, PointsError};
use super::store;
use super::store_ops::{self, NewTransfer, TransferRow};
use crate::auth::Principal;
use crate::customers::model::CustomerId;
use crate::db::{Connection, Db, DbError};
use crate::error::{ApiError, Code};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;
use crate::programs::engine::CompiledProgram;

/// Org config that allows transfers (off unless set to true).
pub const TRANSFER_CONFIG: &str = "ALLOW_POINTS_TRANSFER";

/// Why a transfer (or its check) was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("points transfer is not enabled for the org (set ALLOW_POINTS_TRANSFER to true)")]
    NotAllowed,
    #[error("from and to customers are the same")]
    SameCustomer,
    #[error("the sending customer is marked as fraud")]
    SenderFraud,
    #[error("the receiving customer is marked as fraud")]
    ReceiverFraud,
    #[error("{requested} points asked, {available} transferable")]
    NotEnough { requested: Fixed, available: Fixed },
    #[error("customer not found")]
    CustomerNotFound,
    #[error(transparent)]
    Points(#[from] PointsError),
}

impl From<DbError> for TransferError {
    fn from(e: DbError) -> Self {
        TransferError::Points(PointsError::Db(e))
    }
}

impl From<TransferError> for ApiError {
    fn from(e: TransferError) -> Self {
        let code = match &e {
            TransferError::NotAllowed => Code::PointsTransferNotAllowed,
            TransferError::SameCustomer => Code::TransferSameCustomer,
            TransferError::SenderFraud => Code::CustomerMarkedFraud,
            TransferError::ReceiverFraud => Code::TransferReceiverFraud,
            TransferError::NotEnough { .. } => Code::PointsMoreThanAvailable,
            TransferError::CustomerNotFound => Code::CustomerNotFound,
            TransferError::Points(_) => {
                let TransferError::Points(p) = e else { return ApiError::new(Code::Internal) };
                return ApiError::from(p);
            }
        };
        ApiError::with_message(code, e.to_string())
    }
}

/// A transfer to check or make.
#[derive(Clone, Copy, Debug)]
pub struct TransferRequest<'a> {
    pub from: i64,
    pub to: i64,
    pub program: &'a CompiledProgram,
    pub points: Fixed,
    /// The sender's validation code, when one was issued.
    pub code: Option<&'a str>,
    pub notes: &'a str,
    pub till: Option<i64>,
}

/// Whether the org allows transfers.
pub async fn allowed(c: &mut impl Connection, org: OrgId) -> Result<bool, DbError> {
    let values = crate::transactions::store::configs(c, org, &[TRANSFER_CONFIG]).await?;
    Ok(values
        .iter()
        .any(|(_, v)| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")))
}

/// Fraud statuses that block a transfer (as they block a redemption).
fn is_fraud(status: Option<&str>) -> bool {
    status.is_some_and(|s| {
        matches!(s.trim().to_ascii_uppercase().as_str(), "MARKED" | "CONFIRMED" | "RECONFIRMED")
    })
}

/// The checks that need no balance: the switch, two different customers of the org, no fraud.
async fn check_parties(
    c: &mut impl Connection,
    org: OrgId,
    r: &TransferRequest<'_>,
) -> Result<(), TransferError> {
    if !allowed(c, org).await? {
        return Err(TransferError::NotAllowed);
    }
    if r.from == r.to {
        return Err(TransferError::SameCustomer);
    }
    let from = crate::customers::store::get_customer(c, org, CustomerId(r.from))
        .await?
        .ok_or(TransferError::CustomerNotFound)?;
    let to = crate::customers::store::get_customer(c, org, CustomerId(r.to))
        .await?
        .ok_or(TransferError::CustomerNotFound)?;
    if is_fraud(from.fraud_status.as_deref()) {
        return Err(TransferError::SenderFraud);
    }
    if is_fraud(to.fraud_status.as_deref()) {
        return Err(TransferError::ReceiverFraud);
    }
    if !r.points.is_positive() {
        return Err(PointsError::InvalidPoints.into());
    }
    Ok(())
}

/// Checks a transfer without making it; returns the sender's transferable points (registration
/// awards excluded, never more than the balance).
pub async fn check(
    db: &Db,
    org: OrgId,
    r: &TransferRequest<'_>,
    now: i64,
) -> Result<Fixed, TransferError> {
    let mut conn = db.read().await?;
    check_parties(&mut conn, org, r).await?;
    let lots = store_ops::spendable_sum_without(
        &mut conn,
        org,
        r.from,
        r.program.id.0,
        now,
        ledger::REGISTRATION_SOURCE,
    )
    .await?;
    let balance = store::accounts_of_customer(&mut conn, org, r.from)
        .await?
        .iter()
        .find(|a| a.program_id == r.program.id.0)
        .map(|a| a.current_points)
        .unwrap_or(0);
    let available = Fixed(lots.min(balance).max(0));
    if available.0 < r.points.0 {
        return Err(TransferError::NotEnough { requested: r.points, available });
    }
    Ok(available)
}

/// Sends the sender a validation code for this transfer (after [`check`] passed).
pub async fn issue_code(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    r: &TransferRequest<'_>,
    now: i64,
) -> Result<redemption::IssuedCode, TransferError> {
    Ok(redemption::issue_code_for(db, principal, org, r.from, r.points, CodePurpose::Transfer, now)
        .await?)
}

/// A transfer made.
#[derive(Clone, Debug)]
pub struct Made {
    pub transfer: TransferRow,
    /// The sender's balance after it.
    pub balance: Fixed,
}

/// Moves the points: the sender's lots (soonest-expiring first, registration awards left out)
/// go to new lots of the receiver that keep their expiry, in one write transaction with both
/// accounts locked; audited, and `points.transferred` raised. A code is required only when the
/// sender has a live transfer code; a wrong one counts as a try.
#[tracing::instrument(skip_all, fields(org = org.0, from = r.from, to = r.to))]
pub async fn transfer(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    r: &TransferRequest<'_>,
    now: i64,
) -> Result<Made, TransferError> {
    let mut tx = db.begin_write().await?;
    match transfer_in(&mut tx, principal, org, r, now).await {
        Ok(made) => {
            tx.commit().await?;
            Ok(made)
        }
        Err(TransferError::Points(PointsError::CodeInvalid(Some(code)))) => {
            drop(tx); // rolls back
            let mut tx = db.begin_write().await?;
            store::add_code_attempt(&mut tx, org, code).await?;
            tx.commit().await?;
            Err(PointsError::CodeInvalid(Some(code)).into())
        }
        Err(e) => Err(e),
    }
}

async fn transfer_in(
    tx: &mut crate::db::Tx,
    principal: Option<&Principal>,
    org: OrgId,
    r: &TransferRequest<'_>,
    now: i64,
) -> Result<Made, TransferError> {
    check_parties(tx, org, r).await?;
    let live = store::latest_validation_code(tx, org, r.from, CodePurpose::Transfer.as_str())
        .await?
        .filter(|c| c.expires_at > now && c.attempts < redemption::CODE_ATTEMPTS_MAX);
    match (live, r.code) {
        (Some(_), Some(code)) => {
            let id =
                redemption::check_code(tx, org, r.from, r.points, code, CodePurpose::Transfer, now)
                    .await?;
            if !store::use_code(tx, org, id, now).await? {
                return Err(PointsError::CodeExpired.into());
            }
        }
        (Some(_), None) => return Err(PointsError::CodeRequired.into()),
        (None, Some(code)) => {
            // A code given for a transfer that has none live: checked anyway, so that a stale
            // or used code is reported rather than ignored.
            redemption::check_code(tx, org, r.from, r.points, code, CodePurpose::Transfer, now)
                .await?;
        }
        (None, None) => {}
    }
    let program = r.program.id.0;
    let from = Scope { org, customer: r.from, program, till: r.till, now };
    let to = Scope { org, customer: r.to, program, till: r.till, now };
    let reference = format!("transfer:{}>{}", r.from, r.to);
    let meta = EntryMeta { reference: &reference, note: r.notes, ..EntryMeta::default() };
    let moved = ledger::transfer(tx, from, to, r.points, meta).await.map_err(|e| match e {
        LedgerError::Insufficient { available } => {
            TransferError::NotEnough { requested: r.points, available }
        }
        LedgerError::NotPositive => PointsError::InvalidPoints.into(),
        LedgerError::Db(db) => db.into(),
    })?;
    let id = store_ops::insert_transfer(
        tx,
        org,
        &NewTransfer {
            program_id: program,
            from_customer_id: r.from,
            to_customer_id: r.to,
            points: r.points.0,
            out_entry_id: moved.out_entry,
            in_entry_id: moved.in_entry,
            notes: r.notes,
            till_id: r.till,
            created_at: now,
        },
    )
    .await?;
    let payload = serde_json::json!({"transferId": id, "programId": program,
        "fromCustomerId": r.from, "toCustomerId": r.to, "points": r.points.to_f64()});
    let actor = principal
        .map(crate::audit::AuditActor::from)
        .unwrap_or_else(crate::audit::AuditActor::system);
    crate::audit::record(
        tx,
        org,
        &actor,
        crate::audit::Change {
            entity_type: "POINTS_TRANSFER",
            entity_id: id,
            action: "CREATE",
            before: None,
            after: Some(payload.clone()),
        },
    )
    .await?;
    for customer in [r.from, r.to] {
        events::raise(
            tx,
            org,
            principal,
            NewEvent {
                event_type: "points.transferred",
                entity_type: "CUSTOMER",
                entity_id: customer,
                payload: payload.clone(),
            },
        )
        .await?;
    }
    let transfer = store_ops::get_transfer(tx, org, id)
        .await?
        .ok_or(TransferError::Points(PointsError::Db(DbError::Sqlx(sqlx::Error::RowNotFound))))?;
    let balance =
        store::lock_account(tx, org, r.from, program).await?.map(|a| a.current_points).unwrap_or(0);
    Ok(Made { transfer, balance: Fixed(balance) })
}
