//! Label types: ids, validated names and descriptions, the limits, and `LabelError`.

use crate::customers::model::CustomerError;
use crate::error::{ApiError, Code};

/// A label id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelId(pub i64);

/// Longest label name and description, in characters.
pub const NAME_LENGTH_MAX: usize = 100;
pub const DESCRIPTION_LENGTH_MAX: usize = 255;
/// Most labels one `POST /v2/organization/labels` may carry.
pub const LABELS_PER_REQUEST_MAX: usize = 100;
/// Labels an org may hold unless its `ORG_MAX_LABEL_COUNT` config says otherwise.
pub const ORG_MAX_LABEL_COUNT_DEFAULT: i64 = 1000;
/// Hard bound on any list of an org's labels, whatever the configured cap.
pub const LABELS_LIST_MAX: i64 = 10_000;
/// Most entries in each of `add` and `remove` of one `changeLabels`.
pub const CHANGE_ENTRIES_MAX: usize = 100;
/// Search paging: default page, and the most one page returns (also for `limit=-1`).
pub const SEARCH_LIMIT_DEFAULT: i64 = 10;
pub const SEARCH_LIMIT_MAX: i64 = 1000;

/// Why a label request was refused; each maps to a documented code.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("{0}")]
    Invalid(String),
    #[error("Unknown label(s): {}", .0.join(", "))]
    UnknownLabels(Vec<String>),
    #[error("Org max Label count exceed: an org may hold at most {0} labels")]
    CountExceeded(i64),
    #[error(transparent)]
    Customer(#[from] CustomerError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl From<LabelError> for ApiError {
    fn from(e: LabelError) -> Self {
        match e {
            LabelError::Customer(c) => c.into(),
            LabelError::Db(db) => ApiError::from(db),
            other => ApiError::with_message(Code::InvalidInput, other.to_string()),
        }
    }
}

/// A label name: 1 to 100 characters once trimmed, any characters but control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LabelName(String);

impl LabelName {
    pub fn parse(field: &str, raw: &str) -> Result<LabelName, LabelError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > NAME_LENGTH_MAX {
            return Err(LabelError::Invalid(format!(
                "{field} must be 1 to {NAME_LENGTH_MAX} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(LabelError::Invalid(format!(
                "{field} must not contain control characters"
            )));
        }
        Ok(LabelName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated label to create.
#[derive(Clone, Debug)]
pub struct NewLabel {
    pub name: LabelName,
    pub description: String,
}

impl NewLabel {
    pub fn parse(index: usize, name: &str, description: Option<&str>) -> Result<Self, LabelError> {
        let name = LabelName::parse(&format!("orgLabels[{index}].name"), name)?;
        let description = description.map(str::trim).unwrap_or_default();
        if description.chars().count() > DESCRIPTION_LENGTH_MAX {
            return Err(LabelError::Invalid(format!(
                "orgLabels[{index}].description must be at most {DESCRIPTION_LENGTH_MAX} characters"
            )));
        }
        if description.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(LabelError::Invalid(format!(
                "orgLabels[{index}].description must not contain control characters"
            )));
        }
        Ok(NewLabel { name, description: description.to_string() })
    }
}

/// A page of the label search: `limit` -1 means "all", bounded by [`SEARCH_LIMIT_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchPage {
    pub limit: i64,
    pub offset: i64,
}

impl SearchPage {
    pub fn parse(limit: Option<i64>, offset: Option<i64>) -> Result<SearchPage, LabelError> {
        let limit = match limit.unwrap_or(SEARCH_LIMIT_DEFAULT) {
            -1 => SEARCH_LIMIT_MAX,
            l if (1..=SEARCH_LIMIT_MAX).contains(&l) => l,
            _ => {
                return Err(LabelError::Invalid(format!(
                    "limit must be -1 (all) or 1 to {SEARCH_LIMIT_MAX}"
                )));
            }
        };
        let offset = offset.unwrap_or(0);
        if offset < 0 {
            return Err(LabelError::Invalid("offset must not be negative".into()));
        }
        Ok(SearchPage { limit, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(LabelName::parse("n", "  VIP #1 ").unwrap().as_str(), "VIP #1");
        assert!(LabelName::parse("n", "   ").is_err());
        assert!(LabelName::parse("n", &"x".repeat(101)).is_err());
        assert!(LabelName::parse("n", &"é".repeat(100)).is_ok());
        assert!(LabelName::parse("n", "a\u{0}b").is_err());
    }

    #[test]
    fn search_pages_follow_the_rules() {
        assert_eq!(SearchPage::parse(None, None).unwrap(), SearchPage { limit: 10, offset: 0 });
        assert_eq!(SearchPage::parse(Some(-1), Some(5)).unwrap().limit, SEARCH_LIMIT_MAX);
        for bad in [0, -2, SEARCH_LIMIT_MAX + 1] {
            assert!(SearchPage::parse(Some(bad), None).is_err(), "{bad}");
        }
        assert!(SearchPage::parse(None, Some(-1)).is_err());
    }
}
