//! Label rules: creating labels (duplicates skipped with a warning, a per-org cap), tagging and
//! untagging customers, and the reads behind the label APIs.

use std::collections::BTreeMap;

use serde_json::json;

use super::model::{
    LABELS_LIST_MAX, LabelError, LabelId, LabelName, NewLabel, ORG_MAX_LABEL_COUNT_DEFAULT,
    SearchPage,
};
use super::store::{self, LabelRow, TagRow};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::customers::model::{CustomerError, CustomerId};
use crate::customers::service::Warning;
use crate::customers::store as customer_store;
use crate::db::{Connection, Db, now_millis};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;

/// Warning code of a label name the org already has (or that a request repeats): the
/// "name already used" code of the org APIs.
pub const WARNING_DUPLICATE_NAME: u32 = 1207;
/// Warning code of a tag change that changed nothing (already tagged, or not tagged).
pub const WARNING_NO_CHANGE: u32 = 400;

/// The org config that caps how many labels an org may hold.
pub const ORG_MAX_LABEL_COUNT_CONFIG: &str = "ORG_MAX_LABEL_COUNT";

/// The most labels an org may hold: its `ORG_MAX_LABEL_COUNT` config when that is a positive
/// number, else the default.
pub async fn org_max_label_count(
    c: &mut impl crate::db::Connection,
    org: OrgId,
) -> Result<i64, crate::db::DbError> {
    let configured = crate::fields::store::config_value(c, org, ORG_MAX_LABEL_COUNT_CONFIG).await?;
    Ok(configured
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(ORG_MAX_LABEL_COUNT_DEFAULT))
}

/// What an add-labels request did.
#[derive(Debug)]
pub struct AddOutcome {
    pub created: Vec<LabelId>,
    pub warnings: Vec<Warning>,
}

/// Creates labels in one transaction. A name the org already has, or one the request repeats, is
/// skipped with a warning; going over the org's cap refuses the whole request.
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn add_labels(
    db: &Db,
    principal: &Principal,
    labels: &[NewLabel],
) -> Result<AddOutcome, LabelError> {
    let org = principal.org;
    let by = principal.actor.audit_identity().1;
    let actor = AuditActor::from(principal);
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    let cap = org_max_label_count(&mut tx, org).await?;
    let mut count = store::count_labels(&mut tx, org).await?;
    let mut outcome = AddOutcome { created: Vec::new(), warnings: Vec::new() };
    let mut seen: Vec<&LabelName> = Vec::with_capacity(labels.len());
    for label in labels {
        let name = label.name.as_str();
        if seen.contains(&&label.name) {
            outcome.warnings.push(Warning::new(
                WARNING_DUPLICATE_NAME,
                format!("Label '{name}' is repeated in the request: added once"),
            ));
            continue;
        }
        seen.push(&label.name);
        if count >= cap {
            // At the cap a name the org already has is still only a warning.
            if store::labels_named(&mut tx, org, &[name]).await?.is_empty() {
                return Err(LabelError::CountExceeded(cap));
            }
            outcome.warnings.push(Warning::new(
                WARNING_DUPLICATE_NAME,
                format!("Label '{name}' already exists: skipped"),
            ));
            continue;
        }
        let Some(id) =
            store::insert_label(&mut tx, org, name, &label.description, Some(by), now).await?
        else {
            outcome.warnings.push(Warning::new(
                WARNING_DUPLICATE_NAME,
                format!("Label '{name}' already exists: skipped"),
            ));
            continue;
        };
        count += 1;
        let after = json!({"name": name, "description": label.description, "active": true});
        let change = Change {
            entity_type: "LABEL",
            entity_id: id.0,
            action: "CREATE",
            before: None,
            after: Some(after.clone()),
        };
        audit::record(&mut tx, org, &actor, change).await?;
        let event = NewEvent {
            event_type: "label.created",
            entity_type: "LABEL",
            entity_id: id.0,
            payload: json!({"labelId": id.0, "label": after}),
        };
        events::raise(&mut tx, org, Some(principal), event).await?;
        outcome.created.push(id);
    }
    tx.commit().await?;
    Ok(outcome)
}

/// The org's labels, oldest first (bounded by [`LABELS_LIST_MAX`]).
pub async fn org_labels(c: &mut impl Connection, org: OrgId) -> Result<Vec<LabelRow>, LabelError> {
    Ok(store::labels(c, org, LABELS_LIST_MAX).await?)
}

/// Adds and removes labels of a customer in one transaction. Every named label must exist in
/// the org (else nothing changes); removing a label the customer lacks, or adding one it has,
/// is a warning.
#[tracing::instrument(skip_all, fields(org = principal.org.0, customer = customer.0))]
pub async fn change_labels(
    db: &Db,
    principal: &Principal,
    customer: CustomerId,
    add: &[LabelName],
    remove: &[LabelName],
) -> Result<Vec<Warning>, LabelError> {
    if let Some(both) = add.iter().find(|a| remove.contains(a)) {
        return Err(LabelError::Invalid(format!(
            "Label '{}' cannot be both added and removed",
            both.as_str()
        )));
    }
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    if customer_store::get_customer(&mut tx, org, customer).await?.is_none() {
        return Err(CustomerError::NotFound.into());
    }
    let mut names: Vec<&str> = add.iter().chain(remove).map(LabelName::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let found: BTreeMap<String, LabelId> = store::labels_named(&mut tx, org, &names)
        .await?
        .into_iter()
        .map(|l| (l.name, LabelId(l.id)))
        .collect();
    let unknown: Vec<String> =
        names.iter().filter(|n| !found.contains_key(**n)).map(|n| (*n).to_string()).collect();
    if !unknown.is_empty() {
        return Err(LabelError::UnknownLabels(unknown));
    }
    let now = now_millis();
    let mut warnings = Vec::new();
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    for name in remove {
        let Some(label) = found.get(name.as_str()) else { continue };
        if removed.contains(&name.as_str()) {
            continue;
        }
        if store::untag(&mut tx, org, customer, *label).await? {
            removed.push(name.as_str());
        } else {
            warnings.push(Warning::new(
                WARNING_NO_CHANGE,
                format!("Customer is not tagged with label '{}': nothing removed", name.as_str()),
            ));
        }
    }
    for name in add {
        let Some(label) = found.get(name.as_str()) else { continue };
        if added.contains(&name.as_str()) {
            continue;
        }
        if store::tag(&mut tx, org, customer, *label, now).await? {
            added.push(name.as_str());
        } else {
            warnings.push(Warning::new(
                WARNING_NO_CHANGE,
                format!("Customer is already tagged with label '{}'", name.as_str()),
            ));
        }
    }
    if !added.is_empty() || !removed.is_empty() {
        let change = json!({"added": added, "removed": removed});
        let record = Change {
            entity_type: "CUSTOMER",
            entity_id: customer.0,
            action: "CHANGE_LABELS",
            before: None,
            after: Some(change.clone()),
        };
        audit::record(&mut tx, org, &AuditActor::from(principal), record).await?;
        let event = NewEvent {
            event_type: "customer.labels_changed",
            entity_type: "CUSTOMER",
            entity_id: customer.0,
            payload: json!({"customerId": customer.0, "change": change}),
        };
        events::raise(&mut tx, org, Some(principal), event).await?;
    }
    tx.commit().await?;
    Ok(warnings)
}

/// A customer's labels in tagging order; 8015 when the org has no such customer.
pub async fn customer_labels(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<Vec<TagRow>, LabelError> {
    if customer_store::get_customer(c, org, customer).await?.is_none() {
        return Err(CustomerError::NotFound.into());
    }
    Ok(store::customer_tags(c, org, customer, LABELS_LIST_MAX).await?)
}

/// One customer found by label search, with the labels that matched.
#[derive(Debug)]
pub struct SearchHit {
    pub customer: CustomerId,
    pub labels: Vec<String>,
}

/// Customers holding a label whose name starts with `prefix` (case-sensitive), by customer id;
/// returns the page and the total.
pub async fn search(
    c: &mut impl Connection,
    org: OrgId,
    prefix: &str,
    page: SearchPage,
) -> Result<(Vec<SearchHit>, i64), LabelError> {
    let (ids, total) = store::search_customers(c, org, prefix, page.limit, page.offset).await?;
    let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
        return Ok((Vec::new(), total));
    };
    let tags = store::matching_tags(c, org, prefix, *first, *last).await?;
    let mut hits: Vec<SearchHit> =
        ids.iter().map(|id| SearchHit { customer: *id, labels: Vec::new() }).collect();
    for tag in tags {
        if let Ok(i) = hits.binary_search_by_key(&tag.customer_id, |h| h.customer.0) {
            hits[i].labels.push(tag.name);
        }
    }
    Ok((hits, total))
}
