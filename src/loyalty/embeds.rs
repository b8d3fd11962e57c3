//! The loyalty parts of the customer reads: the `embed` options of `GET /v2/customers/{id}` and
//! its lookup twin (`gapDetails`, `expirySchedules`, `expiredPoints`, `promotionalPoints`,
//! `userGroup`) and the v1.1 `customer/get` points summaries.

use chrono_tz::Tz;
use serde_json::{Value, json};

use super::model::LoyaltyError;
use super::service::{self, ProgramState, iso, local_day};
use super::store;
use crate::db::{Connection, now_millis};
use crate::org::model::OrgId;
use crate::points::model::Fixed;
use crate::programs::cache::ProgramCache;
use crate::programs::model::ExpiryKind;

/// The embeds this module answers, in the lower case they are matched in.
const LOYALTY_EMBEDS: [&str; 5] =
    ["gapdetails", "expiryschedules", "expiredpoints", "promotionalpoints", "usergroup"];

/// Capillary's `pointsType` of a lot's award source.
pub fn points_type(source: &str) -> String {
    match source {
        "TRANSACTION" => "bill_regular".into(),
        "LINE_ITEM" => "line_item_regular".into(),
        "REGISTRATION" => "customer_promotions".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// Capillary's `expiryType` of a program's expiry rule: `rolling`, or `fixed` for dates that do
/// not move with the award (end of period, a fixed date).
pub fn expiry_type(state: &ProgramState) -> &'static str {
    match state.program.doc.expiry.kind {
        ExpiryKind::Rolling => "rolling",
        _ => "fixed",
    }
}

/// Adds the requested loyalty embeds to a v2 customer object (`body`); the embed list is the
/// request's comma-separated `embed`, matched case-insensitively; other names are left to the
/// customer module.
pub async fn extend_customer(
    c: &mut impl Connection,
    programs: &ProgramCache,
    org: OrgId,
    customer: i64,
    embed: Option<&str>,
    body: &mut Value,
) -> Result<(), LoyaltyError> {
    let wanted: Vec<String> = embed
        .unwrap_or_default()
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| LOYALTY_EMBEDS.contains(&e.as_str()))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let has = |name: &str| wanted.iter().any(|w| w == name);
    let now = now_millis();
    let states = service::program_states(c, programs, org, customer, now).await?;
    let tz = service::org_zone(c, org).await?;
    if has("gapdetails") {
        let mut gaps = Vec::with_capacity(states.len());
        for s in &states {
            let view = service::tier_view(c, org, s, tz, now).await?;
            gaps.push(service::tier_json(&view, tz));
        }
        body["gapDetails"] = Value::Array(gaps);
    }
    if has("expiryschedules") {
        body["expirySchedules"] = expiry_schedules(c, org, customer, &states, tz, now).await?;
    }
    if has("expiredpoints") {
        body["expiredPoints"] = Value::Array(
            states
                .iter()
                .map(|s| {
                    json!({"programId": s.id(), "programName": s.program.doc.name,
                        "points": Fixed(s.account.expired_points).to_f64()})
                })
                .collect(),
        );
    }
    if has("promotionalpoints") {
        let lots = store::promotion_lots(c, org, customer).await?;
        body["promotionalPoints"] = Value::Array(
            lots.iter()
                .map(|l| {
                    json!({"programId": l.program_id, "promotionName": l.rule,
                        "pointsType": "customer_promotions", "points": Fixed(l.awarded).to_f64(),
                        "remainingPoints": Fixed(l.remaining).to_f64(),
                        "awardedDate": iso(l.awarded_at),
                        "expiryDate": l.expires_at.map(|at| local_day(at, tz)),
                        "expiryDateISO": l.expires_at.map(iso)})
                })
                .collect(),
        );
    }
    if has("usergroup") {
        // User groups do not exist yet: the customer belongs to none.
        body["userGroup"] = json!([]);
    }
    Ok(())
}

/// The customer's points still to expire, per program, points type, expiry type and org-local
/// day, soonest first (the `expirySchedules` shape of Get Points Expiry Schedule).
pub async fn expiry_schedules(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    states: &[ProgramState],
    tz: Tz,
    now: i64,
) -> Result<Value, LoyaltyError> {
    let groups = store::expiry_groups(c, org, customer, now).await?;
    // Lots of one day (and kind) are one schedule row, whatever instant of it they lapse at.
    struct Row {
        program_id: i64,
        points_type: String,
        day: String,
        expires_at: i64,
        points: i64,
    }
    let mut rows: Vec<Row> = Vec::new();
    for g in groups.iter().filter(|g| g.currency_id == 0) {
        let points_type = points_type(&g.source);
        let day = local_day(g.expires_at, tz);
        match rows
            .iter_mut()
            .find(|r| r.program_id == g.program_id && r.points_type == points_type && r.day == day)
        {
            Some(row) => row.points += g.points,
            None => rows.push(Row {
                program_id: g.program_id,
                points_type,
                day,
                expires_at: g.expires_at,
                points: g.points,
            }),
        }
    }
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let kind =
                states.iter().find(|s| s.id() == r.program_id).map(expiry_type).unwrap_or("fixed");
            json!({"points": Fixed(r.points).to_f64(), "expiryDate": r.day,
                "expiryDateISO": iso(r.expires_at), "programId": r.program_id,
                "pointsType": r.points_type, "expiryType": kind})
        })
        .collect();
    Ok(Value::Array(rows))
}

/// The v1.1 `customer/get` points summary of every program (`points_summaries.points_summary[]`,
/// the fields of Get Loyalty Details).
pub async fn v1_points_summaries(
    c: &mut impl Connection,
    programs: &ProgramCache,
    org: OrgId,
    customer: i64,
) -> Result<Value, LoyaltyError> {
    let now = now_millis();
    let states = service::program_states(c, programs, org, customer, now).await?;
    let tz = service::org_zone(c, org).await?;
    let mut list = Vec::with_capacity(states.len());
    for s in &states {
        let view = service::tier_view(c, org, s, tz, now).await?;
        list.push(service::loyalty_details_json(s, &view));
    }
    Ok(json!({"points_summary": list}))
}
