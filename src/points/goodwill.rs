//! Goodwill points requests: a request for discretionary points for a customer, stored
//! `PENDING` (nothing is credited: approval and crediting belong to the requests workflow),
//! audited, and listed per customer.

use serde_json::json;

use super::model::Fixed;
use super::store_ops::{self, GoodwillFilter, GoodwillRow, NewGoodwill};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::{Connection, Db, DbError};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;

/// A goodwill request to store.
#[derive(Clone, Copy, Debug)]
pub struct GoodwillRequest<'a> {
    pub customer: i64,
    pub program: i64,
    pub points: Fixed,
    pub reason: &'a str,
    /// `goodwillRequest.comments`.
    pub comments: &'a str,
    /// The request's own `comments`.
    pub request_comments: &'a str,
}

/// Stores a pending goodwill points request; its id.
#[tracing::instrument(skip_all, fields(org = org.0, customer = g.customer))]
pub async fn request(
    db: &Db,
    principal: &Principal,
    org: OrgId,
    g: &GoodwillRequest<'_>,
    now: i64,
) -> Result<i64, DbError> {
    let actor = AuditActor::from(principal);
    let mut tx = db.begin_write().await?;
    let id = store_ops::insert_goodwill(
        &mut tx,
        org,
        &NewGoodwill {
            customer_id: g.customer,
            program_id: g.program,
            base_type: "POINTS",
            points: g.points.0,
            reason: g.reason,
            comments: g.comments,
            request_comments: g.request_comments,
            added_by_type: actor.principal_type,
            added_by_id: actor.principal_id,
            created_at: now,
        },
    )
    .await?;
    let payload = json!({"requestId": id, "type": "GOODWILL", "baseType": "POINTS",
        "customerId": g.customer, "programId": g.program, "points": g.points.to_f64(),
        "reason": g.reason, "status": "PENDING"});
    audit::record(
        &mut tx,
        org,
        &actor,
        Change {
            entity_type: "GOODWILL_REQUEST",
            entity_id: id,
            action: "CREATE",
            before: None,
            after: Some(payload.clone()),
        },
    )
    .await?;
    events::raise(
        &mut tx,
        org,
        Some(principal),
        NewEvent {
            event_type: "request.goodwill_created",
            entity_type: "CUSTOMER",
            entity_id: g.customer,
            payload,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// A page of the customer's goodwill requests, newest first, and their total.
pub async fn list(
    c: &mut impl Connection,
    org: OrgId,
    filter: GoodwillFilter,
    limit: i64,
    skip: i64,
) -> Result<(Vec<GoodwillRow>, i64), DbError> {
    let total = store_ops::count_goodwill(c, org, filter).await?;
    let rows = store_ops::goodwill_page(c, org, filter, limit, skip).await?;
    Ok((rows, total))
}
