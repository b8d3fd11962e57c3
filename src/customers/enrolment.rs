//! `loyaltyProgramEnrollments` of registrations and updates: a program, a starting tier and opening points.

use serde_json::{Value, json};

use super::model::{CustomerError, CustomerId};
use super::service::Warning;
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::Tx;
use crate::events::{self, NewEvent};
use crate::points::ledger::{self, Award, Scope};
use crate::points::model::Fixed;
use crate::points::store as points_store;
use crate::programs::cache::ProgramCache;
use crate::programs::model::{ProgramError, ProgramId};
use crate::transactions::service::SideEffect;

/// Most enrolments one request may carry (an org holds at most 100 programs).
pub const ENROLLMENTS_MAX: usize = 100;
/// Largest opening balance one enrolment may give.
pub const OPENING_POINTS_MAX: i64 = 1_000_000_000;
/// The award source of opening points (a lot's `source`).
pub const ENROLLMENT_SOURCE: &str = "ENROLLMENT";
/// The `change_type` of a starting tier set by an enrolment.
pub const ENROLLMENT_CHANGE: &str = "ENROLLMENT";

/// One parsed `loyaltyProgramEnrollments[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    pub program_id: i64,
    /// The starting tier (1 = the base tier); None keeps the base tier.
    pub tier_number: Option<i32>,
    /// Opening points, whole and not negative.
    pub points: Fixed,
    /// When the starting tier ends (UTC millis); None: the program's tier validity.
    pub tier_expires_at: Option<i64>,
    /// When the opening points expire (UTC millis); None: the program's expiry rule.
    pub points_expire_at: Option<i64>,
}

fn invalid(index: usize, message: impl std::fmt::Display) -> CustomerError {
    CustomerError::Invalid(format!("loyaltyProgramEnrollments[{index}].{message}"))
}

/// An RFC 3339 instant (`YYYY-MM-DDTHH:MM:SS+05:30`, `…Z`) as UTC millis.
fn instant(index: usize, name: &str, value: &Value) -> Result<Option<i64>, CustomerError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| {
                let message =
                    format!("{name} must be a date-time with offset (YYYY-MM-DDTHH:MM:SS+HH:MM)");
                if name == "tierExpiryDate" {
                    CustomerError::TierValidity(format!(
                        "loyaltyProgramEnrollments[{index}].{message}"
                    ))
                } else {
                    invalid(index, message)
                }
            }),
        _ => Err(invalid(index, format!("{name} must be a string"))),
    }
}

/// A whole number given as a JSON number or as its text.
fn whole(value: &Value) -> Option<Result<i64, ()>> {
    match value {
        Value::Null => None,
        Value::Number(n) => Some(match n.as_i64() {
            Some(v) => Ok(v),
            None => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
                .ok_or(()),
        }),
        Value::String(s) => Some(s.trim().parse::<i64>().map_err(|_| ())),
        _ => Some(Err(())),
    }
}

/// Parses the wire list: each entry an object with a positive `programId`, an optional
/// `tierNumber` ≥ 1, optional whole `loyaltyPoints` (0 to [`OPENING_POINTS_MAX`]) and optional
/// RFC 3339 `tierExpiryDate`/`pointsExpiryDate`; a program named twice is refused.
pub fn parse_enrollments(list: &[Value]) -> Result<Vec<Enrollment>, CustomerError> {
    if list.len() > ENROLLMENTS_MAX {
        return Err(CustomerError::Invalid(format!(
            "loyaltyProgramEnrollments takes at most {ENROLLMENTS_MAX} entries"
        )));
    }
    let mut out: Vec<Enrollment> = Vec::with_capacity(list.len());
    for (index, item) in list.iter().enumerate() {
        let Value::Object(item) = item else {
            return Err(CustomerError::Invalid(format!(
                "loyaltyProgramEnrollments[{index}] must be an object"
            )));
        };
        let get = |k: &str| item.get(k).unwrap_or(&Value::Null);
        let program_id = match whole(get("programId")) {
            Some(Ok(id)) if id > 0 => id,
            None => return Err(invalid(index, "programId is required")),
            _ => return Err(invalid(index, "programId must be a positive whole number")),
        };
        let tier_number = match whole(get("tierNumber")) {
            None => None,
            Some(Ok(n)) if n >= 1 => Some(i32::try_from(n).map_err(|_| {
                CustomerError::UnknownTier(format!(
                    "loyaltyProgramEnrollments[{index}].tierNumber {n} is not a tier of program {program_id}"
                ))
            })?),
            Some(_) => {
                return Err(CustomerError::UnknownTier(format!(
                    "loyaltyProgramEnrollments[{index}].tierNumber must be a whole number of 1 or more"
                )));
            }
        };
        let points = match whole(get("loyaltyPoints")) {
            None => 0,
            Some(Ok(p)) if (0..=OPENING_POINTS_MAX).contains(&p) => p,
            Some(Ok(_)) => {
                return Err(invalid(
                    index,
                    format!("loyaltyPoints must be 0 to {OPENING_POINTS_MAX}"),
                ));
            }
            Some(Err(())) => {
                return Err(invalid(index, "loyaltyPoints must be a whole number of points"));
            }
        };
        let points = Fixed::from_decimal(rust_decimal::Decimal::from(points))
            .ok_or_else(|| invalid(index, "loyaltyPoints is out of range"))?;
        let tier_expires_at = instant(index, "tierExpiryDate", get("tierExpiryDate"))?;
        let points_expire_at = instant(index, "pointsExpiryDate", get("pointsExpiryDate"))?;
        if tier_expires_at.is_some() && tier_number.is_none_or(|t| t <= 1) {
            return Err(CustomerError::TierValidity(format!(
                "loyaltyProgramEnrollments[{index}].tierExpiryDate needs a tierNumber above 1 (the base tier never expires)"
            )));
        }
        if points_expire_at.is_some() && !points.is_positive() {
            return Err(invalid(index, "pointsExpiryDate needs loyaltyPoints above 0"));
        }
        if out.iter().any(|e| e.program_id == program_id) {
            return Err(invalid(index, format!("programId {program_id} is given twice")));
        }
        out.push(Enrollment { program_id, tier_number, points, tier_expires_at, points_expire_at });
    }
    Ok(out)
}

/// Base-tier enrolments without points in every program of the org that `listed` does not
/// name (`enrollInAllPrograms=true`).
pub async fn remaining_programs(
    tx: &mut Tx,
    programs: &ProgramCache,
    org: crate::org::model::OrgId,
    listed: &[Enrollment],
) -> Result<Vec<Enrollment>, CustomerError> {
    let all =
        crate::programs::service::programs_of_org(programs, tx, org).await.map_err(
            |e| match e {
                ProgramError::Db(db) => CustomerError::Db(db),
                other => CustomerError::Invalid(other.to_string()),
            },
        )?;
    Ok(all
        .iter()
        .filter(|p| !listed.iter().any(|e| e.program_id == p.id.0))
        .map(|p| Enrollment {
            program_id: p.id.0,
            tier_number: None,
            points: Fixed::ZERO,
            tier_expires_at: None,
            points_expire_at: None,
        })
        .collect())
}

/// What the enrolments of one request did.
#[derive(Debug, Default)]
pub struct Enrolled {
    pub side_effects: Vec<Value>,
    pub warnings: Vec<Warning>,
}

/// Enrols `customer` in each program of `list`, inside the caller's transaction: checks the
/// program and tier, opens the account, awards the opening points as one lot (expiring at
/// `pointsExpiryDate`, else by the program's rule) and sets the starting tier (ending at
/// `tierExpiryDate`, else by the program's tier validity), with audit records and events.
/// A program the customer already has an account in is left alone with a warning, so that a
/// repeated registration never awards twice. Any refusal fails the whole request (the caller
/// rolls back).
pub async fn enrol(
    tx: &mut Tx,
    programs: &ProgramCache,
    principal: &Principal,
    customer: CustomerId,
    list: &[Enrollment],
    now: i64,
) -> Result<Enrolled, CustomerError> {
    let org = principal.org;
    let mut done = Enrolled::default();
    if list.is_empty() {
        return Ok(done);
    }
    let row =
        super::store::get_customer(tx, org, customer).await?.ok_or(CustomerError::NotFound)?;
    if row.loyalty_type != "loyalty" {
        return Err(CustomerError::Invalid(
            "loyaltyProgramEnrollments need a loyalty customer (loyaltyType loyalty)".into(),
        ));
    }
    let tz = crate::loyalty::service::org_zone(tx, org).await.map_err(|e| match e {
        crate::loyalty::model::LoyaltyError::Db(db) => CustomerError::Db(db),
        other => CustomerError::Invalid(other.to_string()),
    })?;
    let accounts = points_store::accounts_of_customer(tx, org, customer.0).await?;
    for (index, e) in list.iter().enumerate() {
        let program =
            crate::programs::service::program_by_id(programs, tx, org, ProgramId(e.program_id))
                .await
                .map_err(|err| match err {
                    ProgramError::Db(db) => CustomerError::Db(db),
                    ProgramError::NotFound | ProgramError::NoProgram => {
                        CustomerError::UnknownProgram(e.program_id)
                    }
                    other => CustomerError::Invalid(other.to_string()),
                })?;
        if let Some(tier) = e.tier_number
            && tier > program.tier_count()
        {
            return Err(CustomerError::UnknownTier(format!(
                "loyaltyProgramEnrollments[{index}].tierNumber {tier} is not a tier of program {} (1 to {})",
                e.program_id,
                program.tier_count()
            )));
        }
        if e.tier_expires_at.is_some_and(|at| at <= now) {
            return Err(CustomerError::TierValidity(format!(
                "loyaltyProgramEnrollments[{index}].tierExpiryDate must be in the future"
            )));
        }
        if e.points_expire_at.is_some_and(|at| at <= now) {
            return Err(invalid(index, "pointsExpiryDate must be in the future"));
        }
        if accounts.iter().any(|a| a.program_id == e.program_id) {
            done.warnings.push(Warning::new(
                1014,
                format!(
                    "Customer is already enrolled in program {}: its loyaltyProgramEnrollments entry was not applied",
                    e.program_id
                ),
            ));
            continue;
        }
        let scope = Scope {
            org,
            customer: customer.0,
            program: e.program_id,
            till: principal.till.map(|t| t.0),
            now,
        };
        ledger::open_account(tx, scope).await?;
        let mut points_expire_at = None;
        if e.points.is_positive() {
            points_expire_at = e.points_expire_at.or_else(|| program.points_expiry(now, tz));
            let award = Award {
                points: e.points,
                source: ENROLLMENT_SOURCE,
                rule: "loyaltyProgramEnrollments",
                transaction_id: None,
                line_item_id: None,
                awarded_at: now,
                unlock_at: None,
                expires_at: points_expire_at,
            };
            ledger::award(tx, scope, &award).await?;
            done.side_effects.push(
                SideEffect::Points {
                    program_id: e.program_id,
                    points: e.points,
                    awarded_at: now,
                    expires_at: points_expire_at,
                    promised: false,
                    rules: vec!["loyaltyProgramEnrollments".into()],
                }
                .to_json(false),
            );
            events::raise(
                tx,
                org,
                Some(principal),
                NewEvent {
                    event_type: "points.awarded",
                    entity_type: "CUSTOMER",
                    entity_id: customer.0,
                    payload: json!({"customerId": customer.0, "programId": e.program_id,
                        "points": e.points.to_f64(), "reason": "enrollment"}),
                },
            )
            .await?;
        }
        let tier = e.tier_number.unwrap_or(1);
        let mut tier_expires_at = None;
        if tier > 1 {
            tier_expires_at = e.tier_expires_at.or_else(|| program.tier_expiry(now, tz));
            points_store::set_tier(tx, org, customer.0, e.program_id, tier, now, tier_expires_at)
                .await?;
            points_store::insert_tier_change(
                tx,
                org,
                &points_store::NewTierChange {
                    customer_id: customer.0,
                    program_id: e.program_id,
                    change_type: ENROLLMENT_CHANGE,
                    from_tier: 1,
                    to_tier: tier,
                    transaction_id: None,
                    expires_at: tier_expires_at,
                    created_at: now,
                },
            )
            .await?;
            done.side_effects.push(
                SideEffect::Tier {
                    program_id: e.program_id,
                    change_type: ENROLLMENT_CHANGE,
                    from: program.tier_name(1).to_string(),
                    to: program.tier_name(tier).to_string(),
                    expires_at: tier_expires_at,
                }
                .to_json(false),
            );
            events::raise(
                tx,
                org,
                Some(principal),
                NewEvent {
                    event_type: "tier.changed",
                    entity_type: "CUSTOMER",
                    entity_id: customer.0,
                    payload: json!({"customerId": customer.0, "programId": e.program_id,
                        "changeType": ENROLLMENT_CHANGE, "manual": true,
                        "previousTier": program.tier_name(1), "newTier": program.tier_name(tier),
                        "tierExpiryDate": tier_expires_at.map(crate::transactions::time::iso_utc),
                        "transactionId": Value::Null}),
                },
            )
            .await?;
        }
        let after = json!({"programId": e.program_id, "tierNumber": tier,
            "tierName": program.tier_name(tier), "loyaltyPoints": e.points.to_f64(),
            "tierExpiryDate": tier_expires_at.map(crate::transactions::time::iso_utc),
            "pointsExpiryDate": points_expire_at.map(crate::transactions::time::iso_utc)});
        audit::record(
            tx,
            org,
            &AuditActor::from(principal),
            Change {
                entity_type: "CUSTOMER",
                entity_id: customer.0,
                action: "ENROLL",
                before: None,
                after: Some(after.clone()),
            },
        )
        .await?;
        events::raise(
            tx,
            org,
            Some(principal),
            NewEvent {
                event_type: "customer.enrolled",
                entity_type: "CUSTOMER",
                entity_id: customer.0,
                payload: json!({"customerId": customer.0, "enrollment": after}),
            },
        )
        .await?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollments_are_parsed_and_checked() {
        let ok = parse_enrollments(&[json!({"programId": 3, "tierNumber": 2, "loyaltyPoints": 150,
            "tierExpiryDate": "2030-01-01T00:00:00+05:30", "pointsExpiryDate": "2031-01-01T00:00:00Z"})])
        .unwrap();
        assert_eq!(ok[0].program_id, 3);
        assert_eq!(ok[0].tier_number, Some(2));
        assert!(ok[0].points.is_positive());
        assert_eq!(ok[0].tier_expires_at, Some(1_893_436_200_000));
        for bad in [
            json!({"tierNumber": 1}),
            json!({"programId": -1}),
            json!({"programId": 1, "loyaltyPoints": -5}),
            json!({"programId": 1, "loyaltyPoints": 1.5}),
            json!({"programId": 1, "tierNumber": 0}),
            json!({"programId": 1, "tierNumber": 2, "tierExpiryDate": "2030-01-01"}),
            json!({"programId": 1, "tierExpiryDate": "2030-01-01T00:00:00Z"}),
            json!({"programId": 1, "pointsExpiryDate": "2030-01-01T00:00:00Z"}),
            json!("x"),
        ] {
            assert!(parse_enrollments(std::slice::from_ref(&bad)).is_err(), "{bad}");
        }
        let twice = [json!({"programId": 1}), json!({"programId": 1})];
        assert!(parse_enrollments(&twice).is_err());
        assert_eq!(
            parse_enrollments(&[json!({"programId": 1, "loyaltyPoints": 20.0})]).unwrap().len(),
            1
        );
    }
}
