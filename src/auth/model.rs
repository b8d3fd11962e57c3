//! Who is calling: the authenticated principal, its org, acting store/till and permissions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Code};
use crate::org::model::{OrgId, StoreId, TillId};

/// An API resource that access groups grant levels on (spec 00-platform §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resource {
    Organization,
    Customer,
    Transaction,
    Points,
    Card,
    Coupon,
    Reward,
    Badge,
    Target,
    Promotion,
    UserGroup,
    Requests,
    Events,
    Communication,
    Task,
    Staff,
    Audit,
    Program,
}

impl Resource {
    pub const ALL: [Resource; 18] = [
        Resource::Organization,
        Resource::Customer,
        Resource::Transaction,
        Resource::Points,
        Resource::Card,
        Resource::Coupon,
        Resource::Reward,
        Resource::Badge,
        Resource::Target,
        Resource::Promotion,
        Resource::UserGroup,
        Resource::Requests,
        Resource::Events,
        Resource::Communication,
        Resource::Task,
        Resource::Staff,
        Resource::Audit,
        Resource::Program,
    ];
}

/// Access level on a resource: reads need `Read`, writes need `Write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    None,
    Read,
    Write,
}

/// The levels an access group grants, stored as JSON on the group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions(pub BTreeMap<Resource, Level>);

impl Permissions {
    /// What a staff access token may do: work on tasks, read the org, its customers and staff.
    /// Staff endpoints further limit a staff caller to its own account.
    pub fn staff() -> Self {
        let mut map: BTreeMap<Resource, Level> = BTreeMap::new();
        for resource in [Resource::Organization, Resource::Customer, Resource::Staff] {
            map.insert(resource, Level::Read);
        }
        map.insert(Resource::Task, Level::Write);
        Permissions(map)
    }

    /// Write on every resource: the built-in `Admin` group.
    pub fn admin() -> Self {
        Permissions(Resource::ALL.iter().map(|r| (*r, Level::Write)).collect())
    }

    /// The built-in `POS` group: writes on the point-of-sale resources, reads on the org.
    pub fn pos() -> Self {
        let mut map: BTreeMap<Resource, Level> =
            Resource::ALL.iter().map(|r| (*r, Level::Read)).collect();
        for resource in [
            Resource::Customer,
            Resource::Transaction,
            Resource::Points,
            Resource::Coupon,
            Resource::Card,
            Resource::Reward,
            Resource::Events,
            Resource::Task,
            // Tills raise requests (goodwill, identifier changes) for the back office.
            Resource::Requests,
        ] {
            map.insert(resource, Level::Write);
        }
        Permissions(map)
    }

    pub fn level(&self, resource: Resource) -> Level {
        self.0.get(&resource).copied().unwrap_or(Level::None)
    }
}

/// What kind of credential authenticated the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    Till {
        id: TillId,
        code: String,
    },
    OAuthClient {
        id: i64,
        key: String,
    },
    Admin {
        token_id: i64,
    },
    /// A store associate or cashier, by a staff access token (`X-CAP-API-ACCESS-TOKEN`).
    Staff {
        id: i64,
        token_id: i64,
        username: String,
    },
}

impl Actor {
    /// The audit log's `(principal_type, principal_id)`.
    pub fn audit_identity(&self) -> (&'static str, i64) {
        match self {
            Actor::Till { id, .. } => ("TILL", id.0),
            Actor::OAuthClient { id, .. } => ("OAUTH_CLIENT", *id),
            Actor::Admin { token_id } => ("ADMIN", *token_id),
            Actor::Staff { id, .. } => ("STAFF", *id),
        }
    }

    /// A stable name of the API key, for rate limits and idempotency scopes.
    pub fn api_key(&self) -> String {
        let (kind, id) = self.audit_identity();
        format!("{kind}:{id}")
    }
}

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub org: OrgId,
    pub actor: Actor,
    /// The store and till the request acts as (its own, or chosen by attribution headers).
    pub store: Option<StoreId>,
    pub till: Option<TillId>,
    pub permissions: Permissions,
    pub request_id: Option<String>,
}

impl Principal {
    /// Fails with 403 unless the principal holds at least `level` on `resource`.
    pub fn require(&self, resource: Resource, level: Level) -> Result<(), ApiError> {
        if self.permissions.level(resource) >= level {
            Ok(())
        } else {
            Err(ApiError::with_message(
                Code::PermissionDenied,
                format!("Access denied: {level:?} permission on {resource:?} is required"),
            ))
        }
    }

    /// Fails with 403 unless the caller used an admin token (the `/x/perks` API).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.actor {
            Actor::Admin { .. } => Ok(()),
            _ => Err(ApiError::with_message(
                Code::PermissionDenied,
                "An admin token (Authorization: Bearer <adminToken>) is required",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_groups_grant_what_they_say() {
        assert!(Level::Write > Level::Read && Level::Read > Level::None);
        assert_eq!(Permissions::admin().level(Resource::Audit), Level::Write);
        assert_eq!(Permissions::pos().level(Resource::Organization), Level::Read);
        assert_eq!(Permissions::pos().level(Resource::Transaction), Level::Write);
        assert_eq!(Permissions::default().level(Resource::Customer), Level::None);
    }
}
