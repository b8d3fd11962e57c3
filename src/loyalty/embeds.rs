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
const LOYALTY_EMBEDS: [&str; 6] = [
    "gapdetails",
    "expiryschedules",
    "expiredpoints",
    "promotionalpoints",
    "usergroup",
    "alternatecurrencies",
];

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
        let groups = store::expiry_groups(c, org, customer, now).await?;
        body["expirySchedules"] = expiry_schedules(&groups, 0, &states, None, tz);
    }
    if has("alternatecurrencies") {
        body["alternateCurrencies"] =
            Value::Array(alternate_currencies(c, org, customer, &states, tz, now).await?);
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
pub fn expiry_schedules(
    groups: &[store::ExpiryGroup],
    currency: i64,
    states: &[ProgramState],
    expiry_kind: Option<&'static str>,
    tz: Tz,
) -> Value {
    // Lots of one day (and kind) are one schedule row, whatever instant of it they lapse at.
    struct Row {
        program_id: i64,
        points_type: String,
        day: String,
        expires_at: i64,
        points: i64,
    }
    let mut rows: Vec<Row> = Vec::new();
    for g in groups.iter().filter(|g| g.currency_id == currency) {
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
            let kind = expiry_kind.unwrap_or_else(|| {
                states.iter().find(|s| s.id() == r.program_id).map(expiry_type).unwrap_or("fixed")
            });
            json!({"points": Fixed(r.points).to_f64(), "expiryDate": r.day,
                "expiryDateISO": iso(r.expires_at), "programId": r.program_id,
                "pointsType": r.points_type, "expiryType": kind})
        })
        .collect();
    Value::Array(rows)
}

/// The customer's alternate-currency balances, one entry per program and currency held, each
/// with its own expiry schedule (`alternateCurrencies`).
pub async fn alternate_currencies(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    states: &[ProgramState],
    tz: Tz,
    now: i64,
) -> Result<Vec<Value>, LoyaltyError> {
    let balances =
        crate::points::store_currency::currency_balances_of_customer(c, org, customer).await?;
    if balances.is_empty() {
        return Ok(Vec::new());
    }
    let currencies = crate::currencies::store::list_currencies(c, org).await?;
    let groups = store::expiry_groups(c, org, customer, now).await?;
    let points = |v: i64| Fixed(v).to_f64();
    Ok(balances
        .iter()
        .map(|b| {
            let currency = currencies.iter().find(|r| r.id == b.currency_id);
            let name = currency.map(|r| r.name.clone());
            // A currency with its own expiry rule says its kind; else the program's applies.
            let kind = currency.and_then(|r| r.expiry_doc()).map(|e| match e.kind {
                ExpiryKind::Rolling => "rolling",
                _ => "fixed",
            });
            let program = states.iter().find(|s| s.id() == b.program_id);
            let in_program: Vec<ProgramState> = program.into_iter().cloned().collect();
            json!({"programId": b.program_id,
                "programName": program.map(|p| p.program.doc.name.clone()),
                "alternateCurrencyId": b.currency_id, "alternateCurrencyName": name,
                "mainPoints": points(b.current_points), "promisedPoints": points(b.promised_points),
                "totalPoints": points(b.current_points + b.promised_points),
                "lifetimePoints": points(b.lifetime_points), "redeemed": points(b.redeemed_points),
                "expired": points(b.expired_points), "returned": points(b.returned_points),
                "adjusted": points(b.adjusted_points),
                "expirySchedules": expiry_schedules(&groups, b.currency_id, &in_program, kind, tz)})
        })
        .collect())
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
