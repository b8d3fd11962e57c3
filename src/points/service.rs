//! A customer's standing in each program (tier and balances), as customer reads show it.

use super::model::Fixed;
use super::store;
use crate::db::{Connection, DbError};
use crate::dispatch;
use crate::org::model::OrgId;
use crate::programs::model::ProgramDoc;

/// Programs an org may hold, read for standings: a bound on work per customer read.
const PROGRAMS_MAX: i64 = 100;

/// A customer's tier and balances in one program.
#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    pub program_id: i64,
    pub program_name: String,
    pub is_default: bool,
    pub tier_number: i32,
    pub tier_name: String,
    pub tier_expires_at: Option<i64>,
    pub current: Fixed,
    pub promised: Fixed,
    pub lifetime_points: Fixed,
    pub redeemed: Fixed,
    pub expired: Fixed,
    pub returned: Fixed,
    pub adjusted: Fixed,
    pub lifetime_purchases: Fixed,
    pub visits: i64,
}

/// The customer's standing in every program of the org (zeros and the base tier where the
/// customer has no account yet), default program first.
pub async fn standings(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<Vec<Standing>, DbError> {
    let programs: Vec<(i64, String, bool, String)> = dispatch!(c, |e| sqlx::query_as(
        "SELECT id, name, is_default, document FROM programs WHERE org_id = $1 \
         ORDER BY is_default DESC, id LIMIT $2"
    )
    .bind(org.0)
    .bind(PROGRAMS_MAX)
    .fetch_all(e)
    .await)?;
    let accounts = store::accounts_of_customer(c, org, customer).await?;
    Ok(programs
        .into_iter()
        .map(|(id, name, is_default, document)| {
            let tiers: Vec<String> = serde_json::from_str::<ProgramDoc>(&document)
                .map(|d| d.tiers.into_iter().map(|t| t.name).collect())
                .unwrap_or_default();
            let account = accounts.iter().find(|a| a.program_id == id);
            let tier_number = account.map(|a| a.tier_number).unwrap_or(1);
            let tier_name = usize::try_from(tier_number - 1)
                .ok()
                .and_then(|i| tiers.get(i))
                .cloned()
                .unwrap_or_default();
            let get = |f: fn(&store::AccountRow) -> i64| Fixed(account.map(f).unwrap_or(0));
            Standing {
                program_id: id,
                program_name: name,
                is_default,
                tier_number,
                tier_name,
                tier_expires_at: account.and_then(|a| a.tier_expires_at),
                current: get(|a| a.current_points),
                promised: get(|a| a.promised_points),
                lifetime_points: get(|a| a.lifetime_points),
                redeemed: get(|a| a.redeemed_points),
                expired: get(|a| a.expired_points),
                returned: get(|a| a.returned_points),
                adjusted: get(|a| a.adjusted_points),
                lifetime_purchases: get(|a| a.lifetime_purchases),
                visits: account.map(|a| a.visits).unwrap_or(0),
            }
        })
        .collect())
}
