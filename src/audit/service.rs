//! Reading the audit log: an entity's records with the spec's filters (reference type, source,
//! time window), sorting and paging, and a behavioral event's records by event name.

use serde_json::Value;

use super::store::{self, AuditEntry, EntityQuery};
use crate::db::{Connection, DbError};
use crate::org::model::OrgId;

/// Default and largest page of `GET /v2/auditLog/get`.
pub const PAGE_DEFAULT: i64 = 10;
pub const PAGE_MAX: i64 = 100;
/// Most records `GET /v2/events/audit_logs` returns (it is not paginated).
pub const EVENT_RECORDS_MAX: i64 = 1_000;
/// The audited entity type of behavioral event definitions.
pub const BEHAVIORAL_EVENT_ENTITY: &str = "BEHAVIORAL_EVENT";

/// Actions and the reference type they change; any other action changes standard fields.
const REFERENCE_ACTIONS: [(&str, &[&str]); 8] = [
    ("Identifier", &["CHANGE_IDENTIFIER"]),
    ("CustomerStatus", &["STATUS_CHANGE"]),
    ("CardStatus", &["CARD_STATUS_CHANGE"]),
    ("Subscription", &["SUBSCRIPTION_CHANGE"]),
    ("Notes", &["NOTES_CHANGE"]),
    ("Preferences", &["PREFERENCES_CHANGE"]),
    ("Labels", &["CHANGE_LABELS"]),
    ("Image", &["ADD_IMAGE", "DELETE_IMAGE"]),
];
/// Reference types the spec names that Perks records elsewhere (custom and extended field
/// values are their own audited entities): filtering by them finds nothing on an entity.
const REFERENCE_ELSEWHERE: [&str; 2] = ["ExtendedField", "CustomField"];
const STANDARD_FIELD: &str = "StandardField";

/// The reference type (what part of the entity changed) of an action.
pub fn reference_type(action: &str) -> &'static str {
    REFERENCE_ACTIONS
        .iter()
        .find(|(_, actions)| actions.contains(&action))
        .map_or(STANDARD_FIELD, |(name, _)| name)
}

/// A reference-type filter: the actions it includes (or, for standard fields, excludes), or
/// `None` for a reference type this log never holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceFilter {
    Include(Vec<&'static str>),
    Exclude(Vec<&'static str>),
    Nothing,
}

/// Parses `referenceType` (any case); `Err` lists the accepted ones.
pub fn parse_reference_type(raw: &str) -> Result<ReferenceFilter, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case(STANDARD_FIELD) {
        let all: Vec<&'static str> =
            REFERENCE_ACTIONS.iter().flat_map(|(_, a)| a.iter().copied()).collect();
        return Ok(ReferenceFilter::Exclude(all));
    }
    if let Some((_, actions)) = REFERENCE_ACTIONS.iter().find(|(n, _)| n.eq_ignore_ascii_case(raw))
    {
        return Ok(ReferenceFilter::Include(actions.to_vec()));
    }
    if REFERENCE_ELSEWHERE.iter().any(|n| n.eq_ignore_ascii_case(raw)) {
        return Ok(ReferenceFilter::Nothing);
    }
    let mut names: Vec<&str> = vec![STANDARD_FIELD];
    names.extend(REFERENCE_ACTIONS.iter().map(|(n, _)| *n));
    names.extend(REFERENCE_ELSEWHERE);
    Err(format!("referenceType must be one of {}", names.join(", ")))
}

/// The `source` of a change: where its principal acts from.
pub fn source_of(principal_type: &str) -> &'static str {
    match principal_type {
        "TILL" | "STAFF" => "INSTORE",
        "OAUTH_CLIENT" => "API",
        "ADMIN" => "ADMIN",
        _ => "SYSTEM",
    }
}

/// The principal types of a `source` filter (none for sources Perks does not record).
pub fn principal_types_of(source: &str) -> &'static [&'static str] {
    match source.trim().to_ascii_uppercase().as_str() {
        "INSTORE" => &["TILL", "STAFF"],
        "API" => &["OAUTH_CLIENT"],
        "ADMIN" => &["ADMIN"],
        "SYSTEM" => &["SYSTEM"],
        _ => &[],
    }
}

/// The top-level fields whose values differ between two states (all of one side's when the
/// other is absent), in the order they appear.
pub fn changed_fields(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut names: Vec<String> =
                a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect();
            names.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
            names
        }
        (None, Some(Value::Object(one))) | (Some(Value::Object(one)), None) => {
            one.keys().cloned().collect()
        }
        _ => Vec::new(),
    }
}

/// A validated `GET /v2/auditLog/get` query.
#[derive(Clone, Debug)]
pub struct EntityLogQuery {
    pub entity_type: String,
    pub entity_id: i64,
    pub source: Option<String>,
    pub reference: Option<ReferenceFilter>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub by_time: bool,
    pub ascending: bool,
    pub limit: i64,
    pub page: i64,
}

/// One page of an entity's audit records and the number matching.
pub async fn entity_log(
    c: &mut impl Connection,
    org: OrgId,
    q: &EntityLogQuery,
) -> Result<(Vec<AuditEntry>, i64), DbError> {
    let actions = match &q.reference {
        None => None,
        Some(ReferenceFilter::Nothing) => return Ok((Vec::new(), 0)),
        Some(ReferenceFilter::Include(a)) => Some((true, a.as_slice())),
        Some(ReferenceFilter::Exclude(a)) => Some((false, a.as_slice())),
    };
    let query = EntityQuery {
        entity_type: &q.entity_type,
        entity_id: q.entity_id,
        principal_types: q.source.as_deref().map(principal_types_of),
        actions,
        from: q.from,
        to: q.to,
        by_time: q.by_time,
        ascending: q.ascending,
        limit: q.limit,
        offset: q.page.saturating_mul(q.limit),
    };
    store::entity_records(c, org, &query).await
}

/// The name a behavioral event's audit state carries (`eventName`, else `name`).
fn event_name(state: Option<&str>) -> Option<String> {
    let value: Value = serde_json::from_str(state?).ok()?;
    value.get("eventName").or_else(|| value.get("name"))?.as_str().map(str::to_string)
}

/// The audit records of the org's behavioral event named `name`, newest first (at most
/// [`EVENT_RECORDS_MAX`]).
pub async fn event_log(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
) -> Result<Vec<AuditEntry>, DbError> {
    // The states are compact JSON: the name appears as `"eventName":"<name>"` (or `"name"`);
    // the pattern narrows the scan and the parsed state decides.
    let quoted = Value::String(name.to_string()).to_string();
    let rows =
        store::records_containing(c, org, BEHAVIORAL_EVENT_ENTITY, &quoted, EVENT_RECORDS_MAX)
            .await?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            event_name(r.after_state.as_deref()).or_else(|| event_name(r.before_state.as_deref()))
                == Some(name.to_string())
        })
        .collect())
}

/// `create`, `delete` or `modify`: what an action did to the entity.
pub fn updated_type(action: &str) -> &'static str {
    match action {
        "CREATE" => "create",
        "DELETE" | "DISABLE" => "delete",
        _ => "modify",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reference_types_follow_actions() {
        assert_eq!(reference_type("SUBSCRIPTION_CHANGE"), "Subscription");
        assert_eq!(reference_type("UPDATE"), "StandardField");
        assert_eq!(
            parse_reference_type("identifier"),
            Ok(ReferenceFilter::Include(vec!["CHANGE_IDENTIFIER"]))
        );
        assert!(matches!(parse_reference_type("StandardField"), Ok(ReferenceFilter::Exclude(_))));
        assert_eq!(parse_reference_type("CustomField"), Ok(ReferenceFilter::Nothing));
        assert!(parse_reference_type("Colour").is_err());
    }

    #[test]
    fn changed_fields_are_the_differences() {
        let before = json!({"a": 1, "b": 2, "gone": true});
        let after = json!({"a": 1, "b": 3, "new": "x"});
        assert_eq!(changed_fields(Some(&before), Some(&after)), ["b", "new", "gone"]);
        assert_eq!(changed_fields(None, Some(&after)), ["a", "b", "new"]);
    }

    #[test]
    fn sources_map_to_principals() {
        assert_eq!(source_of("TILL"), "INSTORE");
        assert_eq!(source_of("STAFF"), "INSTORE");
        assert_eq!(principal_types_of("instore"), ["TILL", "STAFF"]);
        assert!(principal_types_of("FACEBOOK").is_empty());
    }
}
