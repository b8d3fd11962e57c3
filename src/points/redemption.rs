//! Redeeming points: the program's redemption rules, validation codes (issued, re-sent, checked
//! with a bounded number of tries), the redemption itself through the ledger, and its reversal.
//!
//! Every check and write of one redemption runs in one write transaction with the customer's
//! account locked, so that concurrent redemptions can never take more than the balance.

use rand::Rng;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::ledger::{self, EntryMeta, LedgerError, Scope};
use super::model::{EntryKind, Fixed};
use super::store::{self, AccountRow, NewRedemption, RedemptionRow};
use crate::auth::Principal;
use crate::db::{Connection, Db, DbError};
use crate::error::{ApiError, Code};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;
use crate::programs::engine::CompiledProgram;
use crate::programs::model::{ProgramError, RedemptionDoc, ValidationCodeMode};

/// Wrong tries after which a validation code is dead.
pub const CODE_ATTEMPTS_MAX: i32 = 5;
/// Org config: minutes a validation code stays valid.
pub const CODE_VALIDITY_CONFIG: &str = "CONF_POINTS_VALIDATION_CODE_VALIDITY_MINUTES";
/// Org config: how codes are sent (`SMS`, `EMAIL` or `BOTH`).
pub const CODE_CHANNEL_CONFIG: &str = "CONF_POINTS_VALIDATION_CODE_CHANNEL";
pub const CODE_VALIDITY_MINUTES_DEFAULT: i64 = 15;
/// Longest validity an org may configure (a day).
const CODE_VALIDITY_MINUTES_MAX: i64 = 24 * 60;
const CODE_DIGITS: u32 = 6;

/// What a validation code may be used for: a code sent to redeem cannot move points to someone
/// else, and the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePurpose {
    Redeem,
    Transfer,
}

impl CodePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CodePurpose::Redeem => "REDEEM",
            CodePurpose::Transfer => "TRANSFER",
        }
    }

    fn message(self) -> (&'static str, &'static str) {
        match self {
            CodePurpose::Redeem => (
                "Your points redemption code",
                "Your validation code to redeem points is {code}. Do not share it.",
            ),
            CodePurpose::Transfer => (
                "Your points transfer code",
                "Your validation code to transfer points is {code}. Do not share it.",
            ),
        }
    }
}

/// Why a redemption (or its check, code or reversal) was refused.
#[derive(Debug, thiserror::Error)]
pub enum PointsError {
    #[error("points must be a positive whole number")]
    InvalidPoints,
    #[error("{requested} points asked, {available} available")]
    MoreThanAvailable { requested: Fixed, available: Fixed },
    #[error("{requested} points asked, {current} current points (the rest is promised)")]
    InsufficientCurrent { requested: Fixed, current: Fixed },
    #[error("points must be a multiple of {0}")]
    NotMultiple(Decimal),
    #[error("points must be at most {0} per transaction")]
    AboveMaximum(Decimal),
    #[error("points must be at least {0}")]
    BelowMinimum(Decimal),
    #[error("customer is marked as fraud")]
    Fraud,
    #[error("validation code is required: ask for one and send it")]
    CodeRequired,
    /// A wrong code (its id, so that the try is counted after the rollback).
    #[error("validation code is wrong")]
    CodeInvalid(Option<i64>),
    #[error("validation code has expired or is used up; ask for a new one")]
    CodeExpired,
    #[error("redemption not found")]
    RedemptionNotFound,
    #[error("redemption already reversed")]
    AlreadyReversed,
    #[error("{available} lifetime points, at least {required} needed to redeem")]
    InsufficientLifetimePoints { required: Decimal, available: Fixed },
    #[error("{available} lifetime purchases, at least {required} needed to redeem")]
    InsufficientLifetimePurchases { required: Decimal, available: Fixed },
    #[error("only {left} points of this redemption are left to reverse")]
    MoreThanLeftToReverse { left: Fixed },
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<LedgerError> for PointsError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Insufficient { available } => {
                PointsError::MoreThanAvailable { requested: Fixed::ZERO, available }
            }
            LedgerError::NotPositive => PointsError::InvalidPoints,
            LedgerError::Db(db) => PointsError::Db(db),
        }
    }
}

impl From<PointsError> for ApiError {
    fn from(e: PointsError) -> Self {
        let code = match &e {
            PointsError::InvalidPoints => Code::InvalidPoints,
            PointsError::MoreThanAvailable { .. } => Code::PointsMoreThanAvailable,
            PointsError::InsufficientCurrent { .. } => Code::InsufficientCurrentPoints,
            PointsError::NotMultiple(_) => Code::PointsNotInMultiples,
            PointsError::AboveMaximum(_) => Code::PointsAboveMaximum,
            PointsError::BelowMinimum(_) => Code::PointsBelowMinimum,
            PointsError::Fraud => Code::CustomerMarkedFraud,
            // Capillary has one code (808) for every validation-code failure; the message says
            // which one it was.
            PointsError::CodeRequired | PointsError::CodeInvalid(_) | PointsError::CodeExpired => {
                Code::InvalidValidationCode
            }
            PointsError::RedemptionNotFound => Code::RedemptionNotFound,
            PointsError::AlreadyReversed => Code::RedemptionAlreadyReversed,
            PointsError::InsufficientLifetimePoints { .. } => Code::InsufficientLifetimePoints,
            PointsError::InsufficientLifetimePurchases { .. } => {
                Code::InsufficientLifetimePurchases
            }
            PointsError::MoreThanLeftToReverse { .. } => Code::ReversalPointsMismatch,
            PointsError::Program(ProgramError::NotFound) => Code::InvalidProgramId,
            PointsError::Program(_) => return ApiError::from(into_program(e)),
            PointsError::Db(_) => return ApiError::from(into_db(e)),
        };
        ApiError::with_message(code, e.to_string())
    }
}

fn into_program(e: PointsError) -> ProgramError {
    match e {
        PointsError::Program(p) => p,
        _ => ProgramError::NotFound,
    }
}

fn into_db(e: PointsError) -> DbError {
    match e {
        PointsError::Db(d) => d,
        _ => DbError::Sqlx(sqlx::Error::RowNotFound),
    }
}

/// Points as asked on the wire: positive and whole (801 otherwise).
pub fn parse_points(value: Decimal) -> Result<Fixed, PointsError> {
    if value <= Decimal::ZERO || !value.fract().is_zero() {
        return Err(PointsError::InvalidPoints);
    }
    Fixed::from_decimal(value).ok_or(PointsError::InvalidPoints)
}

/// The program's limits: minimum (821), multiples (807), maximum per bill (819).
pub fn check_rules(rules: &RedemptionDoc, points: Fixed) -> Result<(), PointsError> {
    let asked = points.to_decimal();
    if asked < rules.min_points {
        return Err(PointsError::BelowMinimum(rules.min_points.normalize()));
    }
    if let Some(multiple) = rules.multiple_of.filter(|m| *m > Decimal::ZERO)
        && !(asked % multiple).is_zero()
    {
        return Err(PointsError::NotMultiple(multiple.normalize()));
    }
    if let Some(max) = rules.max_per_bill
        && asked > max
    {
        return Err(PointsError::AboveMaximum(max.normalize()));
    }
    Ok(())
}

/// The program's lifetime thresholds: lifetime points (805) and lifetime purchases (806).
fn check_lifetime(rules: &RedemptionDoc, account: Option<&AccountRow>) -> Result<(), PointsError> {
    if let Some(required) = rules.min_lifetime_points {
        let available = Fixed(account.map(|a| a.lifetime_points).unwrap_or(0));
        if available.to_decimal() < required {
            return Err(PointsError::InsufficientLifetimePoints {
                required: required.normalize(),
                available,
            });
        }
    }
    if let Some(required) = rules.min_lifetime_purchases {
        let available = Fixed(account.map(|a| a.lifetime_purchases).unwrap_or(0));
        if available.to_decimal() < required {
            return Err(PointsError::InsufficientLifetimePurchases {
                required: required.normalize(),
                available,
            });
        }
    }
    Ok(())
}

/// 803 when the balance (current and promised) cannot cover it, 804 when only promised points
/// would.
fn check_balance(account: Option<&AccountRow>, points: Fixed) -> Result<(), PointsError> {
    let current = account.map(|a| a.current_points.max(0)).unwrap_or(0);
    let promised = account.map(|a| a.promised_points.max(0)).unwrap_or(0);
    if points.0 > current + promised {
        return Err(PointsError::MoreThanAvailable {
            requested: points,
            available: Fixed(current),
        });
    }
    if points.0 > current {
        return Err(PointsError::InsufficientCurrent {
            requested: points,
            current: Fixed(current),
        });
    }
    Ok(())
}

/// Fraud statuses that block redemption (Capillary's `MARKED`, `CONFIRMED`, `RECONFIRMED`).
fn is_fraud(status: Option<&str>) -> bool {
    status.is_some_and(|s| {
        matches!(s.trim().to_ascii_uppercase().as_str(), "MARKED" | "CONFIRMED" | "RECONFIRMED")
    })
}

/// The hash a code is stored as: hex SHA-256 of `salt:code`.
pub fn hash_code(salt: &str, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{salt}:{}", code.trim()).as_bytes()))
}

/// How a redemption's validation code was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// A code was checked (and, when committing, used up).
    Code(i64),
    Skipped,
    NotRequired,
}

impl Validation {
    fn as_str(self) -> &'static str {
        match self {
            Validation::Code(_) => "CODE",
            Validation::Skipped => "SKIPPED",
            Validation::NotRequired => "NOT_REQUIRED",
        }
    }
}

/// One redemption to check or make.
#[derive(Clone, Copy, Debug)]
pub struct Redeem<'a> {
    pub customer: i64,
    pub program: &'a CompiledProgram,
    pub points: Fixed,
    pub validation_code: Option<&'a str>,
    pub skip_validation: bool,
    /// Only check a code when one is given (isredeemable), instead of requiring one.
    pub code_if_given: bool,
    pub bill_number: &'a str,
    pub external_reference: &'a str,
    pub notes: &'a str,
    pub till: Option<i64>,
    /// False: check everything and write nothing.
    pub commit: bool,
}

/// What a redemption (or its check) came to.
#[derive(Clone, Debug)]
pub struct Redeemed {
    /// None when only checked.
    pub redemption_id: Option<i64>,
    pub points: Fixed,
    /// Current points after the redemption (before it, when only checked).
    pub balance: Fixed,
    /// Currency value of one point, and of the points asked.
    pub point_value: Decimal,
    pub value: Decimal,
}

/// Checks a redemption against the program's rules, the customer and the balance, and, when
/// `commit`, spends the points (soonest-expiring lots first) and stores the redemption — all in
/// one write transaction with the account locked. A wrong code counts as a try (and nothing
/// else is written).
#[tracing::instrument(skip_all, fields(org = org.0, customer = r.customer))]
pub async fn redeem(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    r: &Redeem<'_>,
    now: i64,
) -> Result<Redeemed, PointsError> {
    let rules = &r.program.doc.redemption;
    check_rules(rules, r.points)?;
    let mut tx = db.begin_write().await?;
    let result = redeem_in(&mut tx, principal, org, r, now).await;
    match result {
        Ok(done) if r.commit => {
            tx.commit().await?;
            Ok(done)
        }
        Ok(done) => {
            drop(tx); // rolls back
            Ok(done)
        }
        Err(PointsError::CodeInvalid(Some(code))) => {
            drop(tx); // rolls back
            let mut tx = db.begin_write().await?;
            store::add_code_attempt(&mut tx, org, code).await?;
            tx.commit().await?;
            Err(PointsError::CodeInvalid(Some(code)))
        }
        Err(e) => {
            drop(tx); // rolls back
            Err(e)
        }
    }
}

async fn redeem_in(
    tx: &mut crate::db::Tx,
    principal: Option<&Principal>,
    org: OrgId,
    r: &Redeem<'_>,
    now: i64,
) -> Result<Redeemed, PointsError> {
    let rules = &r.program.doc.redemption;
    let customer = crate::customers::store::get_customer(
        tx,
        org,
        crate::customers::model::CustomerId(r.customer),
    )
    .await?
    .ok_or(PointsError::MoreThanAvailable { requested: r.points, available: Fixed::ZERO })?;
    if is_fraud(customer.fraud_status.as_deref()) {
        return Err(PointsError::Fraud);
    }
    let scope = Scope { org, customer: r.customer, program: r.program.id.0, till: r.till, now };
    // Lock first, then let lapsed lots expire, so that the balance checked is today's.
    let locked = store::lock_account(tx, org, r.customer, scope.program).await?;
    if locked.is_some() {
        ledger::expire_customer(tx, scope).await?;
    }
    let account = store::lock_account(tx, org, r.customer, scope.program).await?;
    check_lifetime(rules, account.as_ref())?;
    check_balance(account.as_ref(), r.points)?;
    let validation = match (rules.validation_code, r.validation_code) {
        (ValidationCodeMode::Never, _) => Validation::NotRequired,
        (ValidationCodeMode::Optional, _) if r.skip_validation => Validation::Skipped,
        (_, Some(code)) => Validation::Code(
            check_code(tx, org, r.customer, r.points, code, CodePurpose::Redeem, now).await?,
        ),
        (_, None) if r.code_if_given => Validation::NotRequired,
        (_, None) => return Err(PointsError::CodeRequired),
    };
    let current = Fixed(account.as_ref().map(|a| a.current_points).unwrap_or(0));
    // Checked: `pointValue` comes from the program document and may be large.
    let value = r.points.to_decimal().checked_mul(rules.point_value).unwrap_or(Decimal::MAX);
    if !r.commit {
        return Ok(Redeemed {
            redemption_id: None,
            points: r.points,
            balance: current,
            point_value: rules.point_value,
            value,
        });
    }
    if let Validation::Code(code) = validation
        && !store::use_code(tx, org, code, now).await?
    {
        return Err(PointsError::CodeExpired);
    }
    let meta = EntryMeta { reference: r.bill_number, note: r.notes, ..EntryMeta::default() };
    let entry = ledger::spend(tx, scope, EntryKind::Redeem, r.points, meta).await.map_err(|e| {
        match PointsError::from(e) {
            PointsError::MoreThanAvailable { available, .. } => {
                PointsError::MoreThanAvailable { requested: r.points, available }
            }
            other => other,
        }
    })?;
    let id = store::insert_redemption(
        tx,
        org,
        &NewRedemption {
            customer_id: r.customer,
            program_id: scope.program,
            points: r.points.0,
            bill_number: r.bill_number,
            external_reference: r.external_reference,
            notes: r.notes,
            till_id: r.till,
            validation: validation.as_str(),
            validation_code_id: match validation {
                Validation::Code(id) => Some(id),
                _ => None,
            },
            entry_id: entry,
            created_at: now,
        },
    )
    .await?;
    crate::audit::record(
        tx,
        org,
        &actor_of(principal),
        crate::audit::Change {
            entity_type: "POINTS_REDEMPTION",
            entity_id: id,
            action: "CREATE",
            before: None,
            after: Some(serde_json::json!({"customerId": r.customer, "programId": scope.program,
                "points": r.points.to_f64(), "billNumber": r.bill_number,
                "validation": validation.as_str()})),
        },
    )
    .await?;
    events::raise(
        tx,
        org,
        principal,
        NewEvent {
            event_type: "points.redeemed",
            entity_type: "CUSTOMER",
            entity_id: r.customer,
            payload: serde_json::json!({"redemptionId": id, "programId": scope.program,
                "points": r.points.to_f64(), "billNumber": r.bill_number}),
        },
    )
    .await?;
    Ok(Redeemed {
        redemption_id: Some(id),
        points: r.points,
        balance: current - r.points,
        point_value: rules.point_value,
        value,
    })
}

/// Checks `code` against the customer's live code for `purpose`; its id. The code covers up to
/// the points it was issued for.
pub async fn check_code(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    points: Fixed,
    code: &str,
    purpose: CodePurpose,
    now: i64,
) -> Result<i64, PointsError> {
    let row = store::latest_validation_code(c, org, customer, purpose.as_str())
        .await?
        .ok_or(PointsError::CodeInvalid(None))?;
    if row.expires_at <= now || row.attempts >= CODE_ATTEMPTS_MAX {
        return Err(PointsError::CodeExpired);
    }
    if hash_code(&row.salt, code) != row.code_hash {
        return Err(PointsError::CodeInvalid(Some(row.id)));
    }
    if points.0 > row.points {
        return Err(PointsError::CodeInvalid(None));
    }
    Ok(row.id)
}

/// A validation code handed to delivery.
#[derive(Clone, Debug)]
pub struct IssuedCode {
    pub id: i64,
    pub expires_at: i64,
    /// True when the live code was sent again instead of a new one.
    pub resent: bool,
    pub channel: String,
}

/// Issues a validation code for (customer, points), or re-sends the live one asked for the same
/// points within its window (the window and the tries left are not reset).
#[tracing::instrument(skip_all, fields(org = org.0, customer))]
pub async fn issue_code(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    customer: i64,
    points: Fixed,
    now: i64,
) -> Result<IssuedCode, PointsError> {
    issue_code_for(db, principal, org, customer, points, CodePurpose::Redeem, now).await
}

/// [`issue_code`] for a purpose (a transfer's code is a separate code from a redemption's).
#[tracing::instrument(skip_all, fields(org = org.0, customer))]
pub async fn issue_code_for(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    customer: i64,
    points: Fixed,
    purpose: CodePurpose,
    now: i64,
) -> Result<IssuedCode, PointsError> {
    let mut tx = db.begin_write().await?;
    let configs = crate::transactions::store::configs(
        &mut tx,
        org,
        &[CODE_VALIDITY_CONFIG, CODE_CHANNEL_CONFIG],
    )
    .await?;
    let config = |key: &str| configs.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim());
    let minutes = config(CODE_VALIDITY_CONFIG)
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|m| *m > 0)
        .unwrap_or(CODE_VALIDITY_MINUTES_DEFAULT)
        .min(CODE_VALIDITY_MINUTES_MAX);
    let channel = config(CODE_CHANNEL_CONFIG)
        .map(str::to_ascii_uppercase)
        .filter(|c| matches!(c.as_str(), "SMS" | "EMAIL" | "BOTH"))
        .unwrap_or_else(|| "SMS".into());
    let live = store::latest_validation_code(&mut tx, org, customer, purpose.as_str())
        .await?
        .filter(|row| {
            row.expires_at > now && row.attempts < CODE_ATTEMPTS_MAX && row.points == points.0
        });
    let issued = match live {
        Some(row) => {
            deliver_validation_code(
                &mut tx,
                principal,
                org,
                customer,
                &CodeToSend::Again(row.id),
                &channel,
                now,
                purpose,
            )
            .await?;
            IssuedCode { id: row.id, expires_at: row.expires_at, resent: true, channel }
        }
        None => {
            let (code, salt) = {
                let mut rng = rand::thread_rng();
                let code = format!(
                    "{:0width$}",
                    rng.gen_range(0..10u32.pow(CODE_DIGITS)),
                    width = CODE_DIGITS as usize
                );
                let salt: [u8; 16] = rng.r#gen();
                (code, hex::encode(salt))
            };
            let expires_at = now + minutes * 60_000;
            let id = store::insert_validation_code(
                &mut tx,
                org,
                customer,
                points.0,
                &salt,
                &hash_code(&salt, &code),
                now,
                expires_at,
                purpose.as_str(),
            )
            .await?;
            deliver_validation_code(
                &mut tx,
                principal,
                org,
                customer,
                &CodeToSend::New { id, code: &code },
                &channel,
                now,
                purpose,
            )
            .await?;
            IssuedCode { id, expires_at, resent: false, channel }
        }
    };
    tx.commit().await?;
    Ok(issued)
}

/// What to send: a new code, or the live one again.
pub enum CodeToSend<'a> {
    New {
        id: i64,
        code: &'a str,
    },
    /// Codes are stored only hashed: a re-send asks delivery to repeat its earlier message for
    /// this code id.
    Again(i64),
}

/// Hands a validation code to delivery and records the send.
///
/// Sends a validation code to the customer through the communications module (`channel`: SMS,
/// EMAIL or BOTH) in the caller's transaction, raises `points.validation_code_issued` (its payload
/// never carries the code) and records the send. Codes are stored only hashed, so a re-send
/// within the validity window resends the earlier message of that code. A message that cannot
/// be queued (no address on file, opted out) is logged and leaves the code valid: the customer
/// may ask again.
#[allow(clippy::too_many_arguments)]
pub async fn deliver_validation_code(
    tx: &mut crate::db::Tx,
    principal: Option<&Principal>,
    org: OrgId,
    customer: i64,
    code: &CodeToSend<'_>,
    channel: &str,
    now: i64,
    purpose: CodePurpose,
) -> Result<(), DbError> {
    use crate::comms::{self, Channel, CommsError, Recipient, SendRequest, TemplateRef};
    let actor = principal
        .map(crate::audit::AuditActor::from)
        .unwrap_or_else(crate::audit::AuditActor::system);
    let channels: &[Channel] = match channel {
        "EMAIL" => &[Channel::Email],
        "BOTH" => &[Channel::Sms, Channel::Email],
        _ => &[Channel::Sms],
    };
    let (id, resend) = match code {
        CodeToSend::New { id, code: _ } => (*id, false),
        CodeToSend::Again(id) => (*id, true),
    };
    let mut message_id = None;
    let outcome = match code {
        CodeToSend::New { code, .. } => {
            let mut last = Ok(());
            for &ch in channels {
                let (subject, body) = purpose.message();
                let template =
                    TemplateRef::Inline { subject: Some(subject.into()), body: body.into() };
                let mut request = SendRequest::new(
                    ch,
                    Recipient::Customer(crate::customers::model::CustomerId(customer)),
                    template,
                    actor.clone(),
                )
                .value("code", *code);
                request.purpose = "OTP".into();
                match comms::send(tx, org, request).await {
                    Ok(sent) => message_id = Some(sent.id.0),
                    Err(e) => last = Err(e),
                }
            }
            last
        }
        CodeToSend::Again(id) => match store::last_code_message(tx, org, *id).await? {
            Some(message) => comms::service::resend(tx, org, comms::MessageId(message), &actor)
                .await
                .map(|sent| {
                    message_id = Some(sent.id.0);
                }),
            None => Ok(()),
        },
    };
    match outcome {
        Err(CommsError::Db(e)) => return Err(e),
        Err(e) => tracing::warn!(org = org.0, customer, error = %e, "validation code not sent"),
        Ok(()) => {}
    }
    let event = events::raise(
        tx,
        org,
        principal,
        NewEvent {
            event_type: "points.validation_code_issued",
            entity_type: "CUSTOMER",
            entity_id: customer,
            payload: serde_json::json!({"validationCodeId": id, "channel": channel, "resend": resend,
                "messageId": message_id, "purpose": purpose.as_str()}),
        },
    )
    .await?;
    store::insert_code_send(tx, org, id, channel, event, message_id, now).await
}

/// What a reversal gave back.
#[derive(Clone, Debug)]
pub struct Reversal {
    /// The redemption as it was before this reversal.
    pub redemption: RedemptionRow,
    pub reversal_id: i64,
    /// Points of the redemption this reversal took care of (restored plus lapsed).
    pub points: Fixed,
    pub restored: Fixed,
    /// Points of lots that expired since the redemption: not restored.
    pub lapsed: Fixed,
    /// Points of the redemption still open to reversal after this one.
    pub left: Fixed,
    pub balance: Fixed,
}

/// Audit actor of a principal, or the system.
fn actor_of(principal: Option<&Principal>) -> crate::audit::AuditActor {
    principal.map(crate::audit::AuditActor::from).unwrap_or_else(crate::audit::AuditActor::system)
}

/// Reverses `points` of a redemption (all that is left when None): what it took goes back to the
/// lots it came from, the last-used lots first; the share of lots that have expired since is
/// not restored. Several partial reversals add up to at most the redeemed points (812 after
/// that). `customer`, when given, must own the redemption.
#[tracing::instrument(skip_all, fields(org = org.0, redemption = id))]
pub async fn reverse(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    id: i64,
    customer: Option<i64>,
    points: Option<Fixed>,
    now: i64,
) -> Result<Reversal, PointsError> {
    if points.is_some_and(|p| !p.is_positive()) {
        return Err(PointsError::InvalidPoints);
    }
    let mut tx = db.begin_write().await?;
    let first = store::get_redemption(&mut tx, org, id)
        .await?
        .filter(|r| customer.is_none_or(|c| c == r.customer_id))
        .ok_or(PointsError::RedemptionNotFound)?;
    let till = principal.and_then(|p| p.till.map(|t| t.0));
    let scope = Scope { org, customer: first.customer_id, program: first.program_id, till, now };
    ledger::open_account(&mut tx, scope).await?;
    ledger::expire_customer(&mut tx, scope).await?;
    // Read again under the account lock: a reversal that committed meanwhile is seen now.
    let row =
        store::get_redemption(&mut tx, org, id).await?.ok_or(PointsError::RedemptionNotFound)?;
    let left = row.points - row.reversal_claimed;
    if left <= 0 {
        return Err(PointsError::AlreadyReversed);
    }
    let wanted = points.map(|p| p.0).unwrap_or(left);
    if wanted > left {
        return Err(PointsError::MoreThanLeftToReverse { left: Fixed(left) });
    }
    let handled = super::store_ops::reversed_per_lot(&mut tx, org, id).await?;
    let reference = format!("redemption:{id}");
    let meta = EntryMeta { reference: &reference, ..EntryMeta::default() };
    let part =
        ledger::reverse_spend_part(&mut tx, scope, row.entry_id, &handled, wanted, meta).await?;
    let claimed = part.restored.0 + part.lapsed.0;
    if claimed <= 0
        || !super::store_ops::claim_reversal(
            &mut tx,
            org,
            id,
            claimed,
            part.restored.0,
            part.entry,
            now,
        )
        .await?
    {
        drop(tx); // rolls back
        return Err(PointsError::AlreadyReversed);
    }
    let reversal_id = super::store_ops::insert_reversal(
        &mut tx,
        org,
        &super::store_ops::NewReversal {
            redemption_id: id,
            customer_id: row.customer_id,
            points: claimed,
            restored: part.restored.0,
            lapsed: part.lapsed.0,
            entry_id: part.entry,
            till_id: till,
            created_at: now,
        },
    )
    .await?;
    for &(lot, restored, lapsed) in &part.lots {
        super::store_ops::insert_reversal_lot(&mut tx, org, reversal_id, lot, restored, lapsed)
            .await?;
    }
    let payload = serde_json::json!({"redemptionId": id, "reversalId": reversal_id,
        "points": Fixed(claimed).to_f64(), "restored": part.restored.to_f64(),
        "lapsed": part.lapsed.to_f64(), "left": Fixed(left - claimed).to_f64()});
    crate::audit::record(
        &mut tx,
        org,
        &actor_of(principal),
        crate::audit::Change {
            entity_type: "POINTS_REDEMPTION",
            entity_id: id,
            action: "REVERSE",
            before: Some(serde_json::json!({"reversed": Fixed(row.reversal_claimed).to_f64()})),
            after: Some(payload.clone()),
        },
    )
    .await?;
    events::raise(
        &mut tx,
        org,
        principal,
        NewEvent {
            event_type: "points.redemption_reversed",
            entity_type: "CUSTOMER",
            entity_id: row.customer_id,
            payload,
        },
    )
    .await?;
    let account = store::lock_account(&mut tx, org, row.customer_id, row.program_id).await?;
    tx.commit().await?;
    Ok(Reversal {
        redemption: row,
        reversal_id,
        points: Fixed(claimed),
        restored: part.restored,
        lapsed: part.lapsed,
        left: Fixed(left - claimed),
        balance: Fixed(account.map(|a| a.current_points).unwrap_or(0)),
    })
}

/// The metadata an update may change (only what is given changes; points never do).
#[derive(Clone, Debug, Default)]
pub struct RedemptionUpdate {
    pub bill_number: Option<String>,
    pub bill_id: Option<i64>,
    pub purpose: Option<String>,
    /// Merged into the stored custom fields (a null value removes the field).
    pub custom_fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Changes a redemption's bill number, bill id, purpose and custom fields; `customer` must own
/// it. Audited.
#[tracing::instrument(skip_all, fields(org = org.0, redemption = id))]
pub async fn update_redemption(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    id: i64,
    customer: i64,
    update: &RedemptionUpdate,
    now: i64,
) -> Result<RedemptionRow, PointsError> {
    let mut tx = db.begin_write().await?;
    let row = store::get_redemption(&mut tx, org, id)
        .await?
        .filter(|r| r.customer_id == customer)
        .ok_or(PointsError::RedemptionNotFound)?;
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&row.custom_fields).unwrap_or_default();
    for (name, value) in update.custom_fields.iter().flatten() {
        if value.is_null() {
            fields.remove(name);
        } else {
            fields.insert(name.clone(), value.clone());
        }
    }
    let custom_fields = serde_json::Value::Object(fields).to_string();
    let bill_number = update.bill_number.clone().unwrap_or_else(|| row.bill_number.clone());
    let purpose = update.purpose.clone().unwrap_or_else(|| row.purpose.clone());
    let meta = super::store_ops::RedemptionMeta {
        bill_number: &bill_number,
        bill_id: update.bill_id.or(row.bill_id),
        purpose: &purpose,
        custom_fields: &custom_fields,
    };
    super::store_ops::update_redemption_meta(&mut tx, org, id, &meta, now).await?;
    let state = |bill: &str, bill_id: Option<i64>, purpose: &str, fields: &str| {
        serde_json::json!({"billNumber": bill, "billId": bill_id, "purpose": purpose,
            "customFields": serde_json::from_str::<serde_json::Value>(fields).unwrap_or_default()})
    };
    crate::audit::record(
        &mut tx,
        org,
        &actor_of(principal),
        crate::audit::Change {
            entity_type: "POINTS_REDEMPTION",
            entity_id: id,
            action: "UPDATE",
            before: Some(state(&row.bill_number, row.bill_id, &row.purpose, &row.custom_fields)),
            after: Some(state(&bill_number, meta.bill_id, &purpose, &custom_fields)),
        },
    )
    .await?;
    events::raise(
        &mut tx,
        org,
        principal,
        NewEvent {
            event_type: "points.redemption_updated",
            entity_type: "CUSTOMER",
            entity_id: row.customer_id,
            payload: serde_json::json!({"redemptionId": id}),
        },
    )
    .await?;
    let updated =
        store::get_redemption(&mut tx, org, id).await?.ok_or(PointsError::RedemptionNotFound)?;
    tx.commit().await?;
    Ok(updated)
}
