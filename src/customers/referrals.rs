//! Referral codes (derived from the referrer's id) and the referrals recorded when a new customer registers with one.

use serde_json::json;

use super::model::{CustomerError, CustomerId};
use super::service::{AddOutcome, Warning};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::{Connection, DbError, Tx};
use crate::dispatch;
use crate::error::Code;
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;

/// Longest `referralCode` accepted on the wire.
pub const REFERRAL_CODE_MAX_CHARS: usize = 64;
/// Most referees one referral read lists.
pub const REFEREES_MAX: i64 = 500;

/// Crockford's base-32 alphabet: no I, L, O or U, so codes survive being read aloud or retyped.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Every code starts with this, so that a code is never mistaken for an id or a mobile number.
const PREFIX: &str = "R";

/// The customer's referral code: `R`, the id in base 32, and a check character. Codes are
/// derived, not stored, so every customer has one from registration on; they are not secrets
/// (a referral code is meant to be shared).
pub fn referral_code(customer: CustomerId) -> String {
    let mut digits = Vec::new();
    let mut rest = customer.0.max(0).unsigned_abs();
    loop {
        digits.push(ALPHABET[(rest % 32) as usize]);
        rest /= 32;
        if rest == 0 {
            break;
        }
    }
    digits.reverse();
    let body: String = digits.iter().map(|&b| char::from(b)).collect();
    format!("{PREFIX}{body}{}", check_char(&body))
}

/// A weighted sum of the digits modulo 32: catches any single mistyped character and most swaps.
fn check_char(body: &str) -> char {
    let sum: u64 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let value = ALPHABET.iter().position(|&a| a == b).unwrap_or(0) as u64;
            value * (i as u64 + 1)
        })
        .sum();
    char::from(ALPHABET[(sum % 32) as usize])
}

/// The customer id a referral code stands for (None when it is not a well-formed code). Case,
/// and the letters Crockford reads as digits (`O` → 0, `I`/`L` → 1), are forgiven.
pub fn parse_referral_code(code: &str) -> Option<CustomerId> {
    let code: String = code
        .trim()
        .to_ascii_uppercase()
        .chars()
        .map(|c| match c {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    let rest = code.strip_prefix(PREFIX)?;
    if rest.len() < 2 || rest.len() > 14 {
        return None;
    }
    let (body, check) = rest.split_at(rest.len() - 1);
    let mut id: u64 = 0;
    for b in body.bytes() {
        let digit = ALPHABET.iter().position(|&a| a == b)? as u64;
        id = id.checked_mul(32)?.checked_add(digit)?;
    }
    if !check.starts_with(check_char(body)) {
        return None;
    }
    i64::try_from(id).ok().filter(|id| *id > 0).map(CustomerId)
}

/// One recorded referral.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ReferralRow {
    pub referee_id: i64,
    pub referrer_id: i64,
    pub referral_code: String,
    pub created_at: i64,
}

async fn insert_referral(
    c: &mut impl Connection,
    org: OrgId,
    referee: CustomerId,
    referrer: CustomerId,
    code: &str,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| {
        sqlx::query(
        "INSERT INTO customer_referrals (org_id, referee_id, referrer_id, referral_code, created_at) \
         VALUES ($1, $2, $3, $4, $5)"
    )
    .bind(org.0)
    .bind(referee.0)
    .bind(referrer.0)
    .bind(code)
    .bind(now)
    .execute(e)
    .await
    .map(|_| ())
    })?;
    Ok(())
}

/// The customers `referrer` referred, newest first (at most [`REFEREES_MAX`]).
pub async fn referees(
    c: &mut impl Connection,
    org: OrgId,
    referrer: CustomerId,
) -> Result<Vec<ReferralRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ReferralRow>(
        "SELECT referee_id, referrer_id, referral_code, created_at FROM customer_referrals \
         WHERE org_id = $1 AND referrer_id = $2 ORDER BY id DESC LIMIT $3"
    )
    .bind(org.0)
    .bind(referrer.0)
    .bind(REFEREES_MAX)
    .fetch_all(e)
    .await)?)
}

/// Who referred `referee`, if anyone.
pub async fn referrer_of(
    c: &mut impl Connection,
    org: OrgId,
    referee: CustomerId,
) -> Result<Option<ReferralRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ReferralRow>(
        "SELECT referee_id, referrer_id, referral_code, created_at FROM customer_referrals \
         WHERE org_id = $1 AND referee_id = $2"
    )
    .bind(org.0)
    .bind(referee.0)
    .fetch_optional(e)
    .await)?)
}

/// Records that the customer a registration created was referred by the owner of `code`, with
/// an audit record and a `customer.referred` event, in the registration's transaction. A code
/// that names no other customer of the org, or a registration that found an existing customer,
/// records nothing and answers a warning: the registration itself stands.
pub async fn record_referral(
    tx: &mut Tx,
    principal: &Principal,
    outcome: &AddOutcome,
    code: &str,
    now: i64,
) -> Result<Vec<Warning>, CustomerError> {
    let org = principal.org;
    let warn = |message: String| vec![Warning::new(Code::InvalidReferralCode.info().code, message)];
    if !outcome.created {
        return Ok(warn(
            "referralCode applies to new customers only: the customer was already registered"
                .into(),
        ));
    }
    let referrer = match parse_referral_code(code) {
        Some(id) if id != outcome.customer => {
            super::store::get_customer(tx, org, id).await?.map(|_| id)
        }
        _ => None,
    };
    let Some(referrer) = referrer else {
        return Ok(warn(format!("Invalid referral code '{code}': referral not recorded")));
    };
    let code = referral_code(referrer);
    insert_referral(tx, org, outcome.customer, referrer, &code, now).await?;
    let after = json!({"referrerId": referrer.0, "referralCode": code});
    audit::record(
        tx,
        org,
        &AuditActor::from(principal),
        Change {
            entity_type: "CUSTOMER_REFERRAL",
            entity_id: outcome.customer.0,
            action: "CREATE",
            before: None,
            after: Some(after),
        },
    )
    .await?;
    events::raise(
        tx,
        org,
        Some(principal),
        NewEvent {
            event_type: "customer.referred",
            entity_type: "CUSTOMER",
            entity_id: outcome.customer.0,
            payload: json!({"customerId": outcome.customer.0, "referrerId": referrer.0,
                "referralCode": code}),
        },
    )
    .await?;
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_catch_typos() {
        for id in [1_i64, 31, 32, 1000, 987_654_321, i64::MAX] {
            let code = referral_code(CustomerId(id));
            assert!(code.starts_with('R'), "{code}");
            assert_eq!(parse_referral_code(&code), Some(CustomerId(id)), "{code}");
            assert_eq!(parse_referral_code(&code.to_lowercase()), Some(CustomerId(id)));
        }
        let code = referral_code(CustomerId(1234));
        let mut typo: Vec<char> = code.chars().collect();
        typo[1] = if typo[1] == '2' { '3' } else { '2' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(parse_referral_code(&typo), None);
        for bad in ["", "R", "R0", "X123", "RUUU", "R!!", "R0000000000000000000"] {
            assert_eq!(parse_referral_code(bad), None, "{bad}");
        }
    }
}
