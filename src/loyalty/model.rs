//! Inputs and errors of the loyalty views and of manual tier adjustment, parsed at the boundary.

use chrono::NaiveDate;

use crate::error::{ApiError, Code};

/// Which programs a view covers (the spec's `programId` / `fetchDataForAllPrograms` matrix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramSelection {
    /// Every program of the org (`fetchDataForAllPrograms=true`, or no filter where the view
    /// lists all programs by default).
    All,
    /// One program by id.
    One(i64),
    /// The org's default program.
    Default,
}

/// A manual tier move (`slabAction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabAction {
    Upgrade,
    Downgrade,
    Renewal,
    ExtendExpiry,
}

impl SlabAction {
    pub fn parse(value: &str) -> Option<SlabAction> {
        match value.trim().to_ascii_uppercase().as_str() {
            "UPGRADE" => Some(SlabAction::Upgrade),
            "DOWNGRADE" => Some(SlabAction::Downgrade),
            "RENEWAL" => Some(SlabAction::Renewal),
            "EXTEND_CURRENT_TIER_EXPIRY_DATE" => Some(SlabAction::ExtendExpiry),
            _ => None,
        }
    }

    /// The wire name, also the `change_type` of the tier change recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            SlabAction::Upgrade => "UPGRADE",
            SlabAction::Downgrade => "DOWNGRADE",
            SlabAction::Renewal => "RENEWAL",
            SlabAction::ExtendExpiry => "EXTEND_CURRENT_TIER_EXPIRY_DATE",
        }
    }
}

/// Longest validity a manual tier may be given, in days (a hundred years).
pub const VALIDITY_DAYS_MAX: u32 = 36_500;
/// Longest `slabChangeReason`, in characters.
pub const REASON_LENGTH_MAX: usize = 255;

/// How the new tier validity is given (`manualSlabActionValidity` and its value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// `FIXED_DURATION`: that many days (from today; from the current expiry when extending).
    Days(u32),
    /// `SPECIFIC_DATE`: until the end of that day in the org's time zone.
    Until(NaiveDate),
    /// `CURRENT_TIER_EXPIRY_DATE`: the current tier's expiry is kept.
    CurrentExpiry,
    /// `AS_PER_TIER_STRATEGY`: the program's `tierValidity` from today.
    ProgramRule,
}

impl Validity {
    /// Parses the kind and its value; FIXED_DURATION takes 1 to [`VALIDITY_DAYS_MAX`] days and
    /// SPECIFIC_DATE a `YYYY-MM-DD` date (a time part is ignored).
    pub fn parse(kind: &str, value: Option<&str>) -> Result<Validity, LoyaltyError> {
        let value = value.map(str::trim).filter(|v| !v.is_empty());
        match kind.trim().to_ascii_uppercase().as_str() {
            "FIXED_DURATION" => {
                let days = value
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|d| (1..=VALIDITY_DAYS_MAX).contains(d))
                    .ok_or_else(|| {
                        LoyaltyError::Validity(format!(
                            "manualSlabActionValidityUpto must be 1 to {VALIDITY_DAYS_MAX} days \
                             with FIXED_DURATION"
                        ))
                    })?;
                Ok(Validity::Days(days))
            }
            "SPECIFIC_DATE" => {
                let date = value
                    .and_then(|v| v.get(..10))
                    .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
                    .ok_or_else(|| {
                        LoyaltyError::Validity(
                            "manualSlabActionValidityUpto must be a YYYY-MM-DD date with \
                             SPECIFIC_DATE"
                                .into(),
                        )
                    })?;
                Ok(Validity::Until(date))
            }
            "CURRENT_TIER_EXPIRY_DATE" => Ok(Validity::CurrentExpiry),
            "AS_PER_TIER_STRATEGY" => Ok(Validity::ProgramRule),
            other => Err(LoyaltyError::Validity(format!(
                "manualSlabActionValidity '{other}' is not FIXED_DURATION, SPECIFIC_DATE, \
                 CURRENT_TIER_EXPIRY_DATE or AS_PER_TIER_STRATEGY"
            ))),
        }
    }
}

/// A manual tier adjustment, validated.
#[derive(Clone, Debug)]
pub struct TierAdjustment {
    pub program_id: i64,
    pub action: SlabAction,
    pub to_tier: Option<String>,
    pub validity: Validity,
    pub reassess: bool,
    pub reason: String,
}

/// Why a loyalty view or a tier adjustment was refused; each maps to a documented code.
#[derive(Debug, thiserror::Error)]
pub enum LoyaltyError {
    #[error("Customer not found for the given identifiers")]
    CustomerNotFound,
    /// A view asked for a program the org does not have (8089).
    #[error("Customer not registered for the Loyalty Program {0}")]
    NotEnrolled(i64),
    /// A program id that is not the org's (1101).
    #[error("Invalid programId {0}")]
    UnknownProgram(i64),
    #[error("{0}")]
    TierName(String),
    #[error("{0}")]
    TierAction(String),
    #[error("{0}")]
    Validity(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl From<crate::programs::model::ProgramError> for LoyaltyError {
    fn from(e: crate::programs::model::ProgramError) -> Self {
        use crate::programs::model::ProgramError;
        match e {
            ProgramError::Db(db) => LoyaltyError::Db(db),
            ProgramError::NotFound | ProgramError::NoProgram => LoyaltyError::UnknownProgram(0),
            other => LoyaltyError::Invalid(other.to_string()),
        }
    }
}

impl From<crate::transactions::model::TransactionError> for LoyaltyError {
    fn from(e: crate::transactions::model::TransactionError) -> Self {
        match e {
            crate::transactions::model::TransactionError::Db(db) => LoyaltyError::Db(db),
            other => LoyaltyError::Invalid(other.to_string()),
        }
    }
}

impl From<LoyaltyError> for ApiError {
    fn from(e: LoyaltyError) -> Self {
        let code = match &e {
            LoyaltyError::CustomerNotFound => Code::CustomerNotFound,
            LoyaltyError::NotEnrolled(_) => Code::LoyaltyProgramNotEnrolled,
            LoyaltyError::UnknownProgram(_) => Code::InvalidProgramId,
            LoyaltyError::TierName(_) => Code::InvalidTierName,
            LoyaltyError::TierAction(_) => Code::InvalidTierAction,
            LoyaltyError::Validity(_) => Code::InvalidTierValidity,
            LoyaltyError::Invalid(_) => Code::InvalidInput,
            LoyaltyError::Db(_) => {
                return match e {
                    LoyaltyError::Db(db) => ApiError::from(db),
                    _ => ApiError::new(Code::Internal),
                };
            }
        };
        ApiError::with_message(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_parses_each_kind_and_refuses_bad_values() {
        assert_eq!(Validity::parse("FIXED_DURATION", Some("20")).unwrap(), Validity::Days(20));
        assert_eq!(
            Validity::parse("specific_date", Some("2030-04-20")).unwrap(),
            Validity::Until(NaiveDate::from_ymd_opt(2030, 4, 20).unwrap())
        );
        assert_eq!(
            Validity::parse("SPECIFIC_DATE", Some("2030-04-20 10:00:00")).unwrap(),
            Validity::Until(NaiveDate::from_ymd_opt(2030, 4, 20).unwrap())
        );
        assert_eq!(
            Validity::parse("CURRENT_TIER_EXPIRY_DATE", None).unwrap(),
            Validity::CurrentExpiry
        );
        assert_eq!(Validity::parse("AS_PER_TIER_STRATEGY", None).unwrap(), Validity::ProgramRule);
        for (kind, value) in [
            ("FIXED_DURATION", Some("0")),
            ("FIXED_DURATION", Some("-3")),
            ("FIXED_DURATION", Some("1.5")),
            ("FIXED_DURATION", None),
            ("FIXED_DURATION", Some("36501")),
            ("SPECIFIC_DATE", Some("20-04-2030")),
            ("SPECIFIC_DATE", None),
            ("FOREVER", Some("1")),
        ] {
            assert!(Validity::parse(kind, value).is_err(), "{kind} {value:?}");
        }
    }

    #[test]
    fn slab_actions_round_trip() {
        for a in [
            SlabAction::Upgrade,
            SlabAction::Downgrade,
            SlabAction::Renewal,
            SlabAction::ExtendExpiry,
        ] {
            assert_eq!(SlabAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(SlabAction::parse("upgrade"), Some(SlabAction::Upgrade));
        assert_eq!(SlabAction::parse("SIDEGRADE"), None);
    }
}
