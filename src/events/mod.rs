//! Domain events: every state change writes one to the outbox in the same transaction; delivery
//! to webhooks reads them from there.

pub mod store;

use serde_json::Value;

use crate::auth::Principal;
use crate::db::{Connection, DbError};
use crate::org::model::OrgId;

/// One event to raise, e.g. `customer.created` about `CUSTOMER` 42.
pub struct NewEvent<'a> {
    pub event_type: &'a str,
    pub entity_type: &'a str,
    pub entity_id: i64,
    pub payload: Value,
}

/// Writes `event` to the outbox; call it inside the transaction that made the change.
pub async fn raise(
    c: &mut impl Connection,
    org: OrgId,
    principal: Option<&Principal>,
    event: NewEvent<'_>,
) -> Result<i64, DbError> {
    let request_id = principal.and_then(|p| p.request_id.clone());
    store::insert(c, org, &event, request_id.as_deref()).await
}
